#!/usr/bin/env python3
"""A bounded soak of hostile clients against a server under normal load (#16).

Starts vinoserve (target/release/vinoserve, else target/debug) on 127.0.0.1 with the `add`
fixture under `prlimit --nofile=1024`, and for each probe runs the load generator (4 closed-loop
gRPC clients) alongside it; prints, per probe, normal traffic's answers, errors and p99, and the
server's RSS, open descriptors and CPU seconds before and after. The last probe runs on a second
server started with a topology (`add` in a placement worker pinned to CPU 1) and SIGKILLs that
worker under the load. Stdlib only; loopback only; every loop is bounded in count and time.

Usage: scripts/abuse.sh [--seconds N] [--only TEXT]   (N: each probe's window, default 8)
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def binary(name: str) -> Path:
    # VINOSERVE=path runs another server build (e.g. one from before a change) with this soak.
    if name == "vinoserve" and os.environ.get("VINOSERVE"):
        return Path(os.environ["VINOSERVE"])
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / name
        if path.is_file():
            return path
    sys.exit(f"abuse.py: no {name}; build it first (cargo build --release)")


def loadgen() -> Path:
    for profile in ("release", "debug"):
        found = sorted((ROOT / "target" / profile / "deps").glob("loadgen-*"))
        found = [p for p in found if p.suffix == "" and os.access(p, os.X_OK)]
        if found:
            return found[-1]
    sys.exit("abuse.py: no loadgen; build it first (cargo build --release --benches)")


class Server:
    def __init__(self, repo: Path, extra: list = ()):
        self.process = subprocess.Popen(
            ["prlimit", "--nofile=1024", "--", str(binary("vinoserve")), *extra,
             "--config_path", str(repo / "config.json"),
             "--port", "0", "--rest_port", "0",
             "--grpc_bind_address", "127.0.0.1", "--rest_bind_address", "127.0.0.1",
             "--body_timeout_seconds", "5", "--handshake_timeout_seconds", "5",
             "--send_timeout_seconds", "5",
             "--max_json_body_size", str(8 << 20), "--log_level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.grpc = self.rest = None
        for line in self.process.stdout:
            if line.startswith("vinoserve: gRPC listening on "):
                self.grpc = line.split()[-1]
            elif line.startswith("vinoserve: REST listening on "):
                self.rest = line.split()[-1]
            elif line.startswith("vinoserve: models loaded"):
                break
        if self.rest is None:
            sys.exit("abuse.py: the server did not start; run it by hand to see why")

    def pid(self) -> int:
        # prlimit execs the server: same pid.
        return self.process.pid

    def status_kib(self, field: str) -> int:
        status = Path(f"/proc/{self.pid()}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", status).group(1))

    def reset_peak(self):
        """Restarts VmHWM (the peak RSS) from the current RSS."""
        Path(f"/proc/{self.pid()}/clear_refs").write_text("5")

    def vitals(self) -> dict:
        status = Path(f"/proc/{self.pid()}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) // 1024
        fds = len(os.listdir(f"/proc/{self.pid()}/fd"))
        fields = Path(f"/proc/{self.pid()}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        metrics = urllib.request.urlopen(f"http://{self.rest}/metrics", timeout=30).read()
        return {"rss_mib": rss, "fds": fds, "cpu_s": cpu, "metrics_kb": len(metrics) // 1024}

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def normal_load(server: Server, seconds: int, out: dict):
    """4 closed-loop clients for `seconds`; fills `out` with req/s, errors, p99 and max ms."""
    result = subprocess.run(
        [str(loadgen()), "--grpc", server.grpc, "--model", "add", "--input", "x",
         "--shape", "1,10", "--clients", "4", "--duration", str(seconds), "--warmup", "0",
         "--json"],
        capture_output=True, text=True, timeout=seconds + 120,
    )
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
            out.update({k: report.get(k) for k in ("req_per_s", "errors", "p99_ms", "max_ms")})


# ------------------------------------------------------------------ probes (each bounded)

def unknown_names(server: Server, stop: float):
    n = 0
    while time.time() < stop and n < 20000:
        try:
            urllib.request.urlopen(f"http://{server.rest}/v1/models/u{n}%00", timeout=10)
        except Exception:
            pass
        n += 1
    return f"{n} sent"


def post(url: str, body: bytes, timeout: int):
    """POSTs `body` to `url`; answers and errors are expected."""
    try:
        urllib.request.urlopen(url, body, timeout=timeout)
    except Exception:
        pass


def post_until(stop: float, url: str, body: bytes, timeout: int):
    """POSTs `body` to `url` again and again until `stop`."""
    while time.time() < stop:
        post(url, body, timeout)


def huge_echo(server: Server, stop: float):
    body = json.dumps({"signature_name": "s" * (5 << 20), "instances": [[0] * 10]}).encode()
    post_until(stop, f"http://{server.rest}/v1/models/add:predict", body, 30)


def big_json(server: Server, stop: float):
    """Over the budget (413 before decoding) and just under it (decoded in full, then refused:
    `add` takes one row); reports the peak RSS growth over the decoded body's size."""
    row = "[" + ",".join(["0.5"] * 10) + "]"
    over = ('{"instances": [' + ",".join([row] * 1_000_000) + "]}").encode()  # ~45 MB
    within = ('{"instances": [' + ",".join([row] * 150_000) + "]}").encode()  # ~6.8 MB
    url = f"http://{server.rest}/v1/models/add:predict"
    rss = server.status_kib("VmRSS")
    server.reset_peak()
    sent = 0
    while time.time() < stop:
        post(url, over, 60)
        post(url, within, 60)
        sent += 1
    growth = (server.status_kib("VmHWM") - rss) * 1024
    return (f"{sent} of each; peak RSS +{growth / (1 << 20):.0f} MiB = "
            f"{growth / len(within):.1f}× a decoded body")


