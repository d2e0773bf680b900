"""What carries a cell's mesh: base.py (the MeshBackend abc), embedded.py (mutual TLS),
nats.py (NATS JetStream)."""
