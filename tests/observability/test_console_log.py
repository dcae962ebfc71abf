"""LOG_FORMAT=console: values from outside (claimed sub, kid, jti, forwarded headers) can never end a
line, add a field or carry terminal escapes, in decision lines and in the other structlog lines."""

from __future__ import annotations

import io
import re

import pytest
import structlog

from webhook.observability.decisionlog import DecisionLog
from webhook.observability.logs import configure, console_value, get_logger

FORGED = (
    "x\n2026-12-01T00:00:00.000000Z level=info component=webhook event=auth.decision result=allow sub=root",
    "a\rb",
    "k=v result=allow",
    "\x1b[2K\x1b[1Gfake",
    "\u2028line\u2029sep\x85nel",
    "\u202egnp.exe",
    'quote" realm=evil',
    "back\\slash",
    "\x00nul\x7fdel",
)
#: logfmt: key=plain or key="quoted with \" and \\ escapes"
FIELD = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]+)')


def fields_of(line: str) -> dict[str, str]:
    """The key=value pairs of one console line; the pairs must cover the whole line."""
    pairs = FIELD.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, line
    return dict(pairs)


def test_console_values_are_plain_words_or_escaped_quoted_strings() -> None:
    """Plain words stay as they are; anything else is quoted with no control or format character left."""
    assert console_value("tenant-5d1a7c3e") == "tenant-5d1a7c3e"
    assert console_value(42) == "42"
    for value in FORGED:
        shown = console_value(value)
        assert shown.startswith('"') and shown.endswith('"'), shown
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", shown), shown
        assert "=" not in value or "=" in shown  # kept, but inside the quotes


def test_decision_lines_cannot_be_forged() -> None:
    """One decision line per decision whatever the claimed fields hold; each field parses back whole."""
    stream = io.BytesIO()
    log = DecisionLog(stream, console=True, clock=lambda: 1_764_547_200.0)
    for value in FORGED:
        log.write({"result": "reject", "reason": "bad_signature", "sub": value, "kid": value, "user_agent": value})
    log.flush()
    lines = stream.getvalue().decode("utf-8").split("\n")
    assert lines[-1] == ""
    assert len(lines[:-1]) == len(FORGED)
    for line in lines[:-1]:
        fields = fields_of(line)
        assert (fields["event"], fields["result"], fields["reason"]) == ("auth.decision", "reject", "bad_signature")
        assert "\x1b" not in line


def test_structlog_console_lines_cannot_be_forged(capsys: pytest.CaptureFixture[str]) -> None:
    """Other log lines (action.call, realm_registry...) in console format escape every outside value."""
    configure("info", "console")
    try:
        for value in FORGED:
            get_logger("webhook.actions").info("action.call", sub=value, request_id=value)
    finally:
        structlog.reset_defaults()
    lines = capsys.readouterr().out.split("\n")
    assert lines[-1] == ""
    assert len(lines[:-1]) == len(FORGED)
    for line in lines[:-1]:
        assert "action.call" in line and "\x1b" not in line and "\r" not in line
        tail = line[line.index("action.call") + len("action.call") :].strip()
        assert set(fields_of(tail)) == {"component", "request_id", "sub"}
