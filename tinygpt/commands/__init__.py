"""Subcommands of the ``tinygpt`` command line that drive the library end to end."""
