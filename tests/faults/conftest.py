"""Collects the figures of the fault scenarios into one table at the end of the run.

The table is printed; it is also written to `$FAULT_FIGURES_FILE` when that is set (never into the
checkout by default: tests leave it as they found it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.support import FIGURES


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
    target = os.environ.get("FAULT_FIGURES_FILE")
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table)
