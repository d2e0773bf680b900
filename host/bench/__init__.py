"""`becomingone bench NAME`: one module per benchmark (collect(args) -> rows), and the brokers
some of them start (mosquitto.py, nats_server.py)."""
