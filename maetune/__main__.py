"""`python -m maetune` is the `maetune` command."""

from maetune.cli import main

raise SystemExit(main())
