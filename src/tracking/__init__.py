"""MLflow tracking through a sidecar recorder process."""
