"""Files on disk: all-or-nothing writes, file digests, verified downloads."""
