"""The decision log's JSON lines (spliced from bytes): each line is one JSON object with the same
members, in the same order, as a structlog line plus the decision's fields."""

from __future__ import annotations

import io

import orjson

from webhook.observability import decisionlog
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


def test_write_allow_renders_the_line_write_renders() -> None:
    """`write_allow` (members memoised per realm, user, role and kind) writes byte for byte the line
    `write` writes for the same fields, hostile request ids and a missing one included."""
    times = [1_764_547_200.25 + i for i in range(2 * (len(FORGED) + 3))]
    spliced, plain = io.BytesIO(), io.BytesIO()
    fast, slow = DecisionLog(spliced, clock=iter(times).__next__), DecisionLog(plain, clock=iter(times).__next__)
    for request_id in (None, "req-1", *FORGED, None):
        for realm, sub in (("tenant-a", "u1"), ("tenant-a", 'u"2')):
            fast.write_allow(realm, sub, "user", "user", request_id)
            slow.write(
                {
                    "result": "allow",
                    "realm": realm,
                    "sub": sub,
                    "role": "user",
                    "kind": "user",
                    "request_id": request_id,
                }
            )
    fast.flush()
    slow.flush()
    assert spliced.getvalue() == plain.getvalue()
    assert len(spliced.getvalue().splitlines()) == 2 * (len(FORGED) + 3)


def test_write_allow_memo_is_bounded_and_off_when_disabled() -> None:
    """Distinct users past the bound clear the memo; a disabled log writes and keeps nothing."""
    log = DecisionLog(io.BytesIO(), clock=lambda: 1_764_547_200.0)
    for n in range(decisionlog._MAX_ALLOWED + 5):
        log.write_allow("tenant-a", f"user-{n}", "user", "user", None)
    assert 0 < len(log._allowed) <= decisionlog._MAX_ALLOWED
    off = DecisionLog(io.BytesIO(), enabled=False)
    off.write_allow("tenant-a", "u", "user", "user", None)
    off.flush()
    assert not off._allowed
