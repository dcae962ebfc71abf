"""The decision log's JSON lines (spliced from bytes): each line is one JSON object with the same
members, in the same order, as a structlog line plus the decision's fields."""

from __future__ import annotations

import io

import orjson

from webhook.observability.decisionlog import DecisionLog

FORGED = ('x"}\n{"result":"allow', "a\\b", "\u2028", "\x00")


def test_json_lines_parse_back_whole_in_order() -> None:
    """Every line parses as one object: timestamp (UTC, microseconds), the constant members, then the
    fields as given, also with hostile strings and with no fields; a new second renews the stamp."""
    stream = io.BytesIO()
    times = iter([1_764_547_200.25, 1_764_547_200.5, 1_764_547_261.75] + [1_764_547_262.0] * len(FORGED))
    log = DecisionLog(stream, clock=lambda: next(times))
    log.write({"result": "allow", "sub": "u", "request_id": None})
    log.write({})
    log.write({"result": "reject", "exp": 3})
    for value in FORGED:
        log.write({"result": "reject", "sub": value})
    log.flush()
    lines = stream.getvalue().split(b"\n")
    assert lines[-1] == b""
    parsed = [orjson.loads(line) for line in lines[:-1]]
    assert len(parsed) == 3 + len(FORGED)
    head = {"level": "info", "component": "webhook", "event": "auth.decision"}
    assert parsed[0] == {
        "timestamp": "2025-12-01T00:00:00.250000Z",
        **head,
        "result": "allow",
        "sub": "u",
        "request_id": None,
    }
    assert list(parsed[0]) == ["timestamp", "level", "component", "event", "result", "sub", "request_id"]
    assert parsed[1] == {"timestamp": "2025-12-01T00:00:00.500000Z", **head}
    assert parsed[2] == {"timestamp": "2025-12-01T00:01:01.750000Z", **head, "result": "reject", "exp": 3}
    assert [p["sub"] for p in parsed[3:]] == list(FORGED)
