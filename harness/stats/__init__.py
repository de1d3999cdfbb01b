"""Statistics: the one authority for intervals, bias tests, tail diagnostics and efficiency."""
