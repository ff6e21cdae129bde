"""The installer's commissioning commands: ``maps``, ``read``, ``write``, ``scan``, ``simulate``.

:mod:`.commands` registers them; :mod:`.device_io` opens one device for a command,
:mod:`.format` shapes text and JSON, :mod:`.scan` walks a bus, :mod:`.simulate` serves simulated
devices.
"""
