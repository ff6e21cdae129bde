"""The daemon process around the gateway: logging, the HTTP server, signals, reload, systemd.

What must live here: :mod:`.run` (one process running one site file until it is stopped) and
:mod:`.systemd` (sd_notify). The control loop itself is :mod:`ampgate.gateway`.
"""
