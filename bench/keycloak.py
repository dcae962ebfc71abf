"""Serve the fake Keycloak for the benchmark: the realm of bench/.data/meta.json with the persisted key.

Usage: .venv/bin/python bench/keycloak.py [--port 18090]       (run.sh pins it to the wrk core)

Besides Keycloak's endpoints (``/realms/<realm>/protocol/openid-connect/certs`` ...), this process
answers two benchmark-only paths, from a small ASGI wrapper around the fake's app:

  GET /__stats                        {"jwks_fetches": {realm: n}, "requests": n}
  GET /__stats/jwks_fetches/<realm>   n (plain text): certs requests received for that realm

Stops cleanly on SIGTERM / SIGINT. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from webhook.testing.keycloak import FakeKeycloak

DATA = Path(__file__).resolve().parent / ".data"
STATS = "/__stats"


class StatsApp:
    """ASGI wrapper: answers /__stats from the fake's counters, passes everything else through."""

    def __init__(self, app: Any, fake: FakeKeycloak) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(STATS):
            await self.app(scope, receive, send)
            return
        rest = path[len(STATS) :]
        if rest in ("", "/"):
            body = json.dumps({"jwks_fetches": dict(self.fake.jwks_fetches), "requests": self.fake.total_requests})
            ctype, status = b"application/json", 200
        elif rest.startswith("/jwks_fetches/"):
            body = str(self.fake.jwks_fetches[rest[len("/jwks_fetches/") :]])
            ctype, status = b"text/plain", 200
        else:
            body, ctype, status = "not found", b"text/plain", 404
        data = body.encode()
        headers = [(b"content-type", ctype), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=18090)
    a = ap.parse_args()
    meta = json.loads((DATA / "meta.json").read_text())
    fake = FakeKeycloak(issuer_base=meta["issuer_base"])
    fake.add_realm(meta["realm"], signing_key_pem=(DATA / "signing-key.pem").read_bytes())
    if fake.realm(meta["realm"]).active_kid != meta["kid"]:
        sys.exit("keycloak.py: the persisted key does not match meta.json's kid; run prepare.py --force")
    fake.app = StatsApp(fake.app, fake)  # serve_in_thread serves `fake.app`

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with fake.serve_in_thread(host="127.0.0.1", port=a.port) as running:
        print(f"fake keycloak on {running.url}: realm {meta['realm']} kid {meta['kid']}", flush=True)
        while not stop.wait(0.5):
            pass
    print("fake keycloak stopped", flush=True)


if __name__ == "__main__":
    main()
