"""RSS of the service after many distinct tokens: is memory bounded (verified-token cache, negative cache,
audit queue, logs)?

Usage: .venv/bin/python bench/memory.py [--valid 400000] [--bad 600000] [--conns 16] [--sample-every 50000]
                                        [--max-seconds 1800] [--log FILE] [--service-env "VAR=value ..."]

Starts the fake Keycloak (bench/keycloak.py) and the service (`webhook serve`, same environment as
run.sh, pinned to --service-cpu), then pushes, over --conns keep-alive connections of a small raw
asyncio HTTP/1.1 client pinned to --client-cpu:
  1. --valid distinct VALID tokens from bench/.data/cold.txt (each seen once: fills the verified-token
     cache; run prepare.py --cold N first if you want more than cold.txt holds),
  2. --bad distinct tokens with random signatures (header and payload of a real token, 256 random
     bytes of signature: each is a new `bad_signature`, exercising the rejection path, the negative
     cache and the audit queue),
sampling the service's VmRSS every --sample-every requests, and prints RSS before / after / peak, plus
the RSS at 0, 100,000 and all (by default 1,000,000) distinct tokens and the RSS per cached verified
token (RSS growth over the first 100,000 valid tokens, the TOKEN_CACHE_SIZE default, / 100,000).
This is not a throughput test. Logs go to /dev/null unless --log is given (a million lines is ~0.8 GB);
the audit database is bench/.data/audit-memory.sqlite3, deleted at start and at the end (--keep-db).
Only the processes started here are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / ".data"
VENV = ROOT / ".venv" / "bin"
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB of one process."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"refusing non-loopback URL {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def cache_metrics(base: str) -> dict[str, float]:
    status, body = get(f"{base}/metrics")
    out: dict[str, float] = {}
    if status != 200:
        return out
    for line in body.decode().splitlines():
        if line.startswith("webhook_token_cache_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_for(url: str, seconds: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if get(url, 1.0)[0] == 200:
            return True
        time.sleep(0.1)
    return False


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def tokens(valid: int, bad: int, run: Run) -> Iterator[tuple[str, bytes]]:
    taken = 0
    with (DATA / "cold.txt").open("rb") as f:
        for raw in f:
            if taken >= valid:
                break
            token = raw.strip()
            if token:
                taken += 1
                yield "valid", token
    if taken < valid:
        print(
            f"memory: cold.txt holds only {taken:,} valid tokens (asked {valid:,}); run prepare.py --cold N for more",
            flush=True,
        )
    with (DATA / "warm.txt").open("rb") as f:
        head, payload, _ = f.readline().strip().split(b".")
    prefix = head + b"." + payload + b"."
    run.sample("->bad")
    for _ in range(bad):
        yield "bad", prefix + base64.urlsafe_b64encode(os.urandom(256)).rstrip(b"=")


class Run:
    def __init__(self, pid: int, base: str, port: int, sample_every: int, deadline: float) -> None:
        self.pid, self.base, self.port = pid, base, port
        self.sample_every, self.deadline = sample_every, deadline
        self.done = 0
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.samples: list[tuple[int, str, float, int, int]] = []
        self.started = time.monotonic()
        self.timed_out = False

    def sample(self, label: str) -> None:
        rss, hwm = rss_kb(self.pid)
        self.samples.append((self.done, label, time.monotonic() - self.started, rss, hwm))
        m = cache_metrics(self.base)
        entries = ", ".join(f"{k.split('{')[1].rstrip('}')}={v:,.0f}" for k, v in m.items() if "entries" in k)
        elapsed = time.monotonic() - self.started
        print(
            f"  {self.done:>10,} requests  {label:<6} {elapsed:7.1f} s  {self.done / max(elapsed, 1e-9):7,.0f} req/s  "
            f"RSS {rss / 1024:7.1f} MB  peak {hwm / 1024:7.1f} MB  {entries}",
            flush=True,
        )

    async def worker(self, source: Iterator[tuple[str, bytes]]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for kind, token in source:
                if time.monotonic() > self.deadline:
                    self.timed_out = True
                    return
                writer.write(
                    b"GET /hasura/auth HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench-memory\r\n"
                    b"Authorization: Bearer " + token + b"\r\n\r\n"
                )
                head = await reader.readuntil(b"\r\n\r\n")
                m = CONTENT_LENGTH.search(head)
                if m:
                    await reader.readexactly(int(m[1]))
                self.statuses[(kind, int(head[9:12]))] += 1
                self.done += 1
                if self.done % self.sample_every == 0:
                    self.sample(kind)
        finally:
            writer.close()


async def drive(run: Run, source: Iterator[tuple[str, bytes]], conns: int) -> None:
    await asyncio.gather(*(run.worker(source) for _ in range(conns)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--valid", type=int, default=400_000)
    ap.add_argument("--bad", type=int, default=600_000)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--sample-every", type=int, default=50_000)
    ap.add_argument("--max-seconds", type=float, default=1800)
    ap.add_argument("--port", type=int, default=18082)
    ap.add_argument("--kc-port", type=int, default=18092)
    ap.add_argument("--service-cpu", default="1")
    ap.add_argument("--client-cpu", default="0")
    ap.add_argument("--log", default="/dev/null", help="where the service's stdout goes")
    ap.add_argument("--service-env", default="", help='extra "VAR=value ..." for the service')
    ap.add_argument("--keep-db", action="store_true")
    a = ap.parse_args()

    subprocess.run([str(VENV / "python"), str(BENCH / "prepare.py")], check=True, stdout=subprocess.DEVNULL)
    meta = json.loads((DATA / "meta.json").read_text())
    for port in (a.port, a.kc_port):
        if not port_free(port):
            sys.exit(f"memory: 127.0.0.1:{port} is in use; pick another --port/--kc-port")
    os.sched_setaffinity(0, {int(c) for c in a.client_cpu.split(",")})
    db = DATA / "audit-memory.sqlite3"
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    procs: list[subprocess.Popen[bytes]] = []
    log = open(a.log, "wb")  # noqa: SIM115
    try:
        kc = subprocess.Popen(
            ["taskset", "-c", a.client_cpu, str(VENV / "python"), str(BENCH / "keycloak.py"), "--port", str(a.kc_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        procs.append(kc)
        if not wait_for(f"http://127.0.0.1:{a.kc_port}/__stats", 20, kc):
            sys.exit("memory: the fake Keycloak did not start")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "KEYCLOAK_URL": f"http://127.0.0.1:{a.kc_port}",
            "KEYCLOAK_ISSUER_URL": meta["issuer_base"],
            "PREFETCH_REALMS": meta["realm"],
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "json",
            "DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        }
        for word in shlex.split(a.service_env):
            k, _, v = word.partition("=")
            env[k] = v
        svc = subprocess.Popen(
            [
                "taskset",
                "-c",
                a.service_cpu,
                str(VENV / "webhook"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(a.port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(svc)
        base = f"http://127.0.0.1:{a.port}"
        if not wait_for(f"{base}/readyz", 30, svc):
            sys.exit(f"memory: the service did not become ready (log: {a.log})")

        # correctness first, then a pass over the warm pool so "before" includes a normal working set
        warm = [t for t in (DATA / "warm.txt").read_bytes().split(b"\n") if t]
        run = Run(svc.pid, base, a.port, a.sample_every, time.monotonic() + a.max_seconds)
        asyncio.run(drive(run, iter([("warm", t) for t in warm]), min(a.conns, 8)))
        if run.statuses[("warm", 200)] != len(warm):
            sys.exit(f"memory: warm tokens did not all get 200: {dict(run.statuses)}")
        time.sleep(1)
        before, _ = rss_kb(svc.pid)
        print(
            f"memory: service pid {svc.pid}; RSS before: {before / 1024:.1f} MB (after {len(warm):,} warm tokens); "
            f"pushing {a.valid:,} valid + {a.bad:,} bad distinct tokens over {a.conns} connections "
            f"(at most {a.max_seconds:.0f} s)",
            flush=True,
        )
        run.done = 0
        run.statuses.clear()
        run.started = time.monotonic()
        run.deadline = run.started + a.max_seconds
        run.sample("start")
        asyncio.run(drive(run, tokens(a.valid, a.bad, run), a.conns))
        run.sample("end")
        time.sleep(2)  # let the audit writer drain its queue
        after, peak = rss_kb(svc.pid)
        again = Run(svc.pid, base, a.port, 10**9, time.monotonic() + 60)
        asyncio.run(drive(again, iter([("warm", t) for t in warm[:100]]), 4))
        print()
        print(
            f"memory: RSS before {before / 1024:.1f} MB, after {after / 1024:.1f} MB "
            f"(+{(after - before) / 1024:.1f} MB), peak {peak / 1024:.1f} MB, "
            f"after {run.done:,} distinct tokens in {time.monotonic() - run.started:.0f} s"
            + (" (STOPPED at --max-seconds)" if run.timed_out else "")
        )
        print(f"memory: answers {dict(sorted(run.statuses.items()))}; warm tokens afterwards: {dict(again.statuses)}")
        at = {done: rss for done, _, _, rss, _ in run.samples}
        start_rss = run.samples[0][3]
        if 100_000 in at and a.valid >= 100_000:
            per = (at[100_000] - start_rss) * 1024 / 100_000
            print(
                f"memory: RSS at 0 distinct tokens {start_rss / 1024:.1f} MB, at 100,000 {at[100_000] / 1024:.1f} MB "
                f"({per:,.0f} B per cached verified token), at {run.done:,} {after / 1024:.1f} MB "
                f"(peak {peak / 1024:.1f} MB)"
            )
        unexpected = {k: v for k, v in run.statuses.items() if (k[0] == "valid") != (k[1] == 200)}
        if unexpected:
            print(f"memory: UNEXPECTED answers: {unexpected}")
        m = cache_metrics(base)
        if m:
            print("memory: " + ", ".join(f"{k}={v:,.0f}" for k, v in m.items()))
        else:
            print("memory: the service exposes no webhook_token_cache_* metrics")
        _, body = get(f"{base}/metrics")
        for line in body.decode().splitlines():
            if line.startswith(("webhook_audit_dropped_total", "webhook_audit_written_total")):
                print(f"memory: {line}")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        log.close()
        if not a.keep_db:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