def slow_bodies(server: Server, stop: float):
    host, port = server.rest.rsplit(":", 1)
    sockets = []
    for _ in range(200):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
        sockets.append(s)
    while time.time() < stop:
        for s in sockets:
            try:
                s.send(b" ")
            except OSError:
                pass
        time.sleep(1)
    for s in sockets:
        s.close()


def silent_connections(server: Server, stop: float):
    host, port = server.grpc.rsplit(":", 1)
    sockets = [socket.create_connection((host, int(port))) for _ in range(300)]
    while time.time() < stop:
        time.sleep(0.2)
    for s in sockets:
        s.close()


def descriptor_flood(server: Server, stop: float):
    host, port = server.grpc.rsplit(":", 1)
    sockets = []
    for _ in range(1200):
        try:
            sockets.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError:
            break
    while time.time() < stop:
        time.sleep(0.2)
    for s in sockets:
        s.close()


def server_sockets(rest: str, client_ports: set) -> int:
    """How many of these client ports still have a socket on the server's REST port."""
    port = int(rest.rsplit(":", 1)[1])
    found = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
        found += local == port and remote in client_ports
    return found


def unread_answers(server: Server, stop: float):
    """30 REST clients ask for a 4 MB answer each and never read it."""
    host, port = server.rest.rsplit(":", 1)
    rows = 125_000
    body = ('{"inputs":[{"name":"x","shape":[%d,8],"datatype":"FP32","data":[%s]}]}'
            % (rows, ",".join(["0"] * (rows * 8)))).encode()
    head = ("POST /v2/models/dynamic/infer HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)).encode()
    sockets = []
    for _ in range(30):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, int(port)))
        s.sendall(head + body)
        sockets.append(s)
    ports = {s.getsockname()[1] for s in sockets}
    while time.time() < stop:
        time.sleep(0.2)
    # Held past the server's send timeout (5 s), then closed: what is left open server-side
    # is what the timeout did not free.
    time.sleep(6)
    left = server_sockets(server.rest, ports)
    for s in sockets:
        s.close()
    return f"30 sent, {30 - left} disconnected by the server"


