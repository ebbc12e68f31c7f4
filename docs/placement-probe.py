#!/usr/bin/env python3
"""Where do OpenVINO's inference threads actually run? Evidence for docs/placement-experiments.md.

Runs one scenario in this process and reports, per thread (/proc/self/task/<tid>):
  allowed  Cpus_allowed_list (the hard affinity mask); "1>0|0-1 x19" = started as 1, then
           alternated between 0 and 0-1, 19 changes
  ran-on   CPUs seen in stat field 39 while the thread was in state R, sampled every 2 ms,
           grouped by the mask in force at that sample: "[0-1] cpu0:12 cpu1:70"
  cpu-s    CPU seconds (utime+stime) the thread used during the load phase
Threads that used < 0.05 CPU-s are left out. Python threads we start are labelled.

Usage (after `source scripts/env.sh`):
  python3 docs/placement-probe.py SCENARIO [--model XML] [--seconds S] [--pin-main CPUS]
Scenarios:
  plain        one LATENCY model, infer from the main thread
  compile-pin  compile_model from a thread pinned to CPU 1, infer from an unpinned thread;
               --init-first: touch the CPU plugin on the unpinned main thread beforehand
  two-models   two models (A, B) compiled on the main thread, two unpinned callers at once;
               --props KEY=VAL,... applies to both (e.g. ENABLE_CPU_RESERVATION=YES)
  caller-pin   two models, caller thread of A pinned to CPU 0 and of B to CPU 1;
               --props as above; --threads N sets INFERENCE_NUM_THREADS (default 1)
  init-pin     main thread pinned to CPU 1 while OpenVINO initialises and compiles, then
               widened back to 0-1; an unpinned caller (mask 0-1) infers
  reserve-cycle  ENABLE_CPU_RESERVATION=YES: compile A, B, then C with no CPU left; drop A
               and compile D (as a hot reload would); each runs a short load in turn
--pin-main CPUS sets the process's mask (sched_setaffinity on the only thread) before
OpenVINO is imported, like `taskset -c CPUS` does from outside.
"""
import argparse
import os
import sys
import threading
import time
from collections import Counter, defaultdict

ap = argparse.ArgumentParser()
ap.add_argument(
    "scenario", choices=["plain", "compile-pin", "two-models", "caller-pin", "init-pin", "reserve-cycle"]
)
ap.add_argument("--model", default="generated/models/resnet_v1_50/1/model.xml")
ap.add_argument("--seconds", type=float, default=4.0)
ap.add_argument("--pin-main", default=None)
ap.add_argument("--init-first", action="store_true")
ap.add_argument("--props", default="")
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()

if args.pin_main is not None:
    os.sched_setaffinity(0, {int(c) for c in args.pin_main.split(",")})

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402

LABELS = {os.getpid(): "main"}


def label(name):
    LABELS[threading.get_native_id()] = name


def read_task(tid):
    with open(f"/proc/self/task/{tid}/stat") as f:
        stat = f.read()
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2 :].split()  # rest[0] is field 3
    state, ticks, cpu = rest[0], int(rest[11]) + int(rest[12]), int(rest[36])
    with open(f"/proc/self/task/{tid}/status") as f:
        allowed = next(l.split(":")[1].strip() for l in f if l.startswith("Cpus_allowed_list"))
    return comm, state, ticks, cpu, allowed


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.stop_flag = threading.Event()
        self.ran = defaultdict(Counter)
        self.first, self.last, self.info, self.masks = {}, {}, {}, defaultdict(list)

    def run(self):
        label("sampler")
        me = threading.get_native_id()
        while not self.stop_flag.is_set():
            for tid in map(int, os.listdir("/proc/self/task")):
                try:
                    comm, state, ticks, cpu, allowed = read_task(tid)
                except (FileNotFoundError, ProcessLookupError, StopIteration):
                    continue
                self.first.setdefault(tid, ticks)
                self.last[tid] = ticks
                self.info[tid] = (comm, allowed)
                if not self.masks[tid] or self.masks[tid][-1] != allowed:
                    self.masks[tid].append(allowed)
                if state == "R" and tid != me:
                    self.ran[tid][(allowed, cpu)] += 1
            time.sleep(0.002)

    def report(self, title):
        hz = os.sysconf("SC_CLK_TCK")
        print(f"--- {title}")
        print(f"{'tid':>7} {'label':<12} {'comm':<16} {'allowed':<16} {'cpu-s':>6}  ran-on (samples)")
        for tid in sorted(self.info):
            used = (self.last[tid] - self.first[tid]) / hz
            if used < 0.05:
                continue
            comm, _ = self.info[tid]
            hist = self.masks[tid]  # e.g. "1>0|0-1 x19": started on 1, then flipped 19 times
            later = list(dict.fromkeys(hist[1:]))
            allowed = hist[0] + (f">{'|'.join(later)} x{len(hist) - 1}" if later else "")
            by_mask = defaultdict(list)  # running samples grouped by the mask in force
            for (mask, c), n in sorted(self.ran[tid].items()):
                by_mask[mask].append(f"cpu{c}:{n}")
            ran = "  ".join(f"[{m}] " + " ".join(v) for m, v in by_mask.items())
            print(f"{tid:>7} {LABELS.get(tid, '-'):<12} {comm:<16} {allowed:<16} {used:>6.2f}  {ran}")


