"""Temporal-signature memory in SQLite: writes (store.py), reads (queries.py), the telemetry
history (telemetry.py), charts (plots.py)."""
