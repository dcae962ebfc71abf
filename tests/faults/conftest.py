"""Collects the figures of the fault scenarios into one table at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.support import FIGURES

TABLE = Path(__file__).resolve().parents[2] / "var" / "fault-figures.md"


def render() -> str:
    head = (
        "| scenario | requests | wrong | 5xx | JWKS fetches | audit written | audit dropped | recovery | "
        "p50 ms | p99 ms | max ms | s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for f in FIGURES:
        recovery = "-" if f.recovery_s is None else f"{f.recovery_s * 1000:.0f} ms"
        rows.append(
            f"| {f.scenario} | {f.requests} | {f.wrong} | {f.errors_5xx} | {f.fetches} | {f.audit_written} | "
            f"{f.audit_dropped} | {recovery} | {f.p50_ms:.1f} | {f.p99_ms:.1f} | {f.max_ms:.0f} | {f.seconds:.1f} |"
        )
    return head + "\n".join(rows) + "\n"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    table = render()
    terminalreporter.write_sep("=", "fault figures")
    terminalreporter.write(table)
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text(table)