def props(extra=None):
    p = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads}
    for kv in filter(None, args.props.split(",")):
        k, v = kv.split("=")
        p[k] = v
    p.update(extra or {})
    return p


def describe(name, compiled):
    keys = ["INFERENCE_NUM_THREADS", "NUM_STREAMS", "ENABLE_CPU_PINNING", "ENABLE_CPU_RESERVATION"]
    print(f"{name}: " + " ".join(f"{k}={compiled.get_property(k)}" for k in keys))


X = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)


def warm(compiled):
    """An infer request with one inference done, made on the calling thread. Done before
    starting concurrent callers: two threads making their first request at once deadlocked
    the Python binding here (one thread in a C++ static-init guard holding the GIL, the
    other in std::call_once waiting for the GIL)."""
    req = compiled.create_infer_request()
    req.infer({0: X})
    return req


def load(req, name, seconds, pin=None, out=None):
    """Closed-loop infer for `seconds` on the calling thread."""
    label(name)
    if pin is not None:
        os.sched_setaffinity(0, pin)
    x = X
    n, end = 0, time.time() + seconds
    while time.time() < end:
        req.infer({0: x})
        n += 1
    if out is not None:
        out[name] = n


def run_threads(jobs):
    counts = {}
    ts = [threading.Thread(target=load, args=(*j, counts)) for j in jobs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


core = ov.Core()
print(f"openvino {ov.__version__}; process mask {sorted(os.sched_getaffinity(0))}")
sampler = Sampler()
sampler.start()

if args.scenario == "plain":
    m = core.compile_model(args.model, "CPU", props())
    describe("model", m)
    print("main thread mask after compile_model:", sorted(os.sched_getaffinity(0)))
    t = time.time()
    load(warm(m), "main", args.seconds)
    print("main thread mask after infer:", sorted(os.sched_getaffinity(0)))
    sampler.report(f"one model, caller = main thread ({time.time() - t:.1f}s)")

elif args.scenario == "compile-pin":
    if args.init_first:
        print("CPU plugin touched on the unpinned main thread first:", core.get_property("CPU", "FULL_DEVICE_NAME"))
    box = {}

    def compile_pinned():
        label("compiler")
        os.sched_setaffinity(0, {1})
        box["m"] = core.compile_model(args.model, "CPU", props())
        # The compiling thread also runs a short load while still pinned.
        box["r"] = warm(box["m"])
        load(box["r"], "compiler", args.seconds / 2)

    t = threading.Thread(target=compile_pinned)
    t.start()
    t.join()
    describe("model", box["m"])
    counts = run_threads([(box["r"], "caller", args.seconds, None)])
    sampler.report(f"compiled on a thread pinned to CPU 1; then an unpinned caller; {counts}")

elif args.scenario in ("two-models", "caller-pin"):
    a = core.compile_model(args.model, "CPU", props())
    describe("A", a)
    b = core.compile_model(args.model, "CPU", props())
    describe("B", b)
    pins = ({0}, {1}) if args.scenario == "caller-pin" else (None, None)
    ra, rb = warm(a), warm(b)
    counts = run_threads([(ra, "caller-A", args.seconds, pins[0]), (rb, "caller-B", args.seconds, pins[1])])
    sampler.report(f"two models under concurrent load, caller pins {pins}; infers {counts}")

elif args.scenario == "init-pin":
    os.sched_setaffinity(0, {1})
    print("CPU plugin initialised with main pinned to CPU 1:", core.get_property("CPU", "FULL_DEVICE_NAME"))
    m = core.compile_model(args.model, "CPU", props())
    describe("model", m)
    r = warm(m)
    os.sched_setaffinity(0, {0, 1})
    counts = run_threads([(r, "caller", args.seconds, None)])
    sampler.report(f"OpenVINO initialised under mask 1, caller mask 0-1; {counts}")

elif args.scenario == "reserve-cycle":
    reserve = props({"ENABLE_CPU_RESERVATION": "YES"})
    models = {}
    for name in ["A", "B", "C"]:
        try:
            models[name] = core.compile_model(args.model, "CPU", reserve)
        except RuntimeError as e:
            print(f"{name}: compile_model failed: {str(e).strip().splitlines()[-1]}")
            continue
        describe(name, models[name])
        run_threads([(warm(models[name]), name, args.seconds / 4, None)])
    del models["A"]
    import gc

    gc.collect()
    models["D"] = core.compile_model(args.model, "CPU", reserve)
    describe("D (after dropping A)", models["D"])
    run_threads([(warm(models["D"]), "D", args.seconds / 4, None)])
    sampler.report("reservation: A, B, C compiled in turn; A dropped; D compiled")

sampler.stop_flag.set()
sys.stdout.flush()
