"""Loss histories of many runs at once, for reading whole sweeps back (src/report/runs.py).

On a SQL store (SQLite, PostgreSQL, ...) all histories come from one query whose rows are read
as plain DB-API tuples: about 2000 rows a run, where MLflow's per-run get_metric_history (and its
ORM-built get_metric_history_bulk) cost seconds per hundred runs, and even SQLAlchemy's own
result rows cost twice the query. That query uses the SQL store's session and its metrics table,
which are MLflow internals (mlflow 3.17): `sql_store_parts` checks them and fails with a
one-line message if they change. Other stores (a tracking server) are read run by run through
the public client.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

QUERY_CHUNK = 500  # run ids per query: well under any database's limit on the statement


class BulkReadError(RuntimeError):
    pass


def curve(steps, values) -> np.ndarray:
    """A metric's values by step 0, 1, ...; a gap in the steps stops the curve there (of several
    values logged for one step, the largest wins: the order src.compare always read them in)."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    order = np.lexsort((values, steps))  # by step, then value
    steps, values = steps[order], values[order]
    last = np.ones(len(steps), dtype=bool)  # each step's largest value
    last[:-1] = steps[1:] != steps[:-1]
    steps, values = steps[last], values[last]
    first = np.searchsorted(steps, 0)
    steps, values = steps[first:], values[first:]
    # Distinct steps >= 0 in order equal their position exactly up to the first gap.
    return values[:np.count_nonzero(steps == np.arange(len(steps)))]


def sql_store_parts(client):
    """(session maker, metrics table columns) of a SQL store, or None for other stores."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    if not isinstance(store, SqlAlchemyStore):
        return None
    try:
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        c = SqlMetric.__table__.c
        columns = (c.run_uuid, c.key, c.step, c.value, c.is_nan)
        return store.ManagedSessionMaker, columns
    except (ImportError, AttributeError) as exc:
        raise BulkReadError(f"mlflow's SQL store internals changed ({exc}); src/bulk_history.py "
                            "needs updating for this mlflow version") from None


def sql_rows(session_maker, columns, run_ids: list, key: str) -> list:
    """(run id, step, value, is_nan) rows of `key` for these runs, as the driver returns them."""
    from sqlalchemy import select

    run_uuid, metric_key, step, value, is_nan = columns
    rows = []
    with session_maker() as session:
        connection = session.connection()
        for start in range(0, len(run_ids), QUERY_CHUNK):
            query = select(run_uuid, step, value, is_nan).where(
                metric_key == key, run_uuid.in_(run_ids[start:start + QUERY_CHUNK]))
            # Literal values (run ids, the key: strings SQLAlchemy quotes), so the statement
            # runs on the driver's cursor as it is, whatever the driver's parameter style.
            sql = str(query.compile(dialect=connection.dialect,
                                    compile_kwargs={"literal_binds": True}))
            cursor = connection.connection.cursor()
            try:
                cursor.execute(sql)
                rows += cursor.fetchall()
            finally:
                cursor.close()
    return rows


def loss_histories(client, run_ids, key: str = "loss") -> dict:
    """run id -> its `key` history as an array by step (see `curve`)."""
    run_ids = list(run_ids)
    parts = sql_store_parts(client)
    steps, values = defaultdict(list), defaultdict(list)
    if parts is None:
        for run_id in run_ids:
            for m in client.get_metric_history(run_id, key):
                steps[run_id].append(m.step)
                values[run_id].append(m.value)
    else:
        # MLflow stores a NaN as value 0 with is_nan set and reads it back as NaN: so does this.
        for run_id, s, v, nan in sql_rows(*parts, run_ids, key):
            steps[run_id].append(s)
            values[run_id].append(math.nan if nan else v)
    return {run_id: curve(steps[run_id], values[run_id]) for run_id in run_ids}
