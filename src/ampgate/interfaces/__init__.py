"""What the outside world sees of a running site: the snapshot and what serves it.

What must live here: the frozen snapshot (:mod:`.snapshot`, the read model the gateway
publishes), the Prometheus metrics built from it (:mod:`.metrics`) and the HTTP server
(:mod:`.http`). These modules read snapshots only: none imports the gateway, a device or a bus.
"""
