"""Bridges from the coordinator to other systems (config section `integrations`).

    host/integrations/mqtt.py   MQTT with Home Assistant discovery (integrations.mqtt, docs/MQTT.md)

A bridge runs on its own threads, reads the coordinator's state through its processing thread
(never touching sessions directly) and must never block or crash that thread.
"""
