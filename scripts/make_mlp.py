#!/usr/bin/env python3
"""A 3-layer MLP (512 -> 2048 -> 2048 -> 256, ReLU, random weights with a fixed seed, dynamic
batch dimension) for the dynamic batching benchmark (docs/benchmarks.md).

Usage: python3 scripts/make_mlp.py OUT/mlp/1/model.xml   (needs `source scripts/env.sh`)
"""
import numpy as np, openvino as ov, sys
from openvino import opset13 as ops
rng = np.random.default_rng(0)
x = ops.parameter([-1, 512], np.float32, name="x"); x.output(0).set_names({"x"})
h = x
for i, (a, b) in enumerate([(512, 2048), (2048, 2048), (2048, 256)]):
    w = ops.constant((rng.standard_normal((a, b)) * 0.02).astype(np.float32))
    h = ops.matmul(h, w, False, False)
    if i < 2:
        h = ops.relu(h)
h.output(0).set_names({"y"})
ov.save_model(ov.Model([h], [x], "mlp"), sys.argv[1], compress_to_fp16=False)
