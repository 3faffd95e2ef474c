"""Is a tracking store usable? Answered before anything trains, in one line.

MLflow discovers an unusable store late and loudly: SQLAlchemy retries an unreachable database
for minutes, a file store or an unknown scheme fails with a traceback. `check_store` asks the
store itself (connects, with a short timeout) and raises TrackingError with one line naming the
redacted URI and the reason. It runs in the recorder process, which has SQLAlchemy imported
already, while the training process imports torch (see recorder.StoreWriter.open).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from src.tracking.client import TrackingError, check_reachable
from src.tracking.store import redact, sqlite_path

CHECK_TIMEOUT_S = 5.0
DATABASES = ("postgresql", "mysql", "mssql")  # SQLAlchemy dialects MLflow supports, besides sqlite
WORKING = "sqlite:///PATH, postgresql://, mysql://, mssql://, http://, https://"


def scheme(uri: str) -> str:
    """'postgresql' for postgresql+psycopg://..., '' for a plain path."""
    head, sep, _ = uri.partition(":")
    return head.split("+")[0].lower() if sep else ""


def check_store(uri: str, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Raise TrackingError (one line) unless runs can be written to this store."""
    kind = scheme(uri)
    if kind in ("http", "https"):
        check_reachable(uri, timeout)
    elif kind == "sqlite":
        check_sqlite(uri)
    elif kind in DATABASES:
        check_database(uri, timeout)
    elif kind in ("file", ""):
        check_file_store(uri)
    else:
        raise TrackingError(f"tracking store {redact(uri)}: unknown scheme {kind!r}; "
                            f"the schemes that work: {WORKING}")


def fail(uri: str, reason: str) -> TrackingError:
    return TrackingError(f"tracking store {redact(uri)} is not usable: {reason}")


def check_sqlite(uri: str) -> None:
    db = sqlite_path(uri)
    if db is None:
        raise fail(uri, "a SQLite store needs an absolute path: sqlite:///PATH/mlflow.db")
    folder = db.parent
    try:  # a new folder is made, as MLflow would
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(uri, f"folder {folder} cannot be made ({exc.strerror})") from None
    try:  # actually write: permission bits say little to root or on read-only mounts
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise fail(uri, f"folder {folder} is not writable ({exc.strerror})") from None
    if db.exists():
        try:
            with sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=CHECK_TIMEOUT_S) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise fail(uri, f"{db}: {exc}") from None


def connect_args(dialect, timeout: float) -> dict:
    """The driver's own connect timeout (SQLAlchemy has none of its own)."""
    if dialect.name in ("postgresql", "mysql"):
        return {"connect_timeout": max(1, int(timeout))}
    if dialect.driver == "pyodbc":
        return {"timeout": max(1, int(timeout))}
    return {"login_timeout": max(1, int(timeout))}


def check_database(uri: str, timeout: float) -> None:
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
        dialect = url.get_dialect()
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                          connect_args=connect_args(dialect, timeout))
    except ImportError as exc:
        raise fail(uri, f"its database driver is not installed ({exc}); for PostgreSQL: "
                        f"pip install -e '.[postgres]'") from None
    except Exception as exc:
        raise fail(uri, one_line(exc)) from None
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        reason = one_line(getattr(exc, "orig", None) or exc)
        raise TrackingError(f"tracking store {redact(uri)} is unreachable: {reason} "
                            f"(connect timeout {timeout:g} s)") from None
    finally:
        engine.dispose()


def check_file_store(uri: str) -> None:
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
        raise TrackingError(
            f"tracking store {redact(uri)}: MLflow has deprecated file stores and refuses them "
            f"unless MLFLOW_ALLOW_FILE_STORE=true is set; use sqlite:///PATH/mlflow.db or a "
            f"tracking server (http://, https://)")
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    folder = path if path.is_dir() else path.parent
    if not os.access(folder, os.W_OK):
        raise fail(uri, f"folder {folder} is not writable")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
