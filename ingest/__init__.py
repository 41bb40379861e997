"""The ingest worker: MQTT in, PostGIS out."""
