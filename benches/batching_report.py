#!/usr/bin/env python3
"""The report of scripts/bench-batching.sh: medians over rounds, the spread, and the ratios.

  batching_report.py RESULTS.jsonl --timeout-us N [--mlp-widths W] [--log bench.log]   markdown on stdout

RESULTS.jsonl holds one loadgen JSON line per window, with "round", "side", "loadavg" (the 1-min
load average as the window started) and, for servers that batch, "rows_per_inference". Ratios are
taken within a round (the two sides ran minutes apart at most) and their median is reported with
the smallest and largest, which is how noisy the machine was.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

SIDES = {
    "floor_off": "transport floor: one matmul, batching off",
    "mlp_off": "vinoserve, batching off",
    "mlp_on": "vinoserve, batching on",
    "mlp_triton": "Triton 2.51, dynamic_batching (python backend + OpenVINO)",
    "mlp_raw_b1": "raw OpenVINO, batch 1, 1 thread",
    "mlp_raw_b32": "raw OpenVINO, batch 32, 1 thread",
    "resnet_off": "vinoserve, batching off",
    "resnet_on": "vinoserve, batching on",
}
RATIOS = [
    ("mlp_on", "mlp_off", "MLP: vinoserve batching on ÷ off (target ≥ 2.5)"),
    ("mlp_on", "mlp_triton", "MLP: vinoserve batching on ÷ Triton dynamic_batching"),
    ("mlp_triton", "mlp_off", "MLP: Triton dynamic_batching ÷ vinoserve batching off"),
    ("mlp_on", "mlp_raw_b32", "MLP: vinoserve batching on ÷ raw OpenVINO batch 32"),
    ("mlp_off", "mlp_raw_b1", "MLP: vinoserve batching off ÷ raw OpenVINO batch 1"),
    ("mlp_raw_b32", "mlp_raw_b1", "MLP: raw OpenVINO batch 32 ÷ batch 1"),
    ("resnet_on", "resnet_off", "ResNet-50: vinoserve batching on ÷ off"),
]


def spread(values: list[float]) -> str:
    """Median with the range, e.g. `10,941 (10,027–11,200)`."""
    if len(values) == 1:
        return f"{values[0]:,.0f}"
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--timeout-us", type=int, required=True)
    ap.add_argument("--mlp-widths", default="512,2048,2048,256", help="the MLP's widths, for the titles")
    ap.add_argument("--log", help="bench.log, whose start/end load lines are quoted")
    args = ap.parse_args()

    runs = [json.loads(line) for line in open(args.results) if line.strip()]
    by_side: dict[str, list[dict]] = defaultdict(list)
    by_round: dict[int, dict[str, dict]] = defaultdict(dict)
    failed = []
    for run in runs:
        if "error" in run:
            failed.append(run)
            continue
        by_side[run["side"]].append(run)
        by_round[run["round"]][run["side"]] = run

    rounds = len(by_round)
    print(f"# Dynamic batching benchmark: {rounds} round(s), each side once per round, order alternating\n")
    widths = args.mlp_widths.split(",")
    print(f"MLP: {' → '.join(widths)}; transport floor: {widths[0]} → {widths[-1]} (one matmul). "
          "Medians over the rounds, (smallest–largest) in brackets.\n")
    print("| side | clients | batch | items/s | p50 ms | p99 ms | rows per inference | errors | 1-min load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for side, label in SIDES.items():
        rs = by_side.get(side)
        if not rs:
            continue
        model = "ResNet-50" if side.startswith("resnet") else "floor" if side.startswith("floor") else "MLP"
        rows = [r["rows_per_inference"] for r in rs if r.get("rows_per_inference")]
        print(f"| {model}: {label} | {rs[0]['clients']} | {rs[0]['batch']} "
              f"| {spread([r['items_per_s'] for r in rs])} "
              f"| {ms([r['p50_ms'] for r in rs])} | {ms([r['p99_ms'] for r in rs])} "
              f"| {f'{statistics.median(rows):.1f}' if rows else '1' if 'raw' not in side else side[-2:].lstrip('b')} "
              f"| {sum(r['errors'] for r in rs)} "
              f"| {statistics.median(r['loadavg'] for r in rs):.1f} |")

    print("\n| ratio of items/s, within each round | median | smallest–largest | per round |")
    print("|---|---|---|---|")
    for a, b, label in RATIOS:
        per_round = [by_round[r][a]["items_per_s"] / by_round[r][b]["items_per_s"]
                     for r in sorted(by_round) if a in by_round[r] and b in by_round[r]
                     and by_round[r][b]["items_per_s"] > 0]
        if per_round:
            print(f"| {label} | {statistics.median(per_round):.2f}× | {min(per_round):.2f}–{max(per_round):.2f}× "
                  f"| {', '.join(f'{x:.2f}' for x in per_round)} |")

    b32 = by_side.get("mlp_raw_b32")
    on = by_side.get("mlp_on")
    if b32 and on:
        t32 = statistics.median(r["p50_ms"] for r in b32)
        bound = args.timeout_us / 1000 + 2 * t32
        p99s = [r["p99_ms"] for r in on]
        within = sum(p <= bound for p in p99s)
        print(f"\nMLP p99 bound: batch_timeout {args.timeout_us / 1000:.2f} ms + 2 × batch-32 inference "
              f"{t32:.2f} ms (raw OpenVINO p50, median) = {bound:.2f} ms; vinoserve batching on p99 "
              f"median {statistics.median(p99s):.2f} ms: {'within' if statistics.median(p99s) <= bound else 'over'} "
              f"the bound ({within} of {len(p99s)} rounds within). For scale, raw OpenVINO's own batch-32 "
              f"p99 (one inference at a time, nothing else in the process): "
              f"{statistics.median(r['p99_ms'] for r in b32):.2f} ms.")
    floor = by_side.get("floor_off")
    if b32 and on and floor:
        f50 = statistics.median(r["p50_ms"] for r in floor)
        f99 = statistics.median(r["p99_ms"] for r in floor)
        verdict = ("so here the bound lies below what receiving and answering these clients costs, batching or not"
                   if f99 > bound else "so the bound is within reach of the transport here")
        print(f"\nTransport floor: the same {floor[0]['clients']} clients against a one-matmul model "
              f"(batching off, next to no inference) get p50 {f50:.2f} ms and p99 {f99:.2f} ms, "
              f"{statistics.median(r['items_per_s'] for r in floor):,.0f} requests/s: what receiving and "
              f"answering the requests costs on these CPUs, with the clients on them too; the floor's p99 is "
              f"{'above' if f99 > bound else 'below'} the bound ({bound:.2f} ms), {verdict}.")
    if failed:
        names = ", ".join("round {round} {side}".format(**r) for r in failed)
        print(f"\nFailed windows: {names}.")
    if args.log:
        loads = [line.strip() for line in open(args.log) if line.startswith("== ")]
        if loads:
            print("\nMachine load (bench.log has `top` at start and end):\n")
            for line in loads:
                print(f"- {line[3:]}")


if __name__ == "__main__":
    main()