# HTTP/2 by hand (stdlib only): frame types and the bits of HPACK and protobuf the probe needs.
DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(name: str, value: str) -> bytes:
    """A header as "literal without indexing, new name", no Huffman (lengths below 127)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def proto_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def zero_window_call(host: str, port: int, message: bytes, hold_until: float, out: list):
    """One connection: a ModelInfer whose answer the client never grants a byte of window
    (SETTINGS_INITIAL_WINDOW_SIZE 0), while it answers PINGs and acknowledges SETTINGS like
    a live client. Appends "closed" if the server closes the connection before `hold_until`."""
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
              + h2_frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (0).to_bytes(4, "big")))
    headers = b"".join(hpack_literal(k, v) for k, v in (
        (":method", "POST"), (":scheme", "http"), (":authority", "abuse"),
        (":path", "/inference.GRPCInferenceService/ModelInfer"),
        ("content-type", "application/grpc"), ("te", "trailers")))
    s.sendall(h2_frame(HEADERS, END_HEADERS, 1, headers))
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    sent, conn_window, stream_window, initial = 0, 65535, 65535, 65535
    buffered = b""
    while time.time() < hold_until:
        while sent < len(body) and min(conn_window, stream_window) > 0:
            n = min(16384, len(body) - sent, conn_window, stream_window)
            last = END_STREAM if sent + n == len(body) else 0
            s.sendall(h2_frame(DATA, last, 1, body[sent:sent + n]))
            sent, conn_window, stream_window = sent + n, conn_window - n, stream_window - n
        s.settimeout(max(0.01, min(1.0, hold_until - time.time())))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            out.append("closed")
            break
        buffered += chunk
        while len(buffered) >= 9 and len(buffered) >= 9 + int.from_bytes(buffered[:3], "big"):
            length = int.from_bytes(buffered[:3], "big")
            kind, flags, stream = buffered[3], buffered[4], int.from_bytes(buffered[5:9], "big") & 0x7FFFFFFF
            payload, buffered = buffered[9:9 + length], buffered[9 + length:]
            if kind == SETTINGS and not flags & ACK:
                for i in range(0, len(payload), 6):
                    if int.from_bytes(payload[i:i + 2], "big") == 4:
                        new = int.from_bytes(payload[i + 2:i + 6], "big")
                        stream_window, initial = stream_window + new - initial, new
                s.sendall(h2_frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                s.sendall(h2_frame(PING, ACK, 0, payload))
            elif kind == WINDOW_UPDATE:
                increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                if stream == 0:
                    conn_window += increment
                else:
                    stream_window += increment
            elif kind == GOAWAY:
                pass  # the server may still serve the open stream; the close is what counts
    s.close()


def zero_window_answers(server: Server, stop: float):
    """10 gRPC clients ask for a 4 MiB answer each and never grant it HTTP/2 window."""
    host, port = server.grpc.rsplit(":", 1)
    rows = 131_072  # [rows, 8] FP32: 4 MiB in, 4 MiB out
    tensor = proto_field(1, b"x") + proto_field(2, b"FP32") + proto_field(3, varint(rows) + varint(8))
    message = proto_field(1, b"dynamic") + proto_field(5, tensor) + proto_field(7, bytes(rows * 32))
    # Held past the server's send timeout (5 s): a connection still open then is one it kept.
    hold_until = stop + 6
    closed, threads = [], []
    for _ in range(10):
        t = threading.Thread(target=zero_window_call, args=(host, int(port), message, hold_until, closed))
        t.start()
        threads.append(t)
    time.sleep(max(0.0, hold_until - 1 - time.time()))
    held_mib = server.status_kib("VmRSS") // 1024
    for t in threads:
        t.join(timeout=60)
    return f"10 sent, {len(closed)} disconnected by the server, RSS {held_mib} MiB while held"


def get_json(url: str):
    return json.loads(urllib.request.urlopen(url, timeout=30).read())


def worker_of(server: Server, model: str) -> tuple:
    """(pid, restarts) of the placement worker serving `model`, from GET /v1/placement."""
    for entry in get_json(f"http://{server.rest}/v1/placement")["models"]:
        if entry["name"] == model:
            return entry.get("worker_pid"), entry["worker_restarts"]
    sys.exit(f"abuse.py: {model} is not in the placement")


def kill_workers(server: Server, stop: float):
    """SIGKILLs `add`'s placement worker, waits for its replacement, and again until `stop`."""
    kills, back_ms = 0, []
    while time.time() < stop:
        time.sleep(1)  # load on the running worker first
        pid, restarts = worker_of(server, "add")
        if pid is None:
            continue
        os.kill(pid, 9)
        killed = time.monotonic()
        kills += 1
        # Back when /v1/placement shows a new worker; bounded like everything here.
        while time.monotonic() - killed < 60:
            now, count = worker_of(server, "add")
            if now not in (None, pid) and count > restarts:
                back_ms.append((time.monotonic() - killed) * 1e3)
                break
            time.sleep(0.01)
    slowest = f", each back within {max(back_ms):.0f} ms" if back_ms else ""
    return f"{kills} kills, {len(back_ms)} replacements{slowest}"


