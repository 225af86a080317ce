"""`python -m tinygpt` runs the command line."""

from tinygpt.cli import main

raise SystemExit(main())
