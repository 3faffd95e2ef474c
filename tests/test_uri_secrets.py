"""The one redaction (src/tracking/uri_secrets.py) and the credentialed reachability check."""

from __future__ import annotations

import base64
import http.server
import io
import logging
import os
import threading

import pytest

from src.tracking.client import TrackingError, check_reachable
from src.tracking.store import redact
from src.tracking.uri_secrets import (
    RedactingFilter,
    RedactingStream,
    credentials_to_env,
    http_auth,
    redact_text,
    redact_uri,
    redact_values,
    split_userinfo,
)
from tests.helpers import free_port


@pytest.mark.parametrize("uri, shown", [
    ("postgresql://alice:PW@127.0.0.1:5499/mlf", "postgresql://alice:***@127.0.0.1:5499/mlf"),
    ("postgresql+psycopg://alice:p@ss:w@db/mlf", "postgresql+psycopg://alice:***@db/mlf"),
    ("postgresql://alice:pa/ss?x@db/mlf", "postgresql://alice:***@db/mlf"),  # SQLAlchemy's view
    ("http://admin:PW@tracking-host:5000", "http://admin:***@tracking-host:5000"),
    ("redis://:PW@host:6379/0", "redis://:***@host:6379/0"),
    ("mysql://root:PW@[::1]:3306/db", "mysql://root:***@[::1]:3306/db"),
])
def test_password_in_userinfo_is_masked(uri, shown):
    assert redact_uri(uri) == shown
    assert redact(uri) == shown  # the old name, kept for its callers


@pytest.mark.parametrize("uri, shown", [
    ("postgresql://alice@db/mlf?sslmode=require&sslpassword=PW&application_name=x",
     "postgresql://alice@db/mlf?sslmode=require&sslpassword=***&application_name=x"),
    ("https://host/api?PASSWORD=PW&page=2", "https://host/api?PASSWORD=***&page=2"),
    ("https://host/api?access_token=PW#top", "https://host/api?access_token=***#top"),
    ("https://host/?Token=PW;api_key=PW2;secret=PW3",
     "https://host/?Token=***;api_key=***;secret=***"),
    ("s3://bucket/key?X-Amz-Signature=PW&X-Amz-Credential=PW2&versionId=7",
     "s3://bucket/key?X-Amz-Signature=***&X-Amz-Credential=***&versionId=7"),
])
def test_secrets_in_the_query_are_masked(uri, shown):
    assert redact_uri(uri) == shown


def test_every_uri_inside_a_text_is_masked_and_nothing_else():
    text = ("sweep tracking.uri=postgresql://alice:PW1@db/mlf,mysql://bob:PW2@db2/x "
            "experiment=autograd seed=0,1\nuri: 'http://carol:PW3@host:5000' "
            "store=sqlite:///tmp/m.db?password=PW4 and https://user@host/a@b?page=2")
    assert redact_text(text) == (
        "sweep tracking.uri=postgresql://alice:***@db/mlf,mysql://bob:***@db2/x "
        "experiment=autograd seed=0,1\nuri: 'http://carol:***@host:5000' "
        "store=sqlite:///tmp/m.db?password=*** and https://user@host/a@b?page=2")


def test_uris_in_hydras_escaped_override_strings_are_masked():
    # How Hydra prints and stores a job's overrides: ':' '=' ',' ' ' escaped with a backslash.
    text = r"#0 : tracking.uri=postgresql\://alice\:P\ W\,1@db\:5432/mlf?token\=T seed=0"
    assert redact_text(text) == (r"#0 : tracking.uri=postgresql\://alice\:***@db\:5432/mlf"
                                 r"?token\=*** seed=0")
    listed = repr(["tracking.uri=postgresql\\://alice\\:PW@db/mlf", "seed=0"])  # doubled \\
    assert redact_text(listed) == listed.replace("PW", "***")


