"""The comparison report's parts: runs.py reads runs back, tables.py and figures.py present them,
mlflow_ui.py writes what the MLflow UI shows first. The command is src/compare.py."""
