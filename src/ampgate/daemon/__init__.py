"""ampgate.daemon."""
