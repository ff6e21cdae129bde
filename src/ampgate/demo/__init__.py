"""``ampgate demo``: a simulated site run by the real gateway, with a terminal view.

What must live here: the demo site and its run (:mod:`.run`) and the terminal view
(:mod:`.view`). The demo uses the simulators of :mod:`ampgate.sim` and the gateway as the daemon
does; nothing below imports it.
"""
