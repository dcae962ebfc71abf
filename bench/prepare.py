"""Mint the benchmark's token sets once into bench/.data/ and reuse them on later runs.

Usage: .venv/bin/python bench/prepare.py [--cold N] [--warm N] [--bad N] [--unknown-kid N] [--force]

All tokens belong to ONE tenant realm `tenant-<uuid>` whose signing key is persisted in
.data/signing-key.pem (so they stay valid across runs; `exp` is 10 years ahead) and served by
bench/keycloak.py. Files (one token per line):

  warm.txt         distinct valid tokens, the pool of the `warm`/`post`/`mixed` scenarios
  cold.txt         distinct valid tokens, each used at most once per server start (`cold`, `mixed`)
  bad.txt          distinct invalid signatures: header kid = the realm's kid, payload shaped like a real
                   token with its own jti, signature a random integer below the realm key's modulus (so the
                   service does the whole RSA verify before rejecting, as for a forged signature)
  unknown_kid.txt  validly signed, but the header kid is random and unknown to the realm
  meta.json        realm, issuer, tenant id, kid, counts

A file that already holds enough tokens is kept; a short cold.txt is topped up (same key).
Minting runs on every core (multiprocessing), each worker holding the loaded key object.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing as mp
import os
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from webhook.testing.keycloak import FakeKeycloak

DATA = Path(__file__).resolve().parent / ".data"
KEY_FILE = "signing-key.pem"
TEN_YEARS = 10 * 365 * 86400
CHUNK = 1000

_kc: FakeKeycloak | None = None
_realm = ""
_foreign: RSAKey | None = None
_modulus = 0


def _init_worker(issuer_base: str, realm: str, pem: bytes, foreign_pem: bytes) -> None:
    global _kc, _realm, _foreign, _modulus
    _kc = FakeKeycloak(issuer_base=issuer_base)
    _kc.add_realm(realm, signing_key_pem=pem, with_enc_key=False)
    _realm = realm
    _foreign = RSAKey.import_key(foreign_pem)
    _modulus = RSAKey.import_key(pem).public_key.public_numbers().n


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _bad_tokens(count: int) -> list[str]:
    """`count` distinct tokens with the realm's kid and a random signature below its modulus (no signing)."""
    assert _kc is not None
    head, body, _ = _kc.mint(_realm, lifetime=TEN_YEARS, signing_key=_foreign).split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    size = (_modulus.bit_length() + 7) // 8
    out = []
    for _ in range(count):
        payload["jti"] = str(uuid.uuid4())
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signature = (secrets.randbelow(_modulus - 1) + 1).to_bytes(size, "big")
        out.append(f"{head}.{body}.{_b64(signature)}")
    return out


def _mint_chunk(job: tuple[str, int]) -> list[str]:
    kind, count = job
    assert _kc is not None
    if kind == "bad":
        return _bad_tokens(count)
    out = []
    for _ in range(count):
        if kind == "valid":
            out.append(_kc.mint(_realm, lifetime=TEN_YEARS))
        elif kind == "unknown_kid":
            kid = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
            out.append(_kc.mint(_realm, lifetime=TEN_YEARS, header={"kid": kid}))
        else:
            raise ValueError(kind)
    return out


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _mint_into(pool: Any, path: Path, kind: str, want: int, append: bool) -> None:
    have = _count_lines(path) if append else 0
    missing = want - have
    if missing <= 0:
        print(f"  {path.name}: {have:,} tokens present (need {want:,}), kept")
        return
    jobs = [(kind, min(CHUNK, missing - i)) for i in range(0, missing, CHUNK)]
    started = time.monotonic()
    done = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        if append and have:
            with path.open() as old:
                for line in old:
                    if line.strip():
                        out.write(line if line.endswith("\n") else line + "\n")
        for tokens in pool.imap(_mint_chunk, jobs):
            out.write("\n".join(tokens) + "\n")
            done += len(tokens)
            if done == missing or done % 10000 < CHUNK:
                rate = done / max(1e-9, time.monotonic() - started)
                print(f"  {path.name}: {have + done:,}/{want:,} ({rate:,.0f}/s)", flush=True)
    tmp.replace(path)


