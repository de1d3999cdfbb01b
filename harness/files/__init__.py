"""Files every layer writes: atomic writes with normal permissions, and the self-checking on-disk cache."""
