#!/usr/bin/env python3
"""Memory and latency of large REST JSON bodies (#16 item 3), for one or more server binaries.

Starts each binary on 127.0.0.1 with the `image_stats_f32` fixture ([-1,32,32,3] FP32 in, two
[N,3] outputs: the response is small, so what is measured is the request's decoding) and the `add`
fixture, then, alternating between the binaries, posts a TFS row-format body and a KServe v2 JSON
body of about --mb MB each, then the TFS body to `add`, which decodes it in full and refuses it
(400: shape), so that its window holds the upload and the decoding but no inference.
`--bodies dynamic` (TFS) and `--bodies kserve-dynamic` (KServe `data`) post rows of 8 to the
`dynamic` fixture instead, whose answer is as large as the request. Per request it reads the server's /proc/PID/status: VmRSS before,
VmHWM (peak; reset through /proc/PID/clear_refs before the request), VmRSS right after the answer
and again after --settle seconds. Meanwhile two clients post small `add` predicts on their own
keep-alive connections; their latencies while the big body is in flight are compared with an idle
window just before, and split into the upload (until the client's send returns) and what follows
(decoding, inference, the answer). `--bodies unread` posts the TFS body to an unknown model:
read in full, refused before decoding. Stdlib only; loopback only.

Usage: scripts/json_memory.py [--mb 100] [--rounds 2] [--settle 2] NAME=BINARY [NAME=BINARY ...]
"""
import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


