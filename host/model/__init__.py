"""The entropy model on the device's features: training (features.py) and its rows from
recordings and synthetic machines run through the firmware (from_dataset.py)."""
