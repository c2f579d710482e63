"""Run folders: the one protocol every writer follows (claim, lock, begin, launch record, finished marker)."""
