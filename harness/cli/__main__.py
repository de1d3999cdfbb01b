"""``python -m harness.cli.main``: the ``stochgrad`` command line."""

from harness.cli.main import main

raise SystemExit(main())
