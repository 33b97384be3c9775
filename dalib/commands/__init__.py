"""The subcommands of ``dalib`` (:mod:`dalib.cli`), one module each."""
