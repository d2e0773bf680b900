"""The MQTT bridge with Home Assistant discovery (config `integrations.mqtt`, docs/MQTT.md):
bridge.py. It runs on its own threads, reads the coordinator through its narrow view
(becomingone/coordinator/view.py) and must never block or crash the processing thread."""
