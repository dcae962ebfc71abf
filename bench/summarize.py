"""Markdown tables from a bench/run.sh raw.tsv: medians over rounds, ratios to bare in the same round.

Usage: .venv/bin/python bench/summarize.py bench/results/<stamp>/raw.tsv [--duration 10] [--min-refetch 10]
                                           [--workers-compare]
       .venv/bin/python bench/summarize.py --side bench/results/<stamp>/side.tsv [--ticks 100]

ratio to bare = median over rounds of (ours req/s / bare req/s), both measured in the same round for
the same scenario and worker count; "p99 vs bare" likewise with p99 latencies.

--side (run.sh --side-by-side): bare and ours were loaded at the same time on the same core, so the
machine's speed at that moment is the same for both; cost ratio = (ours requests per CPU-second) /
(bare requests per CPU-second), median over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

EXPECT_ALL_NON2XX = {"bad", "bad_pg", "unknown_kid"}
# issue 14 targets (warm_rev: issue 15's): minimum ratio to bare; p99 at most this many times bare's
TARGET_RATIO = {"warm": 1.00, "cold": 0.45, "bad": 0.40, "bad_pg": 0.40, "warm_rev": 1.00}
TARGET_P99 = {"warm": 2.0, "cold": 3.0}
# scenario with revocations held -> the same requests without (the revocation check's cost, same rounds)
WITH_REVOCATIONS = {"warm_rev": "warm", "cold_rev": "cold"}
AUDIT_DB = {"bad": "SQLite", "bad_pg": "PostgreSQL"}
ORDER = ["warm", "warm_rev", "cold", "cold_rev", "mixed", "bad", "bad_pg", "unknown_kid", "post"]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt_int(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def fmt_ms(x: float) -> str:
    return "-" if math.isnan(x) else (f"{x:.2f}" if x < 100 else f"{x:,.0f}")


def metrics(path: Path) -> dict[str, float]:
    """name{labels} -> value from a /metrics snapshot saved by run.sh (empty if absent)."""
    out: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
    return out


def revocation_cost(rows: dict[tuple[str, int, str], list[dict[str, Any]]], configs: list[tuple[str, int]]) -> None:
    """Ours with revocations held vs ours without, per round (both scenarios in the same run)."""
    lines = []
    for scen, workers in configs:
        plain = WITH_REVOCATIONS.get(scen)
        if plain is None:
            continue
        without = {r["round"]: r for r in rows.get((plain, workers, "ours"), [])}
        per_round = [
            (r["round"], r["rps"] / without[r["round"]]["rps"])
            for r in rows.get((scen, workers, "ours"), [])
            if r["round"] in without and without[r["round"]]["rps"]
        ]
        if per_round:
            rounds = ", ".join(f"r{n} {x:.1%}" for n, x in sorted(per_round))
            lines.append(f"| {scen} vs {plain} | {med([x for _, x in per_round]):.1%} | {rounds} |")
    if lines:
        print()
        print("Revocation check (ours with the revocations held ÷ ours without, req/s, same round):")
        print()
        print("| scenarios | median | per round |")
        print("|---|---|---|")
        print("\n".join(lines))


def side_table(path: Path, ticks: int) -> None:
    """The side-by-side table: cost ratios per scenario, medians over rounds."""
    by_scenario: dict[str, list[dict[str, float]]] = defaultdict(list)
    codes: set[str] = set()
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            bare_cpu_s, ours_cpu_s = int(r["bare_ticks"]) / ticks, int(r["ours_ticks"]) / ticks
            if bare_cpu_s <= 0 or ours_cpu_s <= 0:
                continue
            bare, ours = int(r["bare_requests"]) / bare_cpu_s, int(r["ours_requests"]) / ours_cpu_s
            by_scenario[r["scenario"]].append(
                {
                    "round": int(r["round"]),
                    "bare": bare,
                    "ours": ours,
                    "ratio": ours / bare,
                    "share": ours_cpu_s / (bare_cpu_s + ours_cpu_s),
                }
            )
            codes.add(r["code"])
    print("Side by side (bare and ours loaded at the same time on the same core; requests per CPU-second):")
    print()
    print(
        "| scenario | cost ratio ours ÷ bare (median) | per round | bare req per CPU-s | ours req per CPU-s "
        "| ours' CPU share | target |"
    )
    print("|---|---|---|---|---|---|---|")
    for scen in sorted(by_scenario, key=lambda s: ORDER.index(s) if s in ORDER else 99):
        rs = sorted(by_scenario[scen], key=lambda r: r["round"])
        ratio = med([r["ratio"] for r in rs])
        target = TARGET_RATIO.get(scen)
        verdict = "-" if target is None else f"≥{target:.0%}: {'met' if ratio >= target else '**missed**'}"
        rounds = ", ".join(f"r{r['round']} {r['ratio']:.1%}" for r in rs)
        print(
            f"| {scen} | {ratio:.1%} | {rounds} | "
            f"{fmt_int(med([r['bare'] for r in rs]))} | {fmt_int(med([r['ours'] for r in rs]))} | "
            f"{med([r['share'] for r in rs]):.0%} | {verdict} |"
        )
    if codes:
        print()
        print(f"Service code version(s) measured: {', '.join(sorted(codes))}.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw", nargs="?")
    ap.add_argument("--side", type=Path, help="a side.tsv of run.sh --side-by-side")
    ap.add_argument("--ticks", type=int, default=100, help="clock ticks per second (getconf CLK_TCK)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    ap.add_argument("--min-refetch", type=float, default=10.0, help="JWKS_MIN_REFETCH_SECONDS of the service")
    ap.add_argument("--workers-compare", action="store_true")
    a = ap.parse_args()
    if a.side is not None:
        side_table(a.side, a.ticks)
        return
    if a.raw is None:
        ap.error("give raw.tsv or --side side.tsv")

    rows: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    with open(a.raw) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_pct"):
                r[k] = float(r[k])
            for k in (
                "round",
                "workers",
                "requests",
                "non2xx",
                "errors",
                "wraps",
                "streamed",
                "rss_kb",
                "jwks_fetches",
                "cache_hits",
                "cache_misses",
                "log_lines",
            ):
                r[k] = int(float(r[k]))
            rows[(r["scenario"], r["workers"], r["target"])].append(r)

    configs = sorted({(s, w) for (s, w, _) in rows}, key=lambda c: (ORDER.index(c[0]) if c[0] in ORDER else 99, c[1]))
    label = (
        (lambda s, w: f"{s} (workers {w})")
        if a.workers_compare or len({w for _, w in configs}) > 1
        else (lambda s, w: s)
    )

    print(
        "Our service (medians over rounds; ratios are medians of per-round ratios to bare measured in the same round):"
    )
    print()
    print(
        "| scenario | req/s median (min–max) | p50 ms | p99 ms | ratio to bare | per CPU-second | p99 vs bare p99 "
        "| non-2xx | RSS MB | notes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary: dict[tuple[str, int], dict[str, float]] = {}
    for scen, workers in configs:
        ours = rows.get((scen, workers, "ours"), [])
        bare = {r["round"]: r for r in rows.get((scen, workers, "bare"), [])}
        if not ours:
            continue
        rps = [r["rps"] for r in ours]
        ratios = [r["rps"] / bare[r["round"]]["rps"] for r in ours if r["round"] in bare and bare[r["round"]]["rps"]]
        # requests per second of server CPU, ours / bare: what the ratio would be if both had a whole core
        # (other processes on the core take CPU from both; this normalises that away, not the p99)
        per_cpu = [
            (r["rps"] / r["cpu_pct"]) / (bare[r["round"]]["rps"] / bare[r["round"]]["cpu_pct"])
            for r in ours
            if r["round"] in bare and r["cpu_pct"] > 0 and bare[r["round"]]["cpu_pct"] > 0 and bare[r["round"]]["rps"]
        ]
        p99r = [
            r["p99_ms"] / bare[r["round"]]["p99_ms"] for r in ours if r["round"] in bare and bare[r["round"]]["p99_ms"]
        ]
        ratio, p99ratio = med(ratios), med(p99r)
        summary[(scen, workers)] = {"rps": med(rps), "ratio": ratio, "bare": med([b["rps"] for b in bare.values()])}
        non2xx, total = sum(r["non2xx"] for r in ours), sum(r["requests"] for r in ours)
        notes: list[str] = []
        if scen in EXPECT_ALL_NON2XX:
            nz = f"{non2xx:,} of {total:,}" + ("" if non2xx == total else " **UNEXPECTED: some 2xx**")
        else:
            nz = f"{non2xx:,}" + ("" if non2xx == 0 else f" of {total:,} **UNEXPECTED**")
        errors = sum(r["errors"] for r in ours)
        if errors:
            notes.append(f"**{errors:,} socket errors/timeouts**")
        target = TARGET_RATIO.get(scen)
        if target is not None and not math.isnan(ratio):
            notes.append(f"target ≥{target:.0%}: {'met' if ratio >= target else '**missed**'}")
        p99_target = TARGET_P99.get(scen)
        if p99_target is not None and not math.isnan(p99ratio):
            notes.append(f"p99 ≤{p99_target:g}× bare: {'met' if p99ratio <= p99_target else '**missed**'}")
        if scen in AUDIT_DB:
            trend = []
            for r in sorted(ours, key=lambda r: r["round"]):
                b = bare.get(r["round"])
                rows_at = str(r.get("audit_rows") or "-")
                if b and b["rps"] and rows_at.isdigit():
                    trend.append(f"r{r['round']} {int(rows_at):,} rows → {r['rps'] / b['rps']:.1%}")
            if trend:
                notes.append(f"{AUDIT_DB[scen]} audit table at run start: " + ", ".join(trend))
        if scen == "unknown_kid":
            allowed = math.floor(a.duration / a.min_refetch) + 1
            fetches = [r["jwks_fetches"] for r in ours]
            ok = all(x <= allowed for x in fetches)
            notes.append(
                f"JWKS fetches per run {fetches} (allowed ≤{allowed} in {a.duration:g} s at one per "
                f"{a.min_refetch:g} s): {'met' if ok else '**missed**'}"
            )
        elif any(r["jwks_fetches"] for r in ours):
            notes.append(f"JWKS fetches per run {[r['jwks_fetches'] for r in ours]}")
        looks = [(r["cache_hits"], r["cache_misses"]) for r in ours]
        if any(h + m for h, m in looks):
            hit = sum(h for h, _ in looks) / max(1, sum(h + m for h, m in looks))
            notes.append(f"token-cache hit {hit:.1%}")
        wraps = sum(r["wraps"] for r in ours)
        if wraps:
            notes.append(f"**cold file wrapped {wraps}× (tokens repeated): mint more with prepare.py --cold N**")
        notes.append(f"cpu {med([r['cpu_pct'] for r in ours]):.0f}%")
        notes.append(f"bare {fmt_int(summary[(scen, workers)]['bare'])} req/s")
        reasons: Counter[str] = Counter()
        for r in ours:
            for part in r["reasons"].split(","):
                name, _, count = part.partition(":")
                if count.isdigit():
                    reasons[name] += int(count)
        if reasons and (scen in EXPECT_ALL_NON2XX or non2xx):
            notes.append("reasons: " + ", ".join(f"{k} {v:,}" for k, v in reasons.most_common(3)))
        written = batches = batch_s = 0.0
        for r in ours:
            m = metrics(Path(a.raw).parent / f"metrics-ours-{scen}-w{workers}-r{r['round']}.txt")
            written += m.get("webhook_audit_written_total", 0)
            batches += m.get("webhook_audit_batch_seconds_count", 0)
            batch_s += m.get("webhook_audit_batch_seconds_sum", 0)
        if written > len(ours) * 2 and batches:
            notes.append(
                f"audit: {written / len(ours):,.0f} rows per run in {batches / len(ours):,.0f} batches, "
                f"{1000 * batch_s / batches:,.0f} ms per batch ({100 * batch_s / len(ours) / a.duration:.0f}% "
                f"of the run's wall time, startup included)"
            )
        starved = [f"r{r['round']} ours {r['cpu_pct']}%" for r in ours if r["cpu_pct"] < 85] + [
            f"r{b['round']} bare {b['cpu_pct']}%" for b in bare.values() if b["cpu_pct"] < 85
        ]
        if workers > 1:
            starved = []  # several cores, one shared with wrk: no simple saturation level
            notes.append("per-process token caches (each worker warms its own)")
            for who, rs in (("ours", ours), ("bare", list(bare.values()))):
                split, uneven = [], False
                for r in rs:
                    parts = [int(x) for x in str(r.get("worker_cpu", "-")).split("/") if x.isdigit()]
                    busy = [x for x in parts if x >= 3]  # helper processes (resource tracker) idle at ~0
                    if busy:
                        split.append(f"r{r['round']} {'/'.join(map(str, busy))}")
                        uneven = uneven or (len(busy) < len(parts) - 1 or max(busy) > 2 * min(busy))
                if split:
                    notes.append(
                        f"{who} cpu % per worker: {', '.join(split)}"
                        + (" (**uneven**: one worker accepted most keep-alive connections)" if uneven else "")
                    )
        if starved:
            notes.append("**disturbed** (server got < 85% of its core: other processes on it): " + ", ".join(starved))
        codes = sorted({r.get("code", "-") for r in ours} - {"-", ""})
        if len(codes) > 1:
            notes.append(f"**service code changed between rounds** ({len(codes)} versions: {', '.join(codes)})")
        print(
            f"| {label(scen, workers)} | {fmt_int(med(rps))} ({fmt_int(min(rps))}–{fmt_int(max(rps))}) | "
            f"{fmt_ms(med([r['p50_ms'] for r in ours]))} | {fmt_ms(med([r['p99_ms'] for r in ours]))} | "
            f"{'-' if math.isnan(ratio) else f'{ratio:.1%}'} | "
            f"{'-' if not per_cpu else f'{med(per_cpu):.1%}'} | "
            f"{'-' if math.isnan(p99ratio) else f'{p99ratio:.2f}×'} | {nz} | "
            f"{med([r['rss_kb'] for r in ours]) / 1024:.0f} | {'; '.join(notes)} |"
        )

    print()
    print("Bare Starlette in the same rounds (fixed JSON, same uvicorn flags, same core, same requests):")
    print()
    print("| scenario | req/s median (min–max) | p50 ms | p99 ms | non-2xx | RSS MB | cpu |")
    print("|---|---|---|---|---|---|---|")
    for scen, workers in configs:
        bare_rows = rows.get((scen, workers, "bare"), [])
        if not bare_rows:
            continue
        rps = [r["rps"] for r in bare_rows]
        bad = sum(r["non2xx"] + r["errors"] for r in bare_rows)
        print(
            f"| {label(scen, workers)} | {fmt_int(med(rps))} ({fmt_int(min(rps))}–{fmt_int(max(rps))}) | "
            f"{fmt_ms(med([r['p50_ms'] for r in bare_rows]))} | {fmt_ms(med([r['p99_ms'] for r in bare_rows]))} | "
            f"{bad:,} | {med([r['rss_kb'] for r in bare_rows]) / 1024:.0f} | "
            f"{med([r['cpu_pct'] for r in bare_rows]):.0f}% |"
        )
    revocation_cost(rows, configs)
    rounds = sorted({r["round"] for rs in rows.values() for r in rs})
    discarded = Path(a.raw).parent / "raw-discarded.tsv"
    redone = max(0, len(discarded.read_text().splitlines()) - 1) // 2 if discarded.exists() else 0
    codes = sorted({r.get("code", "-") for rs in rows.values() for r in rs} - {"-", "", None})
    print()
    if redone:
        print(f"{redone} disturbed bare/ours pair(s) were run again (rows in raw-discarded.tsv).")
    if codes:
        print(f"Service code version(s) measured (sha256 of webhook/**/*.py at each start): {', '.join(codes)}.")
    print(
        f"{len(rounds)} round(s) per row; RSS at the end of the run (whole process tree); cpu = server CPU time / "
        f"run time (100% = one core busy)."
    )

    if a.workers_compare:
        one, two = summary.get(("warm", 1)), summary.get(("warm", 2))
        if one and two:
            print()
            print(
                f"workers 2 vs 1 (warm): ours {two['rps'] / one['rps']:.2f}× ({fmt_int(one['rps'])} → "
                f"{fmt_int(two['rps'])} req/s), bare {two['bare'] / one['bare']:.2f}× "
                f"({fmt_int(one['bare'])} → {fmt_int(two['bare'])} req/s). With 2 workers the servers run on "
                "both cores and share core 0 with wrk: the load generator competes with the server."
            )


if __name__ == "__main__":
    main()
