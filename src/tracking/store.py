"""Where runs are tracked: the tracking URI and the artifact location that go with it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from src.paths import REPO_ROOT
from src.tracking.uri_secrets import redact_uri

DEFAULT_STORE_DIR = REPO_ROOT / "mlruns"


def tracking_uri(configured: Optional[str] = None) -> str:
    """Config key first, then $MLFLOW_TRACKING_URI, then SQLite under <repo>/mlruns/."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{DEFAULT_STORE_DIR / 'mlflow.db'}"


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a sqlite:/// URI (None for other stores)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve()
    return None


def artifact_location(uri: str) -> Optional[str]:
    """Artifacts of a SQLite store live beside its database, wherever the run was started from.

    (MLflow would otherwise fix them from the working directory at experiment creation.) For a
    tracking server, None lets the server decide.
    """
    db = sqlite_path(uri)
    return str(db.parent / "artifacts") if db is not None else None


def redact(uri: str) -> str:
    """A URI fit for logs and params: no password, no query secret."""
    return redact_uri(uri)
