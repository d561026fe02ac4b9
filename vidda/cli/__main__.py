"""``python -m vidda.cli`` is the same as the ``vidda`` command."""

from vidda.cli.main import main

raise SystemExit(main())
