"""ampgate.transport."""
