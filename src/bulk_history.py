"""Loss histories of many runs at once, for reading whole sweeps back (src/report/runs.py).

On a SQL store (SQLite, PostgreSQL, ...) all histories come from one query that returns plain
rows: about 2000 rows a run, where MLflow's per-run get_metric_history (and its ORM-built
get_metric_history_bulk) cost seconds per hundred runs. That query uses the SQL store's session
and its metrics table, which are MLflow internals (mlflow 3.17): `sql_store_parts` checks them
and fails with a one-line message if they change. Other stores (a tracking server) are read run
by run through the public client.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

QUERY_CHUNK = 500  # run ids per query: well under SQLite's limit on bound parameters


class BulkReadError(RuntimeError):
    pass


def curve(points) -> np.ndarray:
    """(step, value) pairs -> values by step 0, 1, ...; a gap in the steps stops the curve there
    (of several values logged for one step, the largest wins: the order src.compare always
    read them in)."""
    by_step = dict(sorted(points))
    n = 0
    while n in by_step:
        n += 1
    return np.array([by_step[i] for i in range(n)], dtype=float)


def sql_store_parts(client):
    """(session maker, metrics table) of a SQL store, or None for other stores."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    if not isinstance(store, SqlAlchemyStore):
        return None
    try:
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        columns = (SqlMetric.run_uuid, SqlMetric.key, SqlMetric.step, SqlMetric.value)
        return store.ManagedSessionMaker, columns
    except (ImportError, AttributeError) as exc:
        raise BulkReadError(f"mlflow's SQL store internals changed ({exc}); src/bulk_history.py "
                            "needs updating for this mlflow version") from None


def loss_histories(client, run_ids, key: str = "loss") -> dict:
    """run id -> its `key` history as an array by step (see `curve`)."""
    run_ids = list(run_ids)
    parts = sql_store_parts(client)
    points = defaultdict(list)
    if parts is None:
        for run_id in run_ids:
            points[run_id] = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
    else:
        from sqlalchemy import select

        session_maker, (run_uuid, metric_key, step, value) = parts
        with session_maker() as session:
            for start in range(0, len(run_ids), QUERY_CHUNK):
                query = select(run_uuid, step, value).where(
                    metric_key == key, run_uuid.in_(run_ids[start:start + QUERY_CHUNK]))
                for run_id, s, v in session.execute(query):
                    points[run_id].append((s, v))
    return {run_id: curve(points[run_id]) for run_id in run_ids}
