"""The core of a coordinator: the Master's long windows, the sync layer, witnessing, their
integration cycle, TELEMETRY fed into them, pulse summaries."""
