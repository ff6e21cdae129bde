"""The ``ampgate`` command: one entry point (:mod:`.main`), its subcommands registered by modules.

What must live here: argument parsing and the text a person reads — the daemon's commands
(:mod:`.daemon_commands`: run, check-config, demo) and the installer's commissioning commands
(:mod:`.commission`: maps, read, write, scan, simulate). The top layer: nothing imports it.
"""
