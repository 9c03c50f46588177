"""Training runs: the run folder on disk and MLflow tracking."""
