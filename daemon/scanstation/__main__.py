"""`python -m scanstation` runs the command line."""

from scanstation.cli import main

raise SystemExit(main())
