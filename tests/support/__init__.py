"""Test support: small real runs, synthetic runs and a headless-browser helper for the report tests."""
