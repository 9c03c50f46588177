"""The quality model and its files: network, checkpoints, weights, precision, export."""
