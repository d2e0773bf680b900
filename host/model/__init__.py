"""The entropy model the devices run: training on the device's features (features.py: from
the telemetry history in memory, or from recordings and synthetic machines run through the
firmware, from_dataset.py), the seed form's dataset and fit (dataset.py, train.py);
`becomingone model`."""
