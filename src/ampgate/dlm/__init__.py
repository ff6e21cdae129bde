"""ampgate.dlm."""
