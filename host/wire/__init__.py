"""The wire protocol on the host: the per-frame decoder (receive.py) and the numpy batch decode of
TELEMETRY (telemetry.py); the codec itself is shared/protocol.py."""
