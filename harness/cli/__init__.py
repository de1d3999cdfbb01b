"""The ``stochgrad`` command line."""
