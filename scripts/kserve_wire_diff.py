#!/usr/bin/env python3
"""KServe REST answers, byte for byte, from two server binaries (e.g. before and after a change
to how answers are written): the same requests (JSON and binary-data inputs and outputs, every
fixture dtype, NaN/Inf/-0.0/denormals, ids with escapes, output filters, errors) to both; status,
headers (but Date) and body bytes must be identical. Stdlib only; loopback only.

Usage: source scripts/env.sh; scripts/kserve_wire_diff.py BINARY_A BINARY_B
"""
import http.client
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import json_memory as jm  # noqa: E402  (its Server class starts a binary on a repository)

models = ["identity", "add", "two_io", "int64", "half", "uint8", "dynamic", "image_stats"]
def req(inputs, **extra):
    return json.dumps({"inputs": inputs, **extra}).encode()
f32 = lambda vals: struct.pack("<%df" % len(vals), *vals)
odd = [0.1, -0.0, float("nan"), float("inf"), float("-inf"), 1e-45, 3.4028235e38, 1.0/3, 16777217.0, -2.5]
cases = [
  ("identity", req([{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [0.1, 0.2, 1e-7, 1e7, 123456.789, -0.0, 5e-39, 1.5, 2, 3]}]), None),
  ("identity", None, odd),  # binary input with NaN/Inf/-0/denormal, JSON answer
  ("identity", "binout", odd),
  ("add", req([{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [[1,2,3,4,5,6,7,8,9,10]]}], id="r-1"), None),
  ("add", req([{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))}], id="a\"b\\c\u00e9", parameters={"binary_data_output": True}), None),
  ("two_io", req([{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1,2,3,4]}, {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [0.5,0.25,0.125,3]}],
                 outputs=[{"name": "product", "parameters": {"binary_data": True}}, {"name": "sum"}]), None),
  ("two_io", req([{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1,2,3,4]}, {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [0.5,0.25,0.125,3]}],
                 outputs=[{"name": "sum"}]), None),
  ("int64", req([{"name": "x", "shape": [1, 5], "datatype": "INT64", "data": [1, -2, 3, 1000000, -7]}]), None),
  ("half", req([{"name": "x", "shape": [1, 4], "datatype": "FP16", "data": [0.1, 1.5, -3, 65000]}]), None),
  ("uint8", req([{"name": "x", "shape": [1, 6], "datatype": "UINT8", "data": [0, 1, 254, 255, 7, 8]}]), None),
  ("dynamic", req([{"name": "x", "shape": [3, 8], "datatype": "FP32", "data": [i * 0.1 for i in range(24)]}]), None),
  ("dynamic", req([{"name": "x", "shape": [0, 8], "datatype": "FP32", "data": []}]), None),
  ("image_stats", req([{"name": "image", "shape": [1, 32, 32, 3], "datatype": "UINT8", "data": [i % 256 for i in range(3072)]}]), None),
  ("nosuch", req([]), None),
  ("add", b"{not json", None),
]
def post(server, model, body, headers):
    c = http.client.HTTPConnection(server.host, server.port, timeout=60)
    c.request("POST", f"/v2/models/{model}/infer", body, headers)
    r = c.getresponse()
    data = r.read()
    hs = sorted((k, v) for k, v in r.getheaders() if k.lower() != "date")
    c.close()
    return r.status, hs, data
with tempfile.TemporaryDirectory() as repo:
    repo = Path(repo)
    for m in models:
        shutil.copytree(jm.ROOT / "tests/fixtures/models" / m, repo / "models" / m)
    (repo / "config.json").write_text(json.dumps({"model_config_list": [{"config": {"name": m, "base_path": f"models/{m}"}} for m in models]}))
    a, b = jm.Server(sys.argv[1], repo), jm.Server(sys.argv[2], repo)
    try:
        same = 0
        for model, body, binary in cases:
            headers = {"Content-Type": "application/json"}
            if binary is not None:
                params = {"binary_data_output": True} if body == "binout" else {}
                header = json.dumps({"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": 40}}], "parameters": params}).encode()
                headers["Inference-Header-Content-Length"] = str(len(header))
                body = header + f32(binary)
            ra, rb = post(a, model, body, headers), post(b, model, body, headers)
            if ra == rb:
                same += 1
            else:
                print("DIFF", model, ra, rb)
            print(ra[0], ra[2][:160])
        print(f"{same} of {len(cases)} identical (status, headers but Date, body bytes)")
        sys.exit(0 if same == len(cases) else 1)
    finally:
        a.stop(); b.stop()
