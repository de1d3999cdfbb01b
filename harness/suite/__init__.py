"""Suite files: parse and validate a suite (TOML or dict), check its limits, expand it into cells."""
