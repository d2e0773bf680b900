"""The entropy model the devices run: labelled history from memory (dataset.py) and its fit
(train.py); `becomingone model`."""
