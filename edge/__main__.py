"""``python -m edge`` is ``deploykit-edge``."""

from edge.cli import main

raise SystemExit(main())
