#!/usr/bin/env python3
"""Results of scripts/bench.sh: the environment record, the markdown report, JSON and SVG charts.

  report.py start  OUT --mode M --precisions P --hint H ...   writes OUT/meta.json (machine,
                                                              versions, settings) at the start
  report.py render OUT                                        reads OUT/meta.json, OUT/points.jsonl
                                                              and OUT/criterion/, writes
                                                              OUT/results.md, OUT/results.json and
                                                              OUT/charts/*.svg

OUT/points.jsonl has one line per measured point, written by bench.sh:
  {"suite": "tables"|"sweep"|"targets", "precision": "default"|"f32", "hint": ..., "model": ...,
   "batch": N, "clients": N, "served": <loadgen JSON>, "raw": <loadgen JSON>}
or, when loadgen failed, the same context with "error": "...". Points of the targets suite also
carry "round": N (1..R), as each target is measured R times. With bench.sh --tensorflow, points of
Tables 1-3 also carry "tensorflow": <benches/tf_baseline.py JSON> (TensorFlow in-process, the
stand-in for TF Serving), or "tensorflow_error": "..." when that run failed; the tables then gain
TF columns. Without them the output is as before.

Standard library only (no numpy / matplotlib): charts are written as SVG by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from html import escape
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TABLE3_MODEL = "resnet_v1_50"
FEW_REQUESTS = 5  # fewer completed requests than this in a window: flagged, the number is rough
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")
# The project's performance targets (bench.sh --only targets, PERFORMANCE_HINT=THROUGHPUT, gRPC).
# Thresholds are (op, value): a target is met when the median over its rounds satisfies it.
TARGET_HINT = "THROUGHPUT"
RATIO_TARGETS = ((1, ("≥", 0.97)), (16, ("≥", 0.99)))  # resnet_v1_50 batch: served ÷ raw img/s
TINY_MODEL = "add"  # tests/fixtures/models/add, [1,10]: next to no compute, so serving is all there is
TINY_HINT = "LATENCY"  # one stream inferring on the calling thread: no stream hand-off in either run
TINY_OVERHEAD = ("<", 0.1)  # served p50 − raw p50 in ms at 1 client
TINY_BUSY_CLIENTS = 16  # its served req/s here is reported without a threshold


# ----------------------------------------------------------------------------------- start

def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def machine() -> dict:
    lscpu: dict[str, str] = {}
    for line in _run(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        lscpu[key.strip()] = value.strip()
    flags = set(lscpu.get("Flags", "").split())
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except (OSError, ValueError):
        pass
    keys = ("Model name", "Architecture", "CPU(s)", "Socket(s)", "Core(s) per socket",
            "Thread(s) per core", "NUMA node(s)", "L3 cache", "Hypervisor vendor")
    return {
        "lscpu": {k: lscpu[k] for k in keys if k in lscpu},
        "isa_flags": [f for f in FLAGS_OF_INTEREST if f in flags],
        "nproc": int(_run(["nproc"]) or os.cpu_count() or 0),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "hostname": platform.node(),
    }


def versions() -> dict:
    try:
        import openvino  # noqa: PLC0415  (PYTHONPATH comes from scripts/env.sh)

        openvino_version = openvino.get_version()
    except ImportError:
        openvino_version = (REPO_ROOT / ".deps" / "openvino.version").read_text().strip()
    rev = _run(["git", "rev-parse", "--short", "HEAD"], REPO_ROOT) or "unknown"
    if _run(["git", "status", "--porcelain", "--untracked-files=no"], REPO_ROOT):
        rev += " (with uncommitted changes)"
    return {
        "openvino": openvino_version,
        "vinoserve_git": rev,
        "rustc": _run(["rustc", "-V"]),
        "python": platform.python_version(),
    }


def cmd_start(args: argparse.Namespace) -> None:
    out = Path(args.out)
    settings = {
        "mode": args.mode,
        "precisions": args.precisions.split(","),
        "table_hint": args.hint,
        "table_clients": 1,
        "sweep_hint": args.sweep_hint,
        "sweep_clients": [int(c) for c in args.clients.split(",")],
        "models": args.models.split(","),
        "table_batches": {"table1": 1, "table2": 16, "table3": [1, 8, 16, 32]},
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "protocol": args.protocol,
        "loadgen_threads": 1,
        "model_dir": args.model_dir,
        "suites": args.suites.split(","),
        "target_hint": TARGET_HINT,
        "tiny_hint": TINY_HINT,
        "target_clients": args.target_clients,
        "target_rounds": args.rounds,
    }
    if args.tensorflow:
        settings["tensorflow"] = args.tensorflow
    meta = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_start": _loadavg(),
        "machine": machine(),
        "versions": versions(),
        "settings": settings,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


# ----------------------------------------------------------------------------------- data

def img_per_s(run: dict) -> float | None:
    """The 2018 formula, batch × 1000 / mean latency (ms), times the number of clients (which
    is Little's law for a closed loop). Unlike completed requests ÷ window it does not quantize
    when only a few large batches fit in a short window."""
    if not run or not run.get("mean_ms") or run.get("requests", 0) == 0:
        return None
    return run["batch"] * run["clients"] * 1000.0 / run["mean_ms"]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def latency(run: dict, quantile: str) -> float | None:
    return run[f"{quantile}_ms"] if run.get("requests") else None


def cpu_efficiency(served: dict, raw: dict) -> float | None:
    """Requests per CPU second of the server ÷ the same of the raw run. Unlike img/s this
    hardly moves when other processes take CPU time, so on a shared machine it is the better
    measure of what serving costs."""
    return ratio(served.get("req_per_server_cpu_s"), raw.get("req_per_server_cpu_s"))


def load_points(out: Path) -> list[dict]:
    path = out / "points.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def find(points: list[dict], **want) -> dict | None:
    for p in points:
        if all(p.get(k) == v for k, v in want.items()):
            return p
    return None


def runtime_precision(points: list[dict], precision: str) -> str:
    """What OpenVINO chose (the raw run's INFERENCE_PRECISION_HINT), e.g. bf16 for default."""
    for p in points:
        if p.get("precision") == precision and "raw" in p:
            chosen = p["raw"].get("properties", {}).get("INFERENCE_PRECISION_HINT")
            if chosen:
                return chosen
    return "?"


def precision_label(points: list[dict], precision: str) -> str:
    chosen = runtime_precision(points, precision)
    if precision == "default":
        return f"default (no INFERENCE_PRECISION_HINT; OpenVINO chose {chosen})"
    return f"INFERENCE_PRECISION_HINT={precision} (OpenVINO: {chosen})"


def table_rows(points: list[dict], precision: str, hint: str, keys: list[tuple[str, int]]) -> list[dict]:
    rows = []
    for model, batch in keys:
        p = find(points, suite="tables", precision=precision, model=model, batch=batch)
        row = {"model": model, "batch": batch, "clients": 1, "precision": precision, "hint": hint}
        if p is None:
            row["error"] = "not run"
        elif "error" in p:
            row["error"] = p["error"]
        else:
            served, raw = p["served"], p["raw"]
            row.update(
                served_img_s=img_per_s(served),
                raw_img_s=img_per_s(raw),
                served_p50_ms=latency(served, "p50"),
                raw_p50_ms=latency(raw, "p50"),
                served_p99_ms=latency(served, "p99"),
                raw_p99_ms=latency(raw, "p99"),
                served_requests=served["requests"],
                raw_requests=raw["requests"],
                errors=served["errors"] + raw["errors"],
                properties=raw.get("properties", {}),
            )
            row["served_over_raw"] = ratio(row["served_img_s"], row["raw_img_s"])
            row["cpu_efficiency"] = cpu_efficiency(served, raw)
            add_tensorflow(row, p)
        rows.append(row)
    return rows


def add_tensorflow(row: dict, point: dict) -> None:
    """The TF columns of a Tables 1-3 row (bench.sh --tensorflow); nothing when the point has
    no TF run, so the tables stay as they were."""
    if "tensorflow_error" in point:
        row["tf_error"] = point["tensorflow_error"]
    elif "tensorflow" in point:
        tf = point["tensorflow"]
        row.update(
            tf_img_s=img_per_s(tf),
            tf_p50_ms=latency(tf, "p50"),
            tf_requests=tf["requests"],
            tf_version=tf.get("tensorflow_version"),
        )
        row["errors"] += tf["errors"]
        row["served_over_tf"] = ratio(row["served_img_s"], row["tf_img_s"])
        row["raw_over_tf"] = ratio(row["raw_img_s"], row["tf_img_s"])


def has_tensorflow(rows: list[dict]) -> bool:
    return any("tf_img_s" in r or "tf_error" in r for r in rows)


def tensorflow_runs(points: list[dict]) -> list[dict]:
    return [dict(p["tensorflow"], table_precision=p.get("precision"))
            for p in points if p.get("suite") == "tables" and "tensorflow" in p]


def sweep_rows(points: list[dict], precision: str, clients: list[int]) -> list[dict]:
    rows = []
    for n in clients:
        p = find(points, suite="sweep", precision=precision, clients=n)
        row = {"model": TABLE3_MODEL, "batch": 1, "clients": n, "precision": precision}
        if p is None:
            row["error"] = "not run"
        elif "error" in p:
            row["error"] = p["error"]
        else:
            for side in ("served", "raw"):
                run = p[side]
                row[f"{side}_img_s"] = run["items_per_s"]
                for q in ("p50", "p90", "p99"):
                    row[f"{side}_{q}_ms"] = latency(run, q)
            row["errors"] = p["served"]["errors"] + p["raw"]["errors"]
            row["served_over_raw"] = ratio(row["served_img_s"], row["raw_img_s"])
            row["cpu_efficiency"] = cpu_efficiency(p["served"], p["raw"])
            row["properties"] = p["raw"].get("properties", {})
        rows.append(row)
    return rows


def target_pairs(points: list[dict], precision: str, model: str, batch: int, clients: int) -> list[dict]:
    """The served/raw pairs (rounds) of one targets point, in round order."""
    mine = [p for p in points if p.get("suite") == "targets" and p.get("precision") == precision
            and p.get("model") == model and p.get("batch") == batch and p.get("clients") == clients]
    pairs = []
    for p in sorted(mine, key=lambda p: p.get("round", 0)):
        pair: dict = {"round": p.get("round")}
        if "error" in p:
            pair["error"] = p["error"]
            pairs.append(pair)
            continue
        served, raw = p["served"], p["raw"]
        pair.update(
            served_img_s=img_per_s(served),
            raw_img_s=img_per_s(raw),
            served_req_s=served["req_per_s"],
            raw_req_s=raw["req_per_s"],
            served_p50_ms=latency(served, "p50"),
            raw_p50_ms=latency(raw, "p50"),
            requests=min(served["requests"], raw["requests"]),
            errors=served["errors"] + raw["errors"],
            cpu_efficiency=cpu_efficiency(served, raw),
        )
        pair["served_over_raw"] = ratio(pair["served_img_s"], pair["raw_img_s"])
        if pair["served_p50_ms"] is not None and pair["raw_p50_ms"] is not None:
            pair["overhead_ms"] = pair["served_p50_ms"] - pair["raw_p50_ms"]
        pairs.append(pair)
    return pairs


def meets(value: float | None, threshold: tuple[str, float] | None) -> bool | None:
    if value is None or threshold is None:
        return None
    op, limit = threshold
    return value >= limit if op == "≥" else value < limit


def median_of(pairs: list[dict], key: str) -> float | None:
    values = [p[key] for p in pairs if p.get(key) is not None]
    return statistics.median(values) if values else None


def summarize_target(label: str, pairs: list[dict], measure: str, threshold: tuple[str, float] | None) -> dict:
    """One target over its rounds: judged on the median, because a single pair on a shared
    machine can land in a neighbour's busy spell; min–max shows how far the rounds spread."""
    values = [p[measure] for p in pairs if p.get(measure) is not None]
    mid = statistics.median(values) if values else None
    return {
        "target": label,
        "measure": measure,
        "threshold": list(threshold) if threshold else None,
        "median": mid,
        "min": min(values, default=None),
        "max": max(values, default=None),
        "rounds_ok": len(values),
        "rounds_run": len(pairs),
        "cpu_efficiency_median": median_of(pairs, "cpu_efficiency"),
        "served_p50_ms_median": median_of(pairs, "served_p50_ms"),
        "raw_p50_ms_median": median_of(pairs, "raw_p50_ms"),
        "raw_req_s_median": median_of(pairs, "raw_req_s"),
        "few_requests": any(p.get("requests", FEW_REQUESTS) < FEW_REQUESTS for p in pairs),
        "errors": sum(p.get("errors", 0) for p in pairs),
        "met": meets(mid, threshold),
        "pairs": pairs,
    }


def target_rows(points: list[dict], precision: str, clients: int) -> list[dict]:
    rows = []
    for batch, threshold in RATIO_TARGETS:
        pairs = target_pairs(points, precision, TABLE3_MODEL, batch, clients)
        rows.append(summarize_target(f"{TABLE3_MODEL}, batch {batch}, {clients} clients: served ÷ raw img/s",
                                     pairs, "served_over_raw", threshold))
    pairs = target_pairs(points, precision, TINY_MODEL, 1, 1)
    rows.append(summarize_target(f"{TINY_MODEL}, 1 client: server overhead, served p50 − raw p50",
                                 pairs, "overhead_ms", TINY_OVERHEAD))
    pairs = target_pairs(points, precision, TINY_MODEL, 1, TINY_BUSY_CLIENTS)
    rows.append(summarize_target(f"{TINY_MODEL}, {TINY_BUSY_CLIENTS} clients: served req/s",
                                 pairs, "served_req_s", None))
    return rows


def criterion_results(out: Path) -> list[dict]:
    results = []
    for bench in sorted((out / "criterion").glob("**/new/benchmark.json")):
        estimates = bench.with_name("estimates.json")
        if not estimates.exists():
            continue
        info = json.loads(bench.read_text())
        est = json.loads(estimates.read_text())
        mean = est["mean"]
        row = {
            "id": info.get("full_id") or info.get("title"),
            "mean_ns": mean["point_estimate"],
            "ci95_ns": [mean["confidence_interval"]["lower_bound"], mean["confidence_interval"]["upper_bound"]],
            "median_ns": est["median"]["point_estimate"],
        }
        results.append(row)
    return results


# ----------------------------------------------------------------------------------- markdown

def f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def fx(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def duration(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def md_table(title: str, first: str, rows: list[dict], relative_to_first: bool = False) -> list[str]:
    lines = [title, ""]
    tf = has_tensorflow(rows)  # bench.sh --tensorflow: TF img/s, served ÷ TF, raw ÷ TF, TF p50
    head = (f"| {first} | served img/s | raw img/s | served ÷ raw | "
            + ("TF img/s | served ÷ TF | raw ÷ TF | " if tf else "")
            + "per CPU s: served ÷ raw | served p50 ms | raw p50 ms | "
            + ("TF p50 ms | " if tf else "")
            + "served p99 ms | raw p99 ms | " + ("requests (served/raw/TF) |" if tf else "requests (served/raw) |"))
    if relative_to_first:
        head += " served vs batch 1 | raw vs batch 1 |" + (" TF vs batch 1 |" if tf else "")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    base = rows[0] if rows else {}
    for r in rows:
        label = str(r["model"] if first == "model" else r["batch"])
        if "error" in r:
            lines.append(f"| {label} | failed: {md_cell(r['error'])} |")
            continue
        counts = [r["served_requests"], r["raw_requests"]] + ([r["tf_requests"]] if "tf_requests" in r else [])
        few = min(counts) < FEW_REQUESTS
        requests = "/".join(map(str, counts)) + ("/–" if tf and "tf_requests" not in r else "")
        cells = [label, f(r["served_img_s"]), f(r["raw_img_s"]), fx(r["served_over_raw"])]
        if tf:
            tf_img_s = f(r.get("tf_img_s")) if "tf_error" not in r else "failed (see bench.log)"
            cells += [tf_img_s, fx(r.get("served_over_tf")), fx(r.get("raw_over_tf"))]
        cells += [fx(r["cpu_efficiency"]), f(r["served_p50_ms"]), f(r["raw_p50_ms"])]
        if tf:
            cells += [f(r.get("tf_p50_ms"))]
        cells += [
            f(r["served_p99_ms"]), f(r["raw_p99_ms"]),
            requests + (" ⚠ few" if few else "") + (f" ({r['errors']} errors)" if r["errors"] else ""),
        ]
        if relative_to_first:
            cells += [fx(ratio(r["served_img_s"], base.get("served_img_s"))),
                      fx(ratio(r["raw_img_s"], base.get("raw_img_s")))]
            if tf:
                cells += [fx(ratio(r.get("tf_img_s"), base.get("tf_img_s")))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def md_sweep(rows: list[dict]) -> list[str]:
    head = ("| clients | served img/s | raw img/s | served ÷ raw | per CPU s: served ÷ raw "
            "| served p50 / p90 / p99 ms | raw p50 / p90 / p99 ms | errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['clients']} | failed: {md_cell(r['error'])} |")
            continue
        lat = lambda side: " / ".join(f(r[f"{side}_{q}_ms"]) for q in ("p50", "p90", "p99"))  # noqa: E731
        lines.append(f"| {r['clients']} | {f(r['served_img_s'])} | {f(r['raw_img_s'])} | "
                     f"{fx(r['served_over_raw'])} | {fx(r['cpu_efficiency'])} | {lat('served')} | {lat('raw')} "
                     f"| {r['errors']} |")
    return lines + [""]


def target_value(measure: str, x: float | None) -> str:
    """A target's measure in its own unit: ratios to 3 decimals (the thresholds are 0.97 and
    0.99), the overhead in µs."""
    if x is None:
        return "–"
    if measure == "served_over_raw":
        return f"{x:.3f}×"
    if measure == "overhead_ms":
        return f"{x * 1000:.0f} µs"
    return f"{x:.0f} req/s"


def target_threshold(row: dict) -> str:
    if not row["threshold"]:
        return "none (reported)"
    op, limit = row["threshold"]
    return f"{op} {limit:g}" if row["measure"] == "served_over_raw" else f"{op} {target_value(row['measure'], limit)}"


def fx3(x: float | None) -> str:
    """A ratio to 3 decimals: next to thresholds of 0.97 and 0.99, 2 would hide the verdict."""
    return "–" if x is None else f"{x:.3f}×"


def target_verdict(row: dict) -> str:
    if row["rounds_ok"] == 0:
        return "failed" if row["rounds_run"] else "not run"
    return {True: "met", False: "not met", None: "–"}[row["met"]]


def target_measured(row: dict) -> str:
    cell = target_value(row["measure"], row["median"])
    if row["measure"] == "overhead_ms" and row["median"] is not None:
        cell += (f" (p50 served {target_value('overhead_ms', row['served_p50_ms_median'])}, "
                 f"raw {target_value('overhead_ms', row['raw_p50_ms_median'])})")
    elif row["measure"] == "served_req_s" and row["median"] is not None:
        cell += f" (raw {target_value('served_req_s', row['raw_req_s_median'])})"
    return cell


def target_range(row: dict) -> str:
    if row["rounds_ok"] == 0:
        return "–"
    low, high = (target_value(row["measure"], x) for x in (row["min"], row["max"]))
    cell = "one pair" if row["rounds_run"] == 1 else f"{low.rstrip('×')} – {high}"
    if row["rounds_run"] > 1:
        ok, run = row["rounds_ok"], row["rounds_run"]
        cell += f" ({run} rounds)" if ok == run else f" ({ok} of {run} rounds; see bench.log)"
    if row["few_requests"]:
        cell += " ⚠ few"
    if row["errors"]:
        cell += f" ({row['errors']} request errors)"
    return cell


def md_targets(rows: list[dict]) -> list[str]:
    head = "| target | threshold | measured (median) | range over rounds | per CPU s: served ÷ raw (median) | met |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['target']} | {target_threshold(r)} | {target_measured(r)} | {target_range(r)} "
                     f"| {fx3(r['cpu_efficiency_median'])} | {target_verdict(r)} |")
    return lines + [""]


def target_pair_cell(measure: str, pair: dict | None) -> str:
    if pair is None:
        return "–"
    if "error" in pair:
        return "failed"
    value = target_value(measure, pair.get(measure))
    if measure == "overhead_ms":
        return (f"{value} ({target_value(measure, pair['served_p50_ms'])} − "
                f"{target_value(measure, pair['raw_p50_ms'])})")
    return f"{value} (per CPU s {fx3(pair['cpu_efficiency'])})"


def md_target_rounds(rows: list[dict]) -> list[str]:
    """Every pair of the thresholded targets, so a median can be checked against its rounds."""
    judged = [r for r in rows if r["threshold"]]
    rounds = sorted({p["round"] for r in judged for p in r["pairs"] if p.get("round") is not None})
    if not rounds:
        return []
    head = "| round | " + " | ".join(r["target"] for r in judged) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for n in rounds:
        cells = [target_pair_cell(r["measure"], next((p for p in r["pairs"] if p.get("round") == n), None))
                 for r in judged]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines + [""]


def target_hints(s: dict) -> str:
    """The targets' PERFORMANCE_HINTs (runs before the tiny model had its own used one for all)."""
    hint, tiny = s.get("target_hint", TARGET_HINT), s.get("tiny_hint")
    if tiny is None or tiny == hint:
        return f"PERFORMANCE_HINT={hint}"
    return f"PERFORMANCE_HINT={hint} ({TABLE3_MODEL}), {tiny} ({TINY_MODEL})"


def md_targets_section(s: dict, targets: dict) -> list[str]:
    lines = [
        "## Targets", "",
        f"{target_hints(s)}, gRPC TFS Predict. Each target is measured "
        f"as {s.get('target_rounds', '?')} served-then-raw pairs (one `loadgen --compare-raw` each: the "
        "server measured and stopped, then the raw run), the targets taking turns round by round, and is "
        "judged on the median pair: on a shared machine a single pair moves by up to a third with what "
        "the neighbours do, and a median of alternating pairs is not carried off by one bad spell. "
        "img/s = batch × clients × 1000 / mean latency (Little's law for a closed loop, the Tables' "
        "formula). \"per CPU s\" is the median over the pairs of requests per CPU second, served ÷ raw, "
        "the measure that moves least with the machine's load. The overhead is the median of the "
        "per-pair differences served p50 − raw p50 (the medians of both p50s in brackets).",
        "",
    ]
    for precision, t in targets.items():
        lines += [f"**Targets** — {t['label']}", ""]
        lines += md_targets(t["rows"])
        lines += ["Per round (pair):", ""]
        lines += md_target_rounds(t["rows"])
    return lines


def tensorflow_summary(points: list[dict]) -> dict | None:
    """What the TF columns ran (bench.sh --tensorflow), from the TF records themselves."""
    runs = tensorflow_runs(points)
    if not runs:
        return None
    values = lambda key: sorted({str(r.get(key, "?")) for r in runs})  # noqa: E731
    props = lambda key: sorted({str(r.get("properties", {}).get(key, "?")) for r in runs})  # noqa: E731
    return {
        "version": ", ".join(values("tensorflow_version")),
        "keras_version": ", ".join(values("keras_version")),
        "arch": ", ".join(values("arch")),
        "threads": f"intra-op threads {', '.join(props('intra_op_parallelism_threads'))}, "
                   f"inter-op {', '.join(props('inter_op_parallelism_threads'))}",
        "precision": ", ".join(props("precision")),
        # What TF computed in, per table precision ("default": bf16 where OpenVINO chose bf16).
        "precision_by_table": {
            table: ", ".join(sorted({str(r.get("properties", {}).get("precision", "?"))
                                     for r in runs if r["table_precision"] == table}))
            for table in sorted({r["table_precision"] for r in runs})
        },
        "gmacs_per_image": {r["model"]: r.get("gmacs_per_image") for r in runs},
    }


def md_tensorflow_note(tf: dict) -> str:
    return (
        "TF columns: TensorFlow in-process stands in for TF Serving (no TF Serving binary can be "
        "installed here): "
        + ("the same ResNet graph (`benches/tf_baseline.py --arch slim` rebuilds scripts/make_resnet.py's "
           "layers in Keras, random weights, the same MACs)" if tf["arch"] == "slim" else
           f"`benches/tf_baseline.py --arch {tf['arch']}` models (see its docstring for how they differ "
           "from scripts/make_resnet.py's)")
        + ", the same batch and CPUs, one synchronous client in a closed loop, a `tf.function` call per "
        "request with the input copied in and the output copied out. TF img/s uses the same formula. served ÷ TF "
        "recomputes the 2018 OVMS ÷ TF Serving ratio, and it flatters TF: in-process TF pays no "
        "gRPC, no serialization and no serving layer, which a real TF Serving does, so served ÷ TF "
        "understates vinoserve against TF Serving; raw ÷ TF is the runtimes alone (OpenVINO vs "
        "TensorFlow). TensorFlow computed in "
        + "; ".join(f"{prec} in the {table} tables" for table, prec in tf["precision_by_table"].items())
        + ". Where OpenVINO chose bf16 (default precision on a CPU with bf16), TF runs with grappler's "
        "oneDNN bf16 auto-mixed-precision, which TF leaves off unless asked: convolutions and matmuls "
        "in bf16, so both runtimes use the CPU's bf16.")


def render_markdown(meta: dict, report: dict, charts: dict[str, str]) -> str:
    m, v, s = meta["machine"], meta["versions"], meta["settings"]
    cpu = m["lscpu"]
    lines = [
        f"# vinoserve benchmark — {meta['started']}",
        "",
        f"Mode **{s['mode']}**: {s['warmup_s']:g} s warm-up + {s['duration_s']:g} s measured per point, "
        f"served (gRPC TFS Predict to the vinoserve binary on 127.0.0.1) then raw (the same model, "
        f"shape and OpenVINO properties run in-process by the load generator).",
        "",
        "## Machine, versions, settings",
        "",
        f"- CPU: {cpu.get('Model name', '?')}, {cpu.get('Socket(s)', '?')} socket(s) × "
        f"{cpu.get('Core(s) per socket', '?')} cores × {cpu.get('Thread(s) per core', '?')} threads, "
        f"NUMA nodes {cpu.get('NUMA node(s)', '?')}, L3 {cpu.get('L3 cache', '?')}"
        + (f", hypervisor {cpu['Hypervisor vendor']}" if "Hypervisor vendor" in cpu else ""),
        f"- ISA: {', '.join(m['isa_flags']) or '–'}; nproc {m['nproc']}; memory {m['memory_gib']} GiB; "
        f"kernel {m['kernel']}",
        f"- Load average at start / end: {meta['loadavg_start']} / {report.get('loadavg_end', '?')} "
        "(anything near or above nproc means other work shared the CPUs)"
        + (f"; wall time of the run {report['elapsed_s'] / 60:.1f} min" if report.get("elapsed_s") else ""),
        f"- OpenVINO {v['openvino']}; vinoserve {v['vinoserve_git']}; {v['rustc']}",
        f"- Tables 1–3: PERFORMANCE_HINT={s['table_hint']}, **1 synchronous client** (as in the 2018 "
        f"comparison), gRPC; the server's nireq is OpenVINO's optimal number for the hint",
        f"- Concurrency sweep: {TABLE3_MODEL}, batch 1, PERFORMANCE_HINT={s['sweep_hint']}, "
        f"clients {', '.join(map(str, s['sweep_clients']))}",
        f"- Precisions: {', '.join(s['precisions'])}; models from `{s['model_dir']}` "
        "(scripts/make_resnet.py, random weights); batches > 1 reshape the model at load, "
        "the same in the server and the raw run",
    ]
    if "targets" in s.get("suites", []):
        lines.append(
            f"- Targets: {TABLE3_MODEL} at batch 1 and 16 with {s.get('target_clients')} clients, "
            f"`tests/fixtures/models/{TINY_MODEL}` at 1 and {TINY_BUSY_CLIENTS} clients; "
            f"{target_hints(s)}, gRPC; {s.get('target_rounds')} rounds")
    tf = report.get("tensorflow")
    if tf:
        lines.append(
            f"- TensorFlow {tf['version']} (Keras {tf['keras_version']}) in-process, the stand-in for TF Serving "
            f"(`bench.sh --tensorflow`, `benches/tf_baseline.py`): models `--arch {tf['arch']}`, "
            f"{tf['threads']}, computing in "
            + "; ".join(f"{prec} ({table} tables)" for table, prec in tf["precision_by_table"].items()))
    lines += [
        "",
        "img/s in Tables 1–3 = batch × 1000 / mean latency in ms (the 2018 note's formula); in the "
        "sweep = images completed in the window ÷ window. served ÷ raw is the price of serving "
        "(gRPC, decode, validation, queueing, encode): 1.00× means free. \"per CPU s: served ÷ raw\" "
        "compares requests per CPU second of the server process with the same of the raw run: "
        "it hardly moves when other processes take CPU time, so on a busy machine it is the "
        "steadier measure of what serving costs (img/s ratios then also reflect how the scheduler "
        "shared the CPUs: a server that sleeps between requests wins CPU back from busy "
        "neighbours on wake-up, a raw loop that never sleeps does not). Points with batch B > 8 "
        "are measured B/8 times longer, so every window holds a similar number of requests; "
        f"\"⚠ few\" marks fewer than {FEW_REQUESTS} requests in a window (a rough number).",
        "",
    ]
    if tf:
        lines += [md_tensorflow_note(tf), ""]
    if report.get("targets"):
        lines += md_targets_section(s, report["targets"])
    for precision in s["precisions"]:
        pr = report["precisions"].get(precision)
        if not pr:
            continue
        label = pr["label"]
        lines += [f"## Precision: {label}", ""]
        lines += md_table(f"**Table 1** — batch 1, 1 client, {label}", "model", pr["table1"])
        lines += [f"![Table 1, {precision}]({charts[f'table1-{precision}']})", ""]
        lines += md_table(f"**Table 2** — batch 16, 1 client, {label}", "model", pr["table2"])
        lines += [f"![Table 2, {precision}]({charts[f'table2-{precision}']})", ""]
        lines += md_table(f"**Table 3** — {TABLE3_MODEL} by batch, 1 client, {label}", "batch",
                          pr["table3"], relative_to_first=True)
        lines += [f"![Table 3, {precision}]({charts[f'table3-{precision}']})", ""]
        if pr["sweep"]:
            lines += [f"**Concurrency sweep** — {TABLE3_MODEL}, batch 1, PERFORMANCE_HINT={s['sweep_hint']}, "
                      f"{label}", ""]
            lines += md_sweep(pr["sweep"])
            lines += [f"![Sweep, {precision}]({charts[f'sweep-{precision}']})", ""]
    if len(report["precisions"]) > 1 and report.get("precision_comparison"):
        lines += ["## Default precision vs f32 (served img/s, Tables 1–3)", "",
                  "| model | batch | default | f32 | default ÷ f32 |", "|---|---|---|---|---|"]
        for r in report["precision_comparison"]:
            lines.append(f"| {r['model']} | {r['batch']} | {f(r['default'])} | {f(r['f32'])} | {fx(r['speedup'])} |")
        lines.append("")
    if report["criterion"]:
        lines += ["## Micro-benchmarks (criterion, `cargo bench --bench hot_path`)", "",
                  "| benchmark | mean | 95% CI | median |", "|---|---|---|---|"]
        for c in report["criterion"]:
            lo, hi = c["ci95_ns"]
            lines.append(f"| {c['id']} | {duration(c['mean_ns'])} | {duration(lo)} – {duration(hi)} "
                         f"| {duration(c['median_ns'])} |")
        lines.append("")
    lines += ["Files: `results.json` (everything above plus the load generator's raw records), "
              "`points.jsonl`, `bench.log`, `charts/`, `criterion/`.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- SVG

SERVED, RAW, TF = "#1f5fa8", "#f28e2b", "#59a14f"
FONT = 'font-family="Helvetica, Arial, sans-serif"'


def nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * magnitude >= value * 1.08:
            return step * magnitude
    return 10 * magnitude


def svg_doc(width: int, height: int, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT} font-size="12">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


def text(x: float, y: float, s: str, anchor: str = "middle", size: int = 12, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" {extra}>{escape(s)}</text>'


def axes(x0: float, y0: float, w: float, h: float, ymax: float, ylabel: str) -> list[str]:
    out = []
    for i in range(6):
        v = ymax * i / 5
        y = y0 + h - h * i / 5
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(text(x0 - 6, y + 4, f"{v:g}", "end", 11))
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + h}" stroke="#333"/>')
    out.append(f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="#333"/>')
    out.append(text(x0 - 44, y0 + h / 2, ylabel, extra=f'transform="rotate(-90 {x0 - 44} {y0 + h / 2})"'))
    return out


def legend(x: float, y: float, items: list[tuple[str, str]]) -> list[str]:
    """One row of colour keys starting at (x, y), outside the plot area."""
    out = []
    for color, label in items:
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="12" height="12" fill="{color}"/>')
        out.append(text(x + 18, y + 10, label, "start", 12))
        x += 18 + 6.5 * len(label) + 24
    return out


def bar_chart(title: str, subtitle: str, groups: list[str], served: list, raw: list, tf: list | None = None) -> str:
    """Grouped bars of img/s, served vs raw, like the 2018 OVMS vs TF Serving figures; with
    bench.sh --tensorflow (tf given) a third bar per group, TensorFlow in-process."""
    series = [(served, SERVED), (raw, RAW)] + ([(tf, TF)] if tf is not None else [])
    width, height = max(680 if tf is not None else 560, 140 * len(groups) + 160), 400
    x0, y0, w, h = 80, 88, width - 110, height - 150
    ymax = nice_max(max([v for v in served + raw + (tf or []) if v] or [1]))
    body = [text(width / 2, 24, title, size=15, extra='font-weight="bold"'),
            text(width / 2, 44, subtitle, size=11, extra='fill="#555"')]
    body += axes(x0, y0, w, h, ymax, "images / s")
    slot = w / max(1, len(groups))
    bar = min(48, slot / 3) if tf is None else min(40, slot / 4)
    for i, group in enumerate(groups):
        cx = x0 + slot * (i + 0.5)
        for j, (values, color) in enumerate(series):
            value = values[i]
            bx = cx - bar - 2 + j * (bar + 4) if tf is None else cx - 1.5 * bar - 4 + j * (bar + 4)
            if value is None:
                body.append(text(bx + bar / 2, y0 + h - 4, "n/a", size=10))
                continue
            bh = h * value / ymax
            body.append(f'<rect x="{bx:.1f}" y="{y0 + h - bh:.1f}" width="{bar:.1f}" height="{bh:.1f}" fill="{color}"/>')
            body.append(text(bx + bar / 2, y0 + h - bh - 4, f"{value:.1f}", size=10))
        body.append(text(cx, y0 + h + 18, group, size=12))
        r = ratio(served[i], raw[i])
        if r:
            body.append(text(cx, y0 + h + 34, f"served ÷ raw {r:.2f}×", size=10, extra='fill="#555"'))
        r = ratio(served[i], tf[i]) if tf is not None else None
        if r:
            body.append(text(cx, y0 + h + 48, f"served ÷ TF {r:.2f}×", size=10, extra='fill="#555"'))
    keys = [(SERVED, "vinoserve (served, gRPC)"), (RAW, "raw OpenVINO (in-process)")]
    if tf is not None:
        keys.append((TF, "TensorFlow (in-process)"))
    body += legend(x0, 58, keys)
    return svg_doc(width, height, body)


def line_panel(x0: float, y0: float, w: float, h: float, xs: list[int], series: list[tuple[str, str, list, str]],
               ylabel: str, title: str) -> list[str]:
    values = [v for _, _, vs, _ in series for v in vs if v is not None]
    ymax = nice_max(max(values or [1]))
    body = [text(x0 + w / 2, y0 - 10, title, size=13, extra='font-weight="bold"')]
    body += axes(x0, y0, w, h, ymax, ylabel)
    n = len(xs)
    px = [x0 + w * (i + 0.5) / n for i in range(n)]  # categorical x (clients 1, 2, 4, ...)
    for x, c in zip(px, xs):
        body.append(text(x, y0 + h + 16, str(c), size=11))
    body.append(text(x0 + w / 2, y0 + h + 34, "concurrent clients", size=12))
    for color, _, vs, dash in series:
        pts = [(x, y0 + h - h * v / ymax) for x, v in zip(px, vs) if v is not None]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" {dash}/>')
        for x, y in pts:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    body += legend(x0, y0 + h + 48, [(color, label) for color, label, _, _ in series])
    return body


def sweep_chart(title: str, subtitle: str, rows: list[dict]) -> str:
    ok = [r for r in rows if "error" not in r]
    xs = [r["clients"] for r in ok]
    width, height = 980, 420
    body = [text(width / 2, 22, title, size=15, extra='font-weight="bold"'),
            text(width / 2, 40, subtitle, size=11, extra='fill="#555"')]
    get = lambda key: [r.get(key) for r in ok]  # noqa: E731
    body += line_panel(80, 80, 360, 250, xs, [
        (SERVED, "served", get("served_img_s"), ""),
        (RAW, "raw", get("raw_img_s"), ""),
    ], "images / s", "Throughput")
    dashed = 'stroke-dasharray="6 4"'
    body += line_panel(580, 80, 360, 250, xs, [
        (SERVED, "served p50", get("served_p50_ms"), ""),
        ("#6a9fd8", "served p99", get("served_p99_ms"), dashed),
        (RAW, "raw p50", get("raw_p50_ms"), ""),
        ("#f7bb80", "raw p99", get("raw_p99_ms"), dashed),
    ], "latency ms", "Latency")
    return svg_doc(width, height, body)


# ----------------------------------------------------------------------------------- render

def cmd_render(args: argparse.Namespace) -> None:
    out = Path(args.out)
    meta = json.loads((out / "meta.json").read_text())
    s = meta["settings"]
    points = load_points(out)
    report: dict = {"loadavg_end": _loadavg(), "elapsed_s": args.elapsed, "precisions": {},
                    "criterion": criterion_results(out)}
    charts: dict[str, str] = {}
    (out / "charts").mkdir(exist_ok=True)
    with_suite = lambda suite, precision: any(  # noqa: E731
        p.get("suite") == suite and p.get("precision") == precision for p in points)
    report["targets"] = {
        precision: {"label": precision_label(points, precision),
                    "rows": target_rows(points, precision, s.get("target_clients", 4))}
        for precision in s["precisions"] if with_suite("targets", precision)
    }
    for precision in s["precisions"]:
        if not (with_suite("tables", precision) or with_suite("sweep", precision)):
            continue
        label = precision_label(points, precision)
        pr = {
            "label": label,
            "table1": table_rows(points, precision, s["table_hint"], [(m, 1) for m in s["models"]]),
            "table2": table_rows(points, precision, s["table_hint"], [(m, 16) for m in s["models"]]),
            "table3": table_rows(points, precision, s["table_hint"], [(TABLE3_MODEL, b) for b in (1, 8, 16, 32)]),
            "sweep": sweep_rows(points, precision, s["sweep_clients"]) if with_suite("sweep", precision) else [],
        }
        report["precisions"][precision] = pr
        sub = f"1 synchronous client, PERFORMANCE_HINT={s['table_hint']}, {label}"
        for key, title, group in (("table1", "Table 1: batch 1", "model"), ("table2", "Table 2: batch 16", "model"),
                                  ("table3", f"Table 3: {TABLE3_MODEL} by batch", "batch")):
            rows = pr[key]
            names = [r["model"] if group == "model" else f"batch {r['batch']}" for r in rows]
            svg = bar_chart(title, sub, names, [r.get("served_img_s") for r in rows], [r.get("raw_img_s") for r in rows],
                            [r.get("tf_img_s") for r in rows] if has_tensorflow(rows) else None)
            name = f"charts/{key}-{precision}.svg"
            (out / name).write_text(svg)
            charts[f"{key}-{precision}"] = name
        if pr["sweep"]:
            svg = sweep_chart(f"Concurrency sweep: {TABLE3_MODEL}, batch 1",
                              f"PERFORMANCE_HINT={s['sweep_hint']}, {label}", pr["sweep"])
            name = f"charts/sweep-{precision}.svg"
            (out / name).write_text(svg)
            charts[f"sweep-{precision}"] = name
    if {"default", "f32"} <= report["precisions"].keys():
        comparison = []
        d, f32 = report["precisions"]["default"], report["precisions"]["f32"]
        for key in ("table1", "table2", "table3"):
            for a, b in zip(d[key], f32[key]):
                pair = (a["model"], a["batch"])
                if any((c["model"], c["batch"]) == pair for c in comparison):
                    continue
                comparison.append({"model": a["model"], "batch": a["batch"], "default": a.get("served_img_s"),
                                   "f32": b.get("served_img_s"), "speedup": ratio(a.get("served_img_s"), b.get("served_img_s"))})
        report["precision_comparison"] = comparison
    tf = tensorflow_summary(points)
    if tf:
        report["tensorflow"] = tf
    (out / "results.md").write_text(render_markdown(meta, report, charts))
    (out / "results.json").write_text(json.dumps({"meta": meta, "report": report, "points": points}, indent=2) + "\n")
    print(out / "results.md")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="record machine, versions and settings in OUT/meta.json")
    start.add_argument("out")
    for flag in ("--mode", "--precisions", "--hint", "--sweep-hint", "--clients", "--models",
                 "--protocol", "--model-dir", "--suites"):
        start.add_argument(flag, required=True)
    start.add_argument("--duration", type=float, required=True)
    start.add_argument("--warmup", type=float, required=True)
    start.add_argument("--target-clients", type=int, required=True)
    start.add_argument("--rounds", type=int, required=True)
    start.add_argument("--tensorflow", metavar="VERSION",
                       help="bench.sh --tensorflow: the TensorFlow version of the TF columns")
    render = sub.add_parser("render", help="write results.md, results.json and charts/ from OUT")
    render.add_argument("out")
    render.add_argument("--elapsed", type=float, help="wall time of the whole run, seconds")
    args = ap.parse_args(argv)
    {"start": cmd_start, "render": cmd_render}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
