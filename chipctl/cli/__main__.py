"""``python -m chipctl.cli``: the ``chipctl`` command."""

from chipctl.cli import main

raise SystemExit(main())
