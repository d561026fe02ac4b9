"""`python -m vidda` is the same as the `vidda` command (this is what `torchrun -m vidda` runs)."""

from vidda.cli import main

raise SystemExit(main())
