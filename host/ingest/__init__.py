"""The receive path: decode, admission (keys, policy, rate, proof of work), session, then typed
events to a FrameSink (pipeline.py)."""
