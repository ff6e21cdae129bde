"""What the outside world sees of a running site: the snapshot and what serves it.

What must live here: the frozen snapshot (:mod:`.snapshot`, the read model the gateway
publishes), the Prometheus metrics built from it (:mod:`.metrics`) and the HTTP server
(:mod:`.http` running the app of :mod:`.api`: the status page, /metrics, /healthz and the read
API with its stream), and the MQTT publisher (:mod:`.mqtt`, with the pure topic and payload
rules of :mod:`.mqtt_payloads` and the Home Assistant discovery of :mod:`.homeassistant`).
These modules read snapshots only: none imports the gateway, a device or a bus.
"""
