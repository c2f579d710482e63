"""Argument parsing for each `rapref` subcommand: flags in, a stage config out, then the stage's `main(cfg)`."""
