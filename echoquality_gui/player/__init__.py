"""The cine player and its frame decoding off the GUI thread."""
