"""Register maps shipped with ampgate: one TOML file per device model (data, not code)."""
