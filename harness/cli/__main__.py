"""``python -m harness.cli``: the ``stochgrad`` command line."""

from harness.cli.main import main

raise SystemExit(main())
