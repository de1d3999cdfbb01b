"""``python -m harness.cli.main``: the ``stochgrad`` command line."""

from harness.cli.main.main import main

raise SystemExit(main())