@pytest.mark.parametrize("text", [
    "experiment=autograd seed=0,1 lr=1e-6",
    "sqlite:////home/me/mlruns/mlflow.db",
    "http://tracking-host:5000/path@not-userinfo?page=2&sort=asc",
    "postgresql://alice@db:5432/mlflow?sslmode=require",
    "tracking:\n  uri: null\n  experiment: pytorch-examples\n",
    "time 12:30 at host:5000",
])
def test_text_without_secrets_is_unchanged(text):
    assert redact_text(text) == text
    assert redact_uri(text) == text


def test_a_mapping_is_redacted_value_by_value():
    config = {"lr": 1e-6, "seed": 3, "flag": None,
              "tracking": {"uri": "postgresql://a:PW@db/m", "experiment": "x"},
              "overrides": ["tracking.uri=http://a:PW@h:5000", "seed=3"]}
    assert redact_values(config) == {
        "lr": 1e-6, "seed": 3, "flag": None,
        "tracking": {"uri": "postgresql://a:***@db/m", "experiment": "x"},
        "overrides": ["tracking.uri=http://a:***@h:5000", "seed=3"]}


def test_log_records_are_redacted():
    record = logging.LogRecord("hydra", logging.INFO, __file__, 1, "\t#%d : %s",
                               (0, "tracking.uri=postgresql://a:PW@db/m seed=0"), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "\t#0 : tracking.uri=postgresql://a:***@db/m seed=0"


def test_a_redacting_stream_masks_what_is_written_through_it():
    target = io.StringIO()
    stream = RedactingStream(target)
    line = "Error executing job with overrides: ['tracking.uri=http\\\\://a\\\\:PW@h']\n"
    assert stream.write(line) == len(line)
    stream.flush()
    assert target.getvalue() == line.replace("PW", "***")


def test_userinfo_is_split_off_and_decoded_like_requests_does():
    assert split_userinfo("http://al%40ce:p%3Ass@127.0.0.1:5000/x") == (
        "http://127.0.0.1:5000/x", ("al@ce", "p:ss"))
    assert split_userinfo("http://127.0.0.1:5000") == ("http://127.0.0.1:5000", None)


def test_http_credentials_as_mlflow_sends_them(monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    basic = "Basic " + base64.b64encode(b"alice:PW").decode()
    assert http_auth("http://h:5000") == ("http://h:5000", {})
    assert http_auth("http://alice:PW@h:5000") == ("http://h:5000", {"Authorization": basic})
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "T")
    assert http_auth("http://h:5000") == ("http://h:5000", {"Authorization": "Bearer T"})
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "PW")
    assert http_auth("http://h:5000") == ("http://h:5000", {"Authorization": basic})


def test_credentials_leave_the_uri_for_mlflows_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert credentials_to_env("postgresql://a:PW@db/m") == "postgresql://a:PW@db/m"
    assert credentials_to_env("https://alice@h/mlflow") == "https://alice@h/mlflow"
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ
    assert credentials_to_env("https://alice:PW@h/mlflow") == "https://h/mlflow"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
        "alice", "PW")


@pytest.fixture
def health_server():
    """A local /health that answers 200 only to basic auth alice:PW, else 401."""
    expected = "Basic " + base64.b64encode(b"alice:PW").decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/health" and self.headers.get("Authorization") == expected
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_reachability_check_sends_the_credentials(health_server, monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    check_reachable(f"http://alice:PW@127.0.0.1:{health_server}")
    with pytest.raises(TrackingError) as refused:
        check_reachable(f"http://alice:WRONG@127.0.0.1:{health_server}")
    assert str(refused.value) == (f"tracking server http://alice:***@127.0.0.1:{health_server} "
                                  "refused the credentials: HTTP 401")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "PW")
    check_reachable(f"http://127.0.0.1:{health_server}")


def test_unreachable_credentialed_server_is_one_redacted_line():
    port = free_port()
    with pytest.raises(TrackingError) as refused:
        check_reachable(f"http://alice:PW@127.0.0.1:{port}", timeout=5)
    message = str(refused.value)
    assert message.startswith(f"tracking server http://alice:***@127.0.0.1:{port} is unreachable")
    assert "PW" not in message and "\n" not in message
