"""``python -m convnas``: the command line."""

from convnas.cli import main

raise SystemExit(main())