def _assert_distinct(path: Path) -> None:
    """Exit if a token appears twice in `path`: the cold and bad scenarios rely on never repeating one."""
    seen: set[bytes] = set()
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            digest = hashlib.sha256(line.strip()).digest()
            if digest in seen:
                sys.exit(f"prepare: {path.name} line {number} repeats an earlier token; run prepare.py --force")
            seen.add(digest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--cold", type=int, default=int(os.environ.get("COLD_TOKENS", "200000")))
    ap.add_argument("--bad", type=int, default=int(os.environ.get("BAD_TOKENS", "300000")))
    ap.add_argument("--unknown-kid", type=int, default=5000)
    ap.add_argument("--issuer-base", default="http://127.0.0.1:18090", help="public issuer base put in iss")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--force", action="store_true", help="new key, new realm, re-mint everything")
    a = ap.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    key_path, meta_path = DATA / KEY_FILE, DATA / "meta.json"
    meta: dict[str, Any] = {}
    if not a.force and key_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("issuer_base") != a.issuer_base.rstrip("/"):
            sys.exit(f"prepare: {meta_path} was minted for issuer {meta.get('issuer_base')!r}; use --force")
    fresh = not meta
    if fresh:
        for name in ("warm.txt", "cold.txt", "bad.txt", "unknown_kid.txt"):
            (DATA / name).unlink(missing_ok=True)
        kc = FakeKeycloak(issuer_base=a.issuer_base.rstrip("/"))
        tenant = str(uuid.uuid4())
        realm = kc.add_realm(f"tenant-{tenant}", with_enc_key=False)
        key_path.write_bytes(b"")
        key_path.chmod(0o600)
        key_path.write_bytes(realm.signing_key_pem())
        foreign = RSAKey.generate_key(2048, private=True)
        (DATA / "foreign-key.pem").write_bytes(foreign.as_pem(private=True))
        meta = {
            "realm": realm.name,
            "tenant_id": tenant,
            "issuer_base": a.issuer_base.rstrip("/"),
            "issuer": realm.issuer,
            "kid": realm.active_kid,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        print(f"prepare: new key and realm {realm.name} in {DATA}")
    else:
        print(f"prepare: reusing key and realm {meta['realm']} from {DATA}")

    pem = key_path.read_bytes()
    foreign_pem = (DATA / "foreign-key.pem").read_bytes()
    wants = {
        "warm.txt": ("valid", a.warm),
        "cold.txt": ("valid", a.cold),
        "bad.txt": ("bad", a.bad),
        "unknown_kid.txt": ("unknown_kid", a.unknown_kid),
    }
    ctx = mp.get_context("fork")
    with ctx.Pool(a.procs, _init_worker, (meta["issuer_base"], meta["realm"], pem, foreign_pem)) as pool:
        for name, (kind, want) in wants.items():
            path = DATA / name
            # cold.txt can be topped up; the others are rewritten when their size differs
            have = _count_lines(path)
            if name == "cold.txt" or have == want:
                _mint_into(pool, path, kind, want, append=True)
            else:
                _mint_into(pool, path, kind, want, append=False)
    checked = meta.get("distinct_checked", {})
    for name in ("cold.txt", "bad.txt"):
        stat = (DATA / name).stat()
        if checked.get(name) != [stat.st_size, stat.st_mtime_ns]:  # a file already checked is not read again
            _assert_distinct(DATA / name)
            checked[name] = [stat.st_size, stat.st_mtime_ns]
    meta["distinct_checked"] = checked
    meta["counts"] = {name: _count_lines(DATA / name) for name in wants}
    with (DATA / "warm.txt").open() as f:
        meta["token_bytes"] = len(f.readline().strip())
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"prepare: ok: {meta['counts']}, {meta['token_bytes']} bytes per token")


if __name__ == "__main__":
    main()
