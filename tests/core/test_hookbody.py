"""HeadersScanner: the `headers` member of a POST hook body of any size, however it is chunked, with
bounded memory; anything that is not Hasura's shape is BadHookBody."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.hookbody import HeadersScanner
from webhook.core.hookrequest import BadHookBody

LIMIT = 4096
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
headers_objects = st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=6)


def scan(body: bytes, chunk: int, limit: int = LIMIT) -> Any:
    scanner = HeadersScanner(limit)
    for start in range(0, len(body), chunk):
        scanner.feed(body[start : start + chunk])
    return orjson.loads(scanner.finish())


@settings(max_examples=300, deadline=None)
@given(
    headers=headers_objects,
    request=json_values,
    chunk=st.integers(1, 64),
    style=st.tuples(st.booleans(), st.sampled_from([None, 1]), st.booleans()),
)
def test_headers_are_found_whatever_the_body_and_chunking(
    headers: dict[str, str], request: Any, chunk: int, style: tuple[bool, int | None, bool]
) -> None:
    """For any Hasura-shaped body (any request, escapes, whitespace, member order), the scanner's
    `headers` equals what a JSON parser reads, for every chunk size."""
    ascii_only, indent, headers_first = style
    members = {"headers": headers, "request": request} if headers_first else {"request": request, "headers": headers}
    body = json.dumps(members, ensure_ascii=ascii_only, indent=indent).encode("utf-8")
    assert scan(body, chunk) == headers


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'"headers"',
        b"{",
        b'{"headers": {}',
        b'{"headers": {}} x',
        b'{"request": {}}',
        b"{}",
        b'{"headers": {}, "headers": {}}',
        b'{"headers": {}, "head\\u0065rs": {}}',
        b'{"headers" {}}',
        b'{"headers": {},}',
        b'{"headers": , "request": 1}',
        b'{"request": "unterminated}',
        b'{"request": [1, 2}',
    ],
)
def test_bodies_not_of_hasuras_shape_are_refused(body: bytes) -> None:
    """Not an object, truncated, trailing data, no headers, headers twice (however spelled), bad syntax."""
    with pytest.raises(BadHookBody):
        scan(body, 3)


def test_escaped_member_name_is_headers() -> None:
    """`"head\\u0065rs"` names the headers member, as for a JSON parser."""
    assert scan(b'{"request": null, "head\\u0065rs": {"a": "b"}}', 5) == {"a": "b"}


def test_headers_past_the_limit_are_refused() -> None:
    """A headers member larger than the limit is refused rather than held."""
    body = orjson.dumps({"headers": {"Authorization": "Bearer " + "a" * LIMIT}})
    with pytest.raises(BadHookBody, match="larger than"):
        scan(body, 1000)


def test_a_64_mb_request_is_skipped_with_bounded_memory() -> None:
    """64 MB of GraphQL request (a big string and many small values) beside the headers: the scanner
    holds the current chunk and the headers only."""
    scanner = HeadersScanner(LIMIT)
    chunk = b"x" * 65536
    tracemalloc.start()
    try:
        scanner.feed(b'{"headers": {"Authorization": "Bearer t"}, "request": {"query": "')
        for _ in range(512):  # 32 MB of one string
            scanner.feed(chunk)
        scanner.feed(b'", "variables": {"list": [')
        values = b"1, " * 21845
        for _ in range(512):  # 32 MB of small values
            scanner.feed(values)
        scanner.feed(b"1]}}}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert orjson.loads(scanner.finish()) == {"Authorization": "Bearer t"}
    assert peak < 1 << 20
