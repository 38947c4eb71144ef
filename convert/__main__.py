"""``python -m convert`` is ``deploykit``."""

from convert.cli import main

raise SystemExit(main())