class Server:
    def __init__(self, binary: str, repo: Path, extra: list = ()):
        self.sent = 0.0
        self.process = subprocess.Popen(
            [binary, *extra, "--config_path", str(repo / "config.json"), "--port", "0", "--rest_port", "0",
             "--grpc_bind_address", "127.0.0.1", "--rest_bind_address", "127.0.0.1",
             "--max_json_body_size", str(1 << 30), "--log_level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.rest = None
        for line in self.process.stdout:
            if line.startswith("vinoserve: REST listening on "):
                self.rest = line.split()[-1]
            elif line.startswith("vinoserve: models loaded"):
                break
        host, port = self.rest.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def status_kib(self, field: str) -> int:
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", text).group(1))

    def reset_peak(self):
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def post(self, path: str, body: bytes, timeout: float = 600) -> tuple:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        # The body is in the kernel's buffers (a few MB on loopback): about when the server has
        # read it, so what follows is the decoding (and inference) and the answer.
        self.sent = time.monotonic()
        answer = connection.getresponse()
        data = answer.read()
        connection.close()
        return answer.status, data

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def tfs_body(mb: int) -> bytes:
    values = ["0.25", "0.5", "0.75", "1.0", "0.125"]
    pixel = lambda i: "[" + ",".join(values[(i + c) % 5] for c in range(3)) + "]"
    row = lambda y: "[" + ",".join(pixel(x + y) for x in range(32)) + "]"
    image = "[" + ",".join(row(y) for y in range(32)) + "]"
    count = max(1, mb * MIB // (len(image) + 1))
    return ('{"instances": [' + ",".join([image] * count) + "]}").encode()


def kserve_body(mb: int) -> bytes:
    values = ["0.25", "0.5", "0.75", "1.0", "0.125"]
    image = ",".join(values[i % 5] for i in range(32 * 32 * 3))
    count = max(1, mb * MIB // (len(image) + 1))
    data = ",".join([image] * count)
    return ('{"inputs": [{"name": "image", "shape": [%d, 32, 32, 3], "datatype": "FP32", "data": [%s]}]}'
            % (count, data)).encode()


def rows_of_8_body(mb: int) -> bytes:
    """For `dynamic` ([-1,8] in, y = 3x out): an answer as large as the request."""
    row = "[" + ",".join(["0.25", "0.5", "0.75", "1.0", "0.125", "0.25", "0.5", "0.75"]) + "]"
    count = max(1, mb * MIB // (len(row) + 1))
    return ('{"instances": [' + ",".join([row] * count) + "]}").encode()


def kserve_rows_of_8_body(mb: int) -> bytes:
    """For `dynamic` over KServe v2: an answer (`data`) as large as the request."""
    row = ",".join(["0.25", "0.5", "0.75", "1.0", "0.125", "0.25", "0.5", "0.75"])
    count = max(1, mb * MIB // (len(row) + 1))
    return ('{"inputs": [{"name": "x", "shape": [%d, 8], "datatype": "FP32", "data": [%s]}]}'
            % (count, ",".join([row] * count))).encode()


HOG = ("import os, time\nnice = os.environ['HOG_NICE']\n"
       "if nice == 'idle':\n    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
       "else:\n    os.nice(int(nice))\n"
       "end = time.monotonic() + float(os.environ['HOG_S'])\n"
       "while time.monotonic() < end:\n    pass\n")


def cpu_hog(server: Server, hog: tuple) -> tuple:
    """The decoding window's floor: one thread as busy and as nice as a large body's decoding
    thread, in another process, with no body at all. What small requests' latency is then is the
    machine's (the kernel's scheduler on these cores), not the server's."""
    seconds, nice = hog
    server.sent = time.monotonic()
    subprocess.run([sys.executable, "-c", HOG], env={"HOG_S": str(seconds), "HOG_NICE": str(nice)},
                   check=True)
    return 0, b""


SMALL = json.dumps({"instances": [[0.5] * 10]}).encode()


def small_client(server: Server, stop: threading.Event, out: list):
    """Small predicts on one keep-alive connection; (start time, latency s) per answer."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    while not stop.is_set():
        start = time.monotonic()
        try:
            connection.request("POST", "/v1/models/add:predict", SMALL,
                               {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            ok = answer.status == 200
        except Exception:
            ok = False
            connection.close()
            connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
        out.append((start, time.monotonic() - start, ok))
    connection.close()


def percentile(values: list, p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def measure(server: Server, path: str, body: bytes, settle: float) -> dict:
    samples = []
    stop = threading.Event()
    clients = [threading.Thread(target=small_client, args=(server, stop, samples)) for _ in range(2)]
    for c in clients:
        c.start()
    time.sleep(1.0)  # warm the small clients' connections
    # Idle window, then the big request; the idle window is as long as the big request takes.
    idle_start = time.monotonic()
    time.sleep(3.0)
    rss_before = server.status_kib("VmRSS")
    server.reset_peak()
    start = time.monotonic()
    status, answer = server.post(path, body) if path else cpu_hog(server, body)
    took = time.monotonic() - start
    rss_after = server.status_kib("VmRSS")
    peak = server.status_kib("VmHWM")
    stop.set()
    for c in clients:
        c.join()
    time.sleep(settle)
    rss_settled = server.status_kib("VmRSS")
    idle = [lat for (t, lat, ok) in samples if idle_start <= t < idle_start + 3.0]
    busy = [lat for (t, lat, ok) in samples if start <= t < start + took]
    upload = [lat for (t, lat, ok) in samples if start <= t < server.sent]
    after_upload = [lat for (t, lat, ok) in samples if server.sent <= t < start + took]
    errors = sum(1 for (t, lat, ok) in samples if not ok and start <= t < start + took)
    return {
        "status": status, "answer": answer[:120], "seconds": took,
        "rss_before_mib": rss_before / 1024, "peak_mib": peak / 1024,
        "rss_after_mib": rss_after / 1024, "rss_settled_mib": rss_settled / 1024,
        "peak_extra_x": (peak - rss_before) * 1024 / len(body) if path else 0.0,
        "idle_p50_ms": percentile(idle, 50) * 1e3, "idle_p99_ms": percentile(idle, 99) * 1e3,
        "busy_p50_ms": percentile(busy, 50) * 1e3, "busy_p99_ms": percentile(busy, 99) * 1e3,
        "busy_n": len(busy), "busy_errors": errors,
        "upload_s": server.sent - start,
        "upload_p99_ms": percentile(upload, 99) * 1e3, "upload_n": len(upload),
        "after_upload_p99_ms": percentile(after_upload, 99) * 1e3, "after_upload_n": len(after_upload),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--bodies", default="tfs,kserve,refused",
                        help="comma-separated: tfs, kserve, refused, unread, dynamic, kserve-dynamic "
                             "(those two: an answer as large as the request), hog (no body: the "
                             "decoding window's floor)")
    parser.add_argument("--hog-seconds", type=float, default=1.5,
                        help="how long the `hog` side's busy loop runs (about a 100 MB body's decoding)")
    parser.add_argument("--hog-nice", default="19",
                        help="the `hog` side's nice value (a large body's decoding thread starts at 19, "
                             "or stays at 10 where priorities cannot be raised), or `idle` for SCHED_IDLE")
    parser.add_argument("--server-args", default="", help="more flags for every server, e.g. '--rest_workers 4'")
    parser.add_argument("binaries", nargs="+", help="NAME=PATH")
    args = parser.parse_args()
    wanted = args.bodies.split(",")
    tfs = tfs_body(args.mb) if {"tfs", "refused", "unread"} & set(wanted) else None
    # `refused` is decoded in full, then refused (`add` takes [1,10]): its window is the
    # upload and the decoding alone, without the inference on thousands of images.
    makers = {
        "tfs": lambda: ("TFS rows", "/v1/models/image_stats_f32:predict", tfs),
        "kserve": lambda: ("KServe data", "/v2/models/image_stats_f32/infer", kserve_body(args.mb)),
        "refused": lambda: ("TFS rows, refused after decoding", "/v1/models/add:predict", tfs),
        # Read in full, then refused before decoding (404): the upload's share of the window.
        "unread": lambda: ("TFS rows to an unknown model, read but not decoded",
                           "/v1/models/unknown:predict", tfs),
        "dynamic": lambda: ("TFS rows, answer as large", "/v1/models/dynamic:predict",
                            rows_of_8_body(args.mb)),
        "kserve-dynamic": lambda: ("KServe data, answer as large", "/v2/models/dynamic/infer",
                                   kserve_rows_of_8_body(args.mb)),
        # No request: a busy loop in another process for --hog-seconds (the floor).
        "hog": lambda: (f"no body: a nice-{args.hog_nice} CPU hog in another process", None,
                        (args.hog_seconds, args.hog_nice)),
    }
    bodies = [makers[name]() for name in wanted]
    with tempfile.TemporaryDirectory() as repo:
        repo = Path(repo)
        config = []
        for name in ("image_stats_f32", "add", "dynamic"):
            shutil.copytree(ROOT / "tests/fixtures/models" / name, repo / "models" / name)
            config.append({"config": {"name": name, "base_path": f"models/{name}"}})
        (repo / "config.json").write_text(json.dumps({"model_config_list": config}))
        servers = [(name, Server(path, repo, args.server_args.split())) for name, path in
                   (b.split("=", 1) for b in args.binaries)]
        print("| binary | body | MB | status | s | RSS before MiB | peak MiB | peak extra ÷ body "
              "| RSS after MiB | after settle MiB | small p50/p99 idle ms | small p50/p99 busy ms (n, errors) "
              "| upload s | small p99 ms during upload (n) | small p99 ms after upload (n) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        try:
            for _ in range(args.rounds):
                for label, path, body in bodies:
                    for name, server in servers:
                        r = measure(server, path, body, args.settle)
                        if path and r["status"] != 200 and "add" not in path and "unknown" not in path:
                            print(f"  {name} {label}: HTTP {r['status']} {r['answer']!r}", file=sys.stderr)
                        print(f"| {name} | {label} | {len(body) / MIB if path else 0:.0f} | {r['status']} | {r['seconds']:.1f} "
                              f"| {r['rss_before_mib']:.0f} | {r['peak_mib']:.0f} | {r['peak_extra_x']:.2f} "
                              f"| {r['rss_after_mib']:.0f} | {r['rss_settled_mib']:.0f} "
                              f"| {r['idle_p50_ms']:.1f} / {r['idle_p99_ms']:.1f} "
                              f"| {r['busy_p50_ms']:.1f} / {r['busy_p99_ms']:.1f} ({r['busy_n']}, {r['busy_errors']}) "
                              f"| {r['upload_s']:.2f} | {r['upload_p99_ms']:.1f} ({r['upload_n']}) "
                              f"| {r['after_upload_p99_ms']:.1f} ({r['after_upload_n']}) |",
                              flush=True)
        finally:
            for _, server in servers:
                server.stop()


if __name__ == "__main__":
    main()
