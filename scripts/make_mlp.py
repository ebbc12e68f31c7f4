#!/usr/bin/env python3
"""An MLP with ReLU between its layers, random weights with a fixed seed and a dynamic batch
dimension, for the dynamic batching benchmark (docs/benchmarks.md).

By default 512 -> 2048 -> 2048 -> 256 (~5 M MACs per row), the model of issue #15. `--widths`
picks others: e.g. 512,256 (one matmul, next to no inference: the benchmark's transport floor)
or 1024,8192,8192,256 (an MLP whose inference outweighs receiving the requests).

Usage: python3 scripts/make_mlp.py [--widths 512,2048,2048,256] OUT/mlp/1/model.xml
       (needs `source scripts/env.sh`)
"""
import argparse

import numpy as np
import openvino as ov
from openvino import opset13 as ops

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("out", help="where the IR's model.xml goes (model.bin beside it)")
ap.add_argument("--widths", default="512,2048,2048,256",
                help="input width, then each layer's output width (default: %(default)s)")
args = ap.parse_args()
widths = [int(w) for w in args.widths.split(",")]
if len(widths) < 2 or min(widths) < 1:
    ap.error("--widths needs an input width and at least one layer, all positive")

rng = np.random.default_rng(0)
x = ops.parameter([-1, widths[0]], np.float32, name="x")
x.output(0).set_names({"x"})
h = x
layers = list(zip(widths, widths[1:]))
for i, (a, b) in enumerate(layers):
    w = ops.constant((rng.standard_normal((a, b)) * 0.02).astype(np.float32))
    h = ops.matmul(h, w, False, False)
    if i < len(layers) - 1:
        h = ops.relu(h)
h.output(0).set_names({"y"})
ov.save_model(ov.Model([h], [x], "mlp"), args.out, compress_to_fp16=False)
