"""The control loop of one site: poll → allocate → write, device programming and events.

What must live here: the asyncio parts that talk to the site's devices through
:mod:`ampgate.devices` and decide with :mod:`ampgate.dlm`, and the building of the snapshot they
publish (:mod:`.publish`). The outside world reads that snapshot
(:mod:`ampgate.interfaces`), never the gateway's internals; the process around the gateway
(signals, reload, systemd) is :mod:`ampgate.daemon`.
"""
