"""ampgate: Modbus gateway and dynamic load management for EV-charger sites."""

__version__ = "0.1.0"
