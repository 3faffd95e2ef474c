"""A password in `tracking.uri` is used, and never written: real sweeps, then a search of it all.

Two stores, each with a unique password in the URI on the command line: a throwaway PostgreSQL
that really asks for it (scram-sha-256), and an `mlflow server --app-name basic-auth` whose admin
user has it. After a sweep (Hydra's .hydra/ output on), a reproduction, a comparison report and a
run card, the password is searched for in every table and column of the store (SQL), in every
file the commands and the stores wrote (artifacts, Hydra's multirun.yaml and .hydra/, reports,
the databases' raw bytes) and in everything printed: zero hits. Each search also finds the masked
form (`:***@`), so a search that reads nothing cannot pass.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import free_port, running_mlflow_server, running_postgres

pytestmark = pytest.mark.slow

PASSWORD = f"Pw-{uuid.uuid4().hex}"  # unique, so that any hit is ours
MASKED = ":***@"
SWEEP = ["experiment=autograd", "seed=0,1", "steps=50", "hydra.output_subdir=.hydra"]
CLI_TIMEOUT_S = 300


def cli(store, module: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=store.cwd, env=env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def use_everywhere(store, uri: str) -> str:
    """Sweep with the password in tracking.uri, reproduce a job, compare, card: all they print."""
    swept = store.run_cli("-m", f"tracking.uri={uri}", *SWEEP, env=store.env(tracking_uri=None))
    assert swept.returncode == 0, swept.describe()
    printed = [swept.stdout, swept.stderr]

    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("pytorch-examples").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("harness.sweep") == "true"]
    children = [r for r in runs if r is not parent]
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
    assert MASKED in parent.info.run_name and MASKED in parent.data.tags["sweep.overrides"]
    assert all(MASKED in r.data.params["tracking.uri"] for r in children)

    # The reproducer tracks where its own setting says (here MLFLOW_TRACKING_URI), never to the
    # masked URI of the logged config.
    child = children[0].info.run_id
    again = cli(store, "src.reproduce", child, env=store.env(tracking_uri=uri))
    assert again.returncode == 0, again.stderr
    assert f"identical: 50 losses of run {child}" in again.stdout
    assert client.search_runs([parent.info.experiment_id], f"tags.reproduces = '{child}'")

    compared = cli(store, "src.compare", "--uri", uri, "--out", str(store.root / "report"),
                   env=store.env(tracking_uri=None))
    assert compared.returncode == 0, compared.stderr
    card = cli(store, "src.card", child, "--uri", uri, "--out", str(store.root / "card.md"),
               env=store.env(tracking_uri=None))
    assert card.returncode == 0, card.stderr
    return "".join(printed + [again.stdout, again.stderr, compared.stdout, compared.stderr,
                              card.stdout, card.stderr])


def assert_no_password_in_files(*folders: Path) -> None:
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    # What must have been searched: Hydra's outputs, the runs' artifacts, the report, the card.
    assert {"multirun.yaml", "hydra.yaml", "config.yaml", "overrides.yaml", "report.md",
            "card.md"} <= names, sorted(names)
    hits = [str(p) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert hits == [], hits
    assert any(MASKED.encode() in p.read_bytes() for p in files if p.name == "multirun.yaml")


def sqlite_hits(db: Path, text: str) -> list:
    """(table, column) of every cell of an SQLite database that contains `text`."""
    conn = sqlite3.connect(db)
    try:
        hits = []
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")')]:
                found = conn.execute(f'SELECT count(*) FROM "{table}" WHERE '
                                     f'instr(CAST("{column}" AS TEXT), ?) > 0', (text,))
                if found.fetchone()[0]:
                    hits.append((table, column))
        return hits
    finally:
        conn.close()


@pytest.fixture(scope="module")
def postgres():
    with running_postgres(password=PASSWORD) as (pg, scheme):
        yield pg, pg.uri(scheme)


def test_postgres_password_is_used_and_never_stored(postgres, store):
    pg, uri = postgres
    printed = use_everywhere(store, uri)
    assert PASSWORD not in printed and MASKED in printed

    conn = pg.connect()  # every column of every table, as text
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = 'public'")
            columns = cur.fetchall()
            hits, masked = [], []
            for table, column in columns:
                for text, found in ((PASSWORD, hits), (MASKED, masked)):
                    cur.execute(f'SELECT count(*) FROM "{table}" '
                                f'WHERE strpos("{column}"::text, %s) > 0', (text,))
                    if cur.fetchone()[0]:
                        found.append((table, column))
    finally:
        conn.close()
    assert len(columns) > 50 and hits == [], hits
    assert ("params", "value") in masked and ("runs", "name") in masked, masked
    assert_no_password_in_files(store.root)


@pytest.fixture(scope="module")
def basic_auth_server(tmp_path_factory):
    """(base URL, its folder) of an `mlflow server --app-name basic-auth`; admin's password is
    PASSWORD (MLFLOW_AUTH_ADMIN_PASSWORD at first start, users in the folder's auth.db)."""
    folder = tmp_path_factory.mktemp("basic_auth_server")
    config = folder / "basic_auth.ini"
    config.write_text(f"[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{folder / 'auth.db'}\nadmin_username = admin\n")
    with running_mlflow_server(
            f"sqlite:///{folder / 'mlflow.db'}", folder, "--app-name", "basic-auth",
            "--artifacts-destination", str(folder / "artifacts"),
            env={"MLFLOW_AUTH_CONFIG_PATH": str(config),
                 "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,  # CSRF, required
                 "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD}) as url:
        yield url, folder


def test_http_basic_auth_password_is_used_and_never_stored(basic_auth_server, store):
    import mlflow
    from mlflow.exceptions import MlflowException

    url, folder = basic_auth_server
    uri = url.replace("http://", f"http://admin:{PASSWORD}@")
    with pytest.raises(MlflowException, match="401|nauthorized"):  # the server does ask
        mlflow.MlflowClient(url).search_experiments()
    assert mlflow.MlflowClient(uri).search_experiments()  # MLflow's client honours userinfo

    printed = use_everywhere(store, uri)
    assert PASSWORD not in printed and MASKED in printed
    for db in (folder / "mlflow.db", folder / "auth.db"):
        assert sqlite_hits(db, PASSWORD) == [], db
    assert ("params", "value") in sqlite_hits(folder / "mlflow.db", MASKED)
    assert_no_password_in_files(store.root, folder)


def test_unreachable_credentialed_server_is_refused_in_one_redacted_line(store):
    uri = f"http://admin:{PASSWORD}@127.0.0.1:{free_port()}"
    result = store.run_cli(f"tracking.uri={uri}", "experiment=autograd", "steps=5",
                           env=store.env(tracking_uri=None))
    assert result.returncode == 1, result.describe()
    assert result.stderr_lines == [
        f"error: tracking server {uri.replace(PASSWORD, '***')} is unreachable: "
        "[Errno 111] Connection refused"], result.describe()
    assert PASSWORD not in result.stdout + result.stderr


def test_wrong_password_is_refused_in_one_redacted_line(basic_auth_server, store):
    url, _ = basic_auth_server
    wrong = f"Wrong-{uuid.uuid4().hex}"
    result = store.run_cli(f"tracking.uri={url.replace('http://', f'http://admin:{wrong}@')}",
                           "experiment=autograd", "steps=5", env=store.env(tracking_uri=None))
    assert result.returncode == 1, result.describe()
    (line,) = result.stderr_lines
    assert line.startswith(f"error: tracking store {url.replace('http://', 'http://admin:***@')} "
                           "is not usable:") and "401" in line, line
    assert wrong not in result.stdout + result.stderr
    assert store.runs() == []


def test_documented_environment_credentials_work(basic_auth_server, store):
    """The README's preferred way: the URI without credentials, MLflow's variables for them."""
    import mlflow

    url, _ = basic_auth_server
    result = store.run_cli(f"tracking.uri={url}", "experiment=autograd", "steps=5", "seed=7",
                           env=store.env(tracking_uri=None, MLFLOW_TRACKING_USERNAME="admin",
                                         MLFLOW_TRACKING_PASSWORD=PASSWORD))
    assert result.returncode == 0, result.describe()
    client = mlflow.MlflowClient(url.replace("http://", f"http://admin:{PASSWORD}@"))
    experiment = client.get_experiment_by_name("pytorch-examples").experiment_id
    (run,) = client.search_runs([experiment], "params.seed = '7'")
    assert run.info.status == "FINISHED"
