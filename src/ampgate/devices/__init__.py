"""ampgate.devices."""
