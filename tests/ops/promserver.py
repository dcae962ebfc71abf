"""A real Prometheus for tests: its own directory and loopback port, short scrapes, our rules.

Rules of this module:
- Prometheus (Debian's package, see scripts/ensure-prometheus.sh) runs as a child process with a
  config written into the test's tmp directory; it listens on 127.0.0.1 only and scrapes only the
  targets given (loopback). It is stopped (terminate, then kill) when the context exits.
- The port is picked free just before the start; if another process took it meanwhile Prometheus
  exits at once and is started again on another port (bounded attempts).
- `rules_for_tests` turns the shipped rule files into the ones a test loads: the same expressions with
  every `for:` at 0s and chosen threshold values, so an alert fires within a few scrapes.
- Everything that waits polls a condition with a deadline (no fixed sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.ops.rules import RULES, THRESHOLDS, load_yaml, prometheus

POLL_SECONDS = 0.2
START_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class RunningPrometheus:
    url: str
    client: httpx.AsyncClient
    log: Path

    async def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` member of a successful answer."""
        response = await self.client.get(f"{self.url}/api/v1/{path}", params=params)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (response.status_code, body)
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = await self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.api("alerts"))["alerts"]
        return found

    async def wait_for(
        self, what: str, check: Callable[[], Any], *, deadline: float = 60.0, between: Callable[[], Any] | None = None
    ) -> Any:
        """Poll the coroutine `check()` until it returns something truthy; fail after `deadline` seconds.

        `between()` (a coroutine, optional) runs before each poll: traffic that must keep flowing.
        """
        end = time.monotonic() + deadline
        last: Any = None
        while True:
            if between is not None:
                await between()
            last = await check()
            if last:
                return last
            if time.monotonic() > end:
                raise AssertionError(f"{what}: not seen within {deadline} s (last: {str(last)[:2000]})\n{self.tail()}")
            await asyncio.sleep(POLL_SECONDS)

    async def firing(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        """The firing alerts of this name whose labels include `labels`."""
        return [
            alert
            for alert in await self.alerts()
            if alert["state"] == "firing"
            and alert["labels"].get("alertname") == alertname
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]

    async def wait_firing(self, alertname: str, *, deadline: float = 60.0, **labels: str) -> dict[str, Any]:
        found = await self.wait_for(
            f"alert {alertname} {labels} firing", lambda: self.firing(alertname, **labels), deadline=deadline
        )
        alert: dict[str, Any] = found[0]
        return alert

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "prometheus log:\n" + "\n".join(text.splitlines()[-lines:])


def rules_for_tests(directory: Path, thresholds: Mapping[str, float] | None = None) -> list[Path]:
    """The shipped rules with every `for:` at 0s, and thresholds.yml with `thresholds` overriding."""
    rules = load_yaml(RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    limits = load_yaml(THRESHOLDS)
    overrides = dict(thresholds or {})
    for group in limits["groups"]:
        for rule in group["rules"]:
            name = rule["record"].removeprefix("webhook:threshold:")
            if name in overrides:
                rule["expr"] = f"vector({overrides.pop(name)})"
    assert not overrides, f"no such thresholds: {sorted(overrides)}"
    paths = [directory / "webhook.rules.yml", directory / "thresholds.yml"]
    paths[0].write_text(yaml.safe_dump(rules, sort_keys=False))
    paths[1].write_text(yaml.safe_dump(limits, sort_keys=False))
    return paths


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_config(directory: Path, targets: Sequence[str], rule_files: Sequence[Path], interval: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": "webhook", "static_configs": [{"targets": list(targets)}]}],
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    return config_file


@contextlib.asynccontextmanager
async def run_prometheus(
    directory: Path, targets: Sequence[str], rule_files: Sequence[Path], *, interval: str = "1s"
) -> AsyncIterator[RunningPrometheus]:
    """Prometheus scraping `targets` (host:port, job "webhook") every `interval`, with `rule_files`."""
    config_file = _write_config(directory, targets, rule_files, interval)
    log = directory / "prometheus.log"
    async with httpx.AsyncClient(timeout=10) as client:
        for attempt in range(START_ATTEMPTS):
            port = _free_port()
            with log.open("ab") as out:
                process = await asyncio.create_subprocess_exec(
                    prometheus(),
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )
            running = RunningPrometheus(f"http://127.0.0.1:{port}", client, log)
            try:
                if await _ready(running, process):
                    yield running
                    return
                if attempt == START_ATTEMPTS - 1:
                    raise AssertionError(f"prometheus did not start\n{running.tail()}")
            finally:
                await _stop(process)


async def _ready(running: RunningPrometheus, process: asyncio.subprocess.Process, deadline: float = 30.0) -> bool:
    """True once /-/ready answers 200; False if the process exited (its port was taken)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.returncode is not None:
            return False
        with contextlib.suppress(httpx.TransportError):
            if (await running.client.get(f"{running.url}/-/ready")).status_code == 200:
                return True
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"prometheus not ready within {deadline} s\n{running.tail()}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
            await process.wait()
