"""The OpenAPI description of the HTTP surface: `webhook/observability/openapi.yaml` (package data), served as JSON.

Rules of this module:
- The YAML file is the source; it is parsed once, on first use, with `yaml.safe_load`, and served
  as JSON bytes with `info.version` set to the running version.
- Nothing here depends on a request: `/openapi.json` is a constant of the installed package.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import orjson
import yaml

from webhook import __version__


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a dict (a fresh copy)."""
    return dict(orjson.loads(openapi_json()))


@functools.cache
def openapi_json() -> bytes:
    """The OpenAPI document as JSON bytes (parsed once)."""
    text = resources.files("webhook.observability").joinpath("openapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    document["info"]["version"] = __version__
    return orjson.dumps(document)
