"""Secrets in tracking URIs: hidden wherever a config, an override or a message is written.

A URI may carry a password in its userinfo (`postgresql://alice:PW@host/db`) or in its query
(`...?sslpassword=PW`, `?token=...`). `redact_text` finds every `scheme://` URI inside any text
(an override, a YAML dump, an error message) and masks exactly those parts; nothing else
changes. URIs are split the way urllib.parse splits them (as requests, under MLflow, does), and a
database URI's password also as SQLAlchemy reads it: a password holding `@`, `:` or `/` is
masked whole.

HTTP credentials in the URI are also moved out of it before MLflow sees it (`credentials_to_env`):
MLflow would accept them, but then print the whole URI, password included, in its error messages.

Torch-free and MLflow-free: imported by the training process, Hydra's logging and the recorder.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

MASK = "***"
# A query key naming a secret: any key containing one of these (case-insensitive), e.g.
# password, sslpassword, access_token, client_secret, api_key, x-api-key, passphrase.
SECRET_KEY_WORDS = ("pass", "pwd", "token", "secret", "api_key", "api-key", "apikey",
                    "credential", "private_key", "signature")
SECRET_KEYS = frozenset({"key", "sig", "auth"})  # whole-key matches only ("keyspace" is fine)

_SCHEME_NAME = r"[A-Za-z][A-Za-z0-9+.\-]*"
_SCHEME = re.compile(_SCHEME_NAME + "://")
_SCHEME_IN_TEXT = re.compile(_SCHEME_NAME + r"\\*://")  # Hydra escapes ':' as '\:'
_DATABASE_USERINFO = re.compile(r"[^:/@]*:([^@]*)@")  # sqlalchemy.engine.url's pattern
_URI_END = re.compile(r"(?<!\\)[\s'\"`<>]")  # a URI in text ends at (unescaped) space or quote


def is_secret_key(key: str) -> bool:
    name = unquote(key).strip().lower()
    return name in SECRET_KEYS or any(word in name for word in SECRET_KEY_WORDS)


def _secret_spans(uri: str) -> list[tuple[int, int]]:
    """(start, end) of the password and of every secret query value in one URI."""
    netloc_start = uri.index("//") + 2
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unbalanced '[' in the host: hide everything after the scheme
        return [(netloc_start, len(uri))]
    spans = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        spans.append((netloc_start + userinfo.index(":") + 1, netloc_start + len(userinfo)))
    if not uri.lower().startswith(("http://", "https://")):
        # SQLAlchemy reads a database URI's password up to the first '@', '/' and '?' included
        # (urlsplit would stop the netloc there and see no password at all).
        database_style = _DATABASE_USERINFO.match(uri, netloc_start)
        if database_style:
            spans.append(database_style.span(1))
    if parts.query:
        # The query starts at the first '?' after the netloc (urlsplit's rule; '#' ends it).
        offset = uri.index("?", netloc_start + len(parts.netloc)) + 1
        for field in re.split(r"[&;]", parts.query):
            key, eq, value = field.partition("=")
            if eq and value and is_secret_key(key):
                spans.append((offset + len(key) + 1, offset + len(field)))
            offset += len(field) + 1
    return spans


def _mask(text: str, spans) -> str:
    merged: list[list[int]] = []  # overlapping spans (two readings of one password) become one
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, last = [], 0
    for start, end in merged:
        pieces += [text[last:start], MASK]
        last = end
    return "".join(pieces) + text[last:]


def redact_uri(uri: str) -> str:
    """One URI, fit to show: its password and query secrets replaced by ***."""
    if _SCHEME.match(uri) is None or any(c in uri for c in "\t\r\n"):
        return redact_text(uri)  # not one bare URI: look for URIs inside it
    return _mask(uri, _secret_spans(uri))  # the whole value, a password with a space included


def redact_text(text: str) -> str:
    """Any text with URIs in it (overrides, YAML, messages): every URI's secrets masked."""
    if "://" not in text:
        return text
    spans = []
    for match in _SCHEME_IN_TEXT.finditer(text):
        end = _URI_END.search(text, match.end())
        uri, where = _unescape(text[match.start():end.start() if end else len(text)])
        # A URI followed by another one (a sweep like `uri=a://..,b://..`) is also read on
        # its own when the search reaches it: each gets its own userinfo and query checked.
        spans += [(match.start() + where[s], match.start() + where[e - 1] + 1)
                  for s, e in _secret_spans(uri)]
    return _mask(text, spans) if spans else text


def _unescape(token: str) -> tuple[str, list[int]]:
    """The token without Hydra's escapes (job overrides read `postgresql\\://a\\:PW@h`, doubled
    in a list's repr), and where each of its characters was in the token."""
    chars, where, i = [], [], 0
    while i < len(token):
        while token[i] == "\\" and i + 1 < len(token):
            i += 1
        chars.append(token[i])
        where.append(i)
        i += 1
    return "".join(chars), where


def redact_values(value: Any) -> Any:
    """A config or mapping (params, tags) with every string in it passed through redact_text."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v) for v in value]
    return value


def split_userinfo(uri: str) -> tuple[str, Optional[tuple[str, str]]]:
    """(URI without userinfo, (username, password) or None), decoded as requests decodes them."""
    parts = urlsplit(uri)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return uri, None
    username, _, password = userinfo.partition(":")
    return parts._replace(netloc=hostport).geturl(), (unquote(username), unquote(password))


def http_auth(uri: str) -> tuple[str, dict]:
    """(URI without userinfo, request headers) carrying the credentials as MLflow sends them:
    the URI's userinfo, else MLFLOW_TRACKING_USERNAME/PASSWORD (basic auth), else
    MLFLOW_TRACKING_TOKEN (bearer)."""
    bare, credentials = split_userinfo(uri)
    username, password = credentials or (os.environ.get("MLFLOW_TRACKING_USERNAME"),
                                         os.environ.get("MLFLOW_TRACKING_PASSWORD"))
    if username and password:
        basic = base64.standard_b64encode(f"{username}:{password}".encode()).decode()
        return bare, {"Authorization": f"Basic {basic}"}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return bare, {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    return bare, {}


def credentials_to_env(uri: str) -> str:
    """For an http(s) URI with userinfo: put the credentials where MLflow reads them
    (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, this process only) and return the
    URI without them. Other URIs come back unchanged."""
    if not uri.startswith(("http://", "https://")):
        return uri
    bare, credentials = split_userinfo(uri)
    if credentials is None or not all(credentials):
        return uri  # no password in it: nothing to hide, nothing to move
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = credentials
    return bare


class RedactingFilter(logging.Filter):
    """A logging filter for handlers: masks URI secrets in every record, e.g. Hydra's
    `#0 : tracking.uri=...` line for each job of a sweep (conf/hydra/*_logging/harness.yaml)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class RedactingStream:
    """A text stream that masks URI secrets in all written through it: for a command's stderr,
    where Hydra reports a failed job with its overrides and Python prints tracebacks."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)

    def __getattr__(self, name):  # flush, fileno, isatty, encoding...: the stream's own
        return getattr(self._stream, name)
