"""ampgate.codec."""