# (name, probe, on the server with a topology)
PROBES = [
    ("baseline (no probe)", None, False),
    ("unknown model names (at most 20,000)", unknown_names, False),
    ("5 MB signature_name echoes", huge_echo, False),
    ("45 MB and 6.8 MB JSON bodies (budget 8 MB)", big_json, False),
    ("200 trickling REST bodies", slow_bodies, False),
    ("300 silent gRPC connections", silent_connections, False),
    ("1,200 connections, 1,024 descriptors", descriptor_flood, False),
    ("4 MB answers never read (send timeout 5 s)", unread_answers, False),
    ("4 MiB gRPC answers granted no HTTP/2 window (send timeout 5 s)", zero_window_answers, False),
    ("with a topology: baseline (no probe)", None, True),
    ("with a topology: placement worker SIGKILLed", kill_workers, True),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--only", default="", help="run only the probes whose name contains this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as repo:
        repo = Path(repo)
        for model in ("add", "dynamic"):
            shutil.copytree(ROOT / "tests/fixtures/models" / model, repo / "models" / model)
        (repo / "config.json").write_text(
            '{"model_config_list": ['
            '{"config": {"name": "add", "base_path": "models/add"}},'
            '{"config": {"name": "dynamic", "base_path": "models/dynamic"}}]}'
        )
        # Every model needs a place: `add` (the one under load and killed) on CPU 1.
        (repo / "topology.toml").write_text(
            "[models.add]\nnode = 0\ncore_ids = [1]\n\n[models.dynamic]\nnode = 0\ncore_ids = [0]\n"
        )
        servers = {False: Server(repo)}
        print("| probe | normal req/s | normal errors | normal p99 ms | normal max ms | RSS MiB | fds "
              "| CPU s | /metrics KB |")
        print("|---|---|---|---|---|---|---|---|---|")
        try:
            for name, probe, placed in PROBES:
                if args.only not in name:
                    continue
                if placed and len(os.sched_getaffinity(0)) < 2:
                    print(f"| {name}: SKIPPED, the topology needs CPUs 0 and 1 | | | | | | | | |")
                    continue
                if placed not in servers:
                    servers[False].stop()
                    servers[True] = Server(repo, ["--topology", str(repo / "topology.toml")])
                server = servers[placed]
                before = server.vitals()
                load = {}
                loader = threading.Thread(target=normal_load, args=(server, args.seconds, load))
                loader.start()
                done = probe(server, time.time() + args.seconds) if probe else None
                if done:
                    name = f"{name}: {done}"
                loader.join()
                time.sleep(6)  # past the server's 5 s timeouts, so what they free is freed
                after = server.vitals()
                delta = lambda k: f"{before[k]} → {after[k]}"
                ms = lambda k: f"{load[k]:.2f}" if isinstance(load.get(k), (int, float)) else "?"
                print(f"| {name} | {load.get('req_per_s', 0):.0f} | {load.get('errors', '?')} | "
                      f"{ms('p99_ms')} | {ms('max_ms')} | {delta('rss_mib')} | {delta('fds')} | "
                      f"{after['cpu_s'] - before['cpu_s']:.1f} | {delta('metrics_kb')} |", flush=True)
        finally:
            for server in servers.values():
                if server.process.poll() is None:
                    server.stop()


if __name__ == "__main__":
    main()
