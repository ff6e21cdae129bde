"""ampgate.sim."""
