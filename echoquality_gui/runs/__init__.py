"""The Runs tab and the MLflow web UI."""
