#!/usr/bin/env python3
"""TensorFlow in-process: the stand-in for TF Serving in Tables 1-3 (scripts/bench.sh --tensorflow).

No TF Serving binary can be installed here, so the 2018 OVMS-vs-TF-Serving ratios are recomputed
against TensorFlow itself: the same ResNet, batch and CPUs, one synchronous client in a closed
loop (like the 2018 client and like Tables 1-3), measured like loadgen's raw run. It prints ONE
JSON line shaped like a loadgen `--json` record (target "tensorflow"), which bench.sh stores as
the point's "tensorflow" field and benches/report.py turns into the TF columns.

  python3 benches/tf_baseline.py --model resnet_v1_50 --batch 1 --warmup 2 --duration 5

TensorFlow comes from .deps/tensorflow (bench.sh --tensorflow installs it there with
`pip install --target`); it is put first on sys.path and .deps/python (OpenVINO's numpy) is
taken off, so the two installs never mix.

Models (--arch):
  slim   (default) the graphs of scripts/make_resnet.py rebuilt in Keras, layer for layer: TF-slim
         layout (v1 and v2: the stride-2 on the 3x3 conv of the *last* unit of blocks 1-3),
         BatchNorm folded into the convolutions (conv + bias) as in the IR, v2's pre-activation
         BN as scale + shift, logits as a dense layer + softmax. Same MACs as the IR.
  keras  keras.applications ResNet50 / ResNet50V2 / ResNet152 / ResNet152V2 (weights=None,
         include_top=True, classes=1000), BatchNorm as separate layers. The V2 models have the
         IR's layout; ResNet50/152 (v1) put the stride on the first 1x1 conv of the *first* unit
         of stages 3-5 (the original paper's layout), ~11% (50) / ~3% (152) more MACs than the IR.
Weights are random (He-normal, the last conv of each residual branch scaled by 0.2, as in
make_resnet.py, so activations stay O(1)); seeded, so a run is reproducible.

Precision: TensorFlow on CPU computes in f32 unless told otherwise. --precision f32 is plain f32;
--precision default is TF's own default, which is also f32, unless --onednn-bf16 turns on
grappler's oneDNN bf16 auto-mixed-precision (opt-in in TF: Conv2D/MatMul in bf16; it needs a CPU
with AVX512-BF16 or AMX). bench.sh passes --onednn-bf16 in the default-precision tables where
OpenVINO chose bf16. Measured on the 2-vCPU AMD EPYC (AVX512-BF16) VM, resnet_v1_50: batch 16
59 -> 106-110 img/s, batch 1 no gain (42 -> 40 img/s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TF_DEPS = REPO_ROOT / ".deps" / "tensorflow"
OV_DEPS = REPO_ROOT / ".deps" / "python"

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from resnet_spec import MODELS, NUM_CLASSES, RESIDUAL_SCALE  # noqa: E402 (the architecture make_resnet.py builds)

KERAS_APPS = {
    "resnet_v1_50": "ResNet50",
    "resnet_v2_50": "ResNet50V2",
    "resnet_v1_152": "ResNet152",
    "resnet_v2_152": "ResNet152V2",
}


def use_tf_deps() -> None:
    """.deps/tensorflow first on sys.path, .deps/python (OpenVINO and its numpy) off it."""
    ov = str(OV_DEPS)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.realpath(ov)]
    if TF_DEPS.is_dir() and str(TF_DEPS) not in sys.path:
        sys.path.insert(0, str(TF_DEPS))


def build_slim(name: str):
    """make_resnet.py's graph in Keras (BN folded: conv + bias), NHWC."""
    import keras  # noqa: PLC0415
    from keras import Input, Model, layers  # noqa: PLC0415

    class ScaleShift(keras.layers.Layer):
        """v2's inference BatchNorm (pre-activation, not foldable into a conv): x * scale + shift."""

        def __init__(self, channels, **kw):
            super().__init__(**kw)
            self.scale = self.add_weight(shape=(channels,), initializer="ones", name="scale")
            self.shift = self.add_weight(shape=(channels,), initializer="zeros", name="shift")

        def call(self, x):
            return x * self.scale + self.shift

    version, units = MODELS[name]

    def conv(x, cout, k, stride, scope, relu=False):
        if stride > 1 and k > 1:  # slim's conv2d_same: explicit symmetric pad, then VALID
            pad = k - 1
            x = layers.ZeroPadding2D(((pad // 2, pad - pad // 2),) * 2, name=f"{scope}_pad")(x)
            padding = "valid"
        else:
            padding = "same"
        return layers.Conv2D(cout, k, strides=stride, padding=padding, use_bias=True,
                             activation="relu" if relu else None, name=scope)(x)

    def bn_relu(x, scope):  # inference BN: per-channel scale and shift, then ReLU
        x = ScaleShift(x.shape[-1], name=f"{scope}_bn")(x)
        return layers.ReLU(name=f"{scope}_relu")(x)

    def subsample(x, stride, scope):
        return x if stride == 1 else layers.MaxPooling2D(1, strides=stride, name=f"{scope}_subsample")(x)

    def unit(x, cin, depth, stride, scope):
        db = depth // 4
        if version == 1:
            shortcut = subsample(x, stride, scope) if depth == cin else conv(x, depth, 1, stride, f"{scope}_shortcut")
            r = conv(x, db, 1, 1, f"{scope}_conv1", relu=True)
            r = conv(r, db, 3, stride, f"{scope}_conv2", relu=True)
            r = conv(r, depth, 1, 1, f"{scope}_conv3")
            return layers.ReLU(name=f"{scope}_relu")(layers.Add(name=f"{scope}_add")([shortcut, r]))
        preact = bn_relu(x, f"{scope}_preact")
        shortcut = subsample(x, stride, scope) if depth == cin else conv(preact, depth, 1, stride, f"{scope}_shortcut")
        r = conv(preact, db, 1, 1, f"{scope}_conv1", relu=True)
        r = conv(r, db, 3, stride, f"{scope}_conv2", relu=True)
        r = conv(r, depth, 1, 1, f"{scope}_conv3")
        return layers.Add(name=f"{scope}_add")([shortcut, r])

    inp = Input((224, 224, 3), name="input")
    x = conv(inp, 64, 7, 2, "conv1", relu=(version == 1))
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    cin = 64
    for bi, (n, depth) in enumerate(zip(units, [256, 512, 1024, 2048]), start=1):
        for ui in range(1, n + 1):
            stride = 2 if (bi < 4 and ui == n) else 1
            x = unit(x, cin, depth, stride, f"block{bi}_unit_{ui}")
            cin = depth
    if version == 2:
        x = bn_relu(x, "postnorm")
    x = layers.GlobalAveragePooling2D(name="pool5")(x)
    x = layers.Dense(NUM_CLASSES, activation="softmax", name="logits")(x)
    return Model(inp, x, name=name)


def build_keras(name: str):
    import keras  # noqa: PLC0415

    ctor = getattr(keras.applications, KERAS_APPS[name])
    return ctor(weights=None, include_top=True, classes=NUM_CLASSES, input_shape=(224, 224, 3))


def randomize(model, seed: int) -> None:
    """He-normal kernels (residual branches' last conv x0.2), small biases, BN scale ~1: the
    make_resnet.py recipe, so activations stay O(1) through 152 layers (no denormals)."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        kind = type(layer).__name__
        weights = layer.get_weights()
        if not weights:
            continue
        new = []
        for w in weights:
            if w.ndim == 4:  # conv kernel [kh, kw, cin, cout]
                fan_in = w.shape[0] * w.shape[1] * w.shape[2]
                residual_end = layer.name.endswith(("conv3", "_3_conv"))
                scale = RESIDUAL_SCALE if residual_end else 1.0
                new.append(rng.standard_normal(w.shape, dtype=np.float32) * np.float32(scale * np.sqrt(2.0 / fan_in)))
            elif w.ndim == 2:  # dense kernel [cin, classes]
                new.append(rng.standard_normal(w.shape, dtype=np.float32) * np.float32(np.sqrt(1.0 / w.shape[0])))
            else:
                new.append(None)
        if kind == "BatchNormalization":  # gamma, beta, moving mean, moving variance
            c = weights[0].shape[0]
            new = [1.0 + 0.1 * rng.standard_normal(c, dtype=np.float32), 0.05 * rng.standard_normal(c, dtype=np.float32),
                   np.zeros(c, np.float32), np.ones(c, np.float32)][: len(weights)]
        elif kind == "ScaleShift":
            c = weights[0].shape[0]
            new = [1.0 + 0.1 * rng.standard_normal(c, dtype=np.float32), 0.05 * rng.standard_normal(c, dtype=np.float32)]
        else:
            new = [n if n is not None else 0.01 * rng.standard_normal(w.shape, dtype=np.float32)
                   for n, w in zip(new, weights)]
        layer.set_weights([np.asarray(n, dtype=np.float32) for n in new])


def gmacs(model) -> float:
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kh, kw, cin, _ = layer.kernel.shape
            o = layer.output.shape
            macs += o[1] * o[2] * o[3] * kh * kw * cin
        elif kind == "Dense":
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
    return macs / 1e9


def quantile(sorted_ms: list[float], q: float) -> float:
    """The smallest value with at least q of the samples at or below it (as HdrHistogram)."""
    if not sorted_ms:
        return 0.0
    k = max(0, min(len(sorted_ms) - 1, int(-(-q * len(sorted_ms) // 1)) - 1))
    return sorted_ms[k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, choices=list(MODELS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the window")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    ap.add_argument("--threads", type=int, default=0,
                    help="intra-op threads (default: the CPUs this process may use, sched_getaffinity)")
    ap.add_argument("--inter-op", type=int, default=1,
                    help="inter-op threads (default 1: one synchronous request, a chain of layers)")
    ap.add_argument("--precision", choices=("default", "f32"), default="f32",
                    help="the table's precision; TF computes f32 for both unless --onednn-bf16")
    ap.add_argument("--onednn-bf16", action="store_true",
                    help="with --precision default: grappler's oneDNN bf16 auto-mixed-precision")
    ap.add_argument("--arch", choices=("slim", "keras"), default="slim",
                    help="slim: make_resnet.py's graph in Keras (default); keras: keras.applications")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.batch < 1 or args.duration <= 0 or args.warmup < 0:
        ap.error("--batch must be >= 1, --duration > 0, --warmup >= 0")

    threads = args.threads or len(os.sched_getaffinity(0))
    bf16 = args.onednn_bf16 and args.precision == "default"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    use_tf_deps()
    try:
        import numpy as np  # noqa: PLC0415
        import tensorflow as tf  # noqa: PLC0415
        import keras  # noqa: PLC0415
    except ImportError as exc:
        print(f"tf_baseline.py: cannot import tensorflow ({exc}); install it with scripts/bench.sh --tensorflow "
              f"(into {TF_DEPS})", file=sys.stderr)
        return 2

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    if bf16:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    keras.utils.set_random_seed(args.seed)

    t0 = time.perf_counter()
    model = (build_slim if args.arch == "slim" else build_keras)(args.model)
    randomize(model, args.seed)
    build_s = time.perf_counter() - t0

    shape = (args.batch, 224, 224, 3)
    infer = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec(shape, tf.float32)],
                        jit_compile=False)
    x = np.random.default_rng(7).uniform(-1.0, 1.0, shape).astype(np.float32)

    def once():
        # Like loadgen's raw run: the input copied in, the output copied out, every request.
        return infer(tf.constant(x)).numpy()

    t0 = time.perf_counter()
    y = once()  # traces, optimizes (grappler) and runs once
    first_s = time.perf_counter() - t0
    if y.shape != (args.batch, NUM_CLASSES) or not np.all(np.isfinite(y)):
        print(f"tf_baseline.py: bad output: shape {y.shape}, finite {bool(np.all(np.isfinite(y)))}", file=sys.stderr)
        return 1

    start = time.perf_counter() + args.warmup
    end = start + args.duration
    latencies: list[float] = []
    cpu_before = None
    errors, first_error = 0, None
    while True:
        began = time.perf_counter()
        if began >= end:
            break
        if cpu_before is None and began >= start:
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        try:
            once()
            ok = True
        except Exception as exc:  # noqa: BLE001  (counted, like loadgen's request errors)
            ok = False
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
        finished = time.perf_counter()
        if start <= finished <= end and ok:
            latencies.append((finished - began) * 1e3)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = None
    if cpu_before is not None:
        cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)

    lat = sorted(latencies)
    n = len(lat)
    record = {
        "target": "tensorflow",
        "model": args.model,
        "plugin": f"intra_op={threads},inter_op={args.inter_op}" + (",onednn_bf16" if bf16 else ""),
        "clients": 1,
        "batch": args.batch,
        "duration_s": args.duration,
        "requests": n,
        "errors": errors,
        "first_error": first_error,
        "req_per_s": n / args.duration,
        "items_per_s": n / args.duration * args.batch,
        "req_per_server_cpu_s": n / cpu_s if cpu_s else None,
        "mean_ms": sum(lat) / n if n else 0.0,
        "p50_ms": quantile(lat, 0.5),
        "p90_ms": quantile(lat, 0.9),
        "p99_ms": quantile(lat, 0.99),
        "max_ms": lat[-1] if lat else 0.0,
        "loadgen_cpu_s": None,
        "server_cpu_s": cpu_s,
        "properties": {
            "intra_op_parallelism_threads": str(threads),
            "inter_op_parallelism_threads": str(args.inter_op),
            "precision": "bf16 (oneDNN auto-mixed-precision)" if bf16 else "f32",
        },
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "arch": args.arch,
        "gmacs_per_image": round(gmacs(model), 3),
        "build_s": round(build_s, 2),
        "first_call_s": round(first_s, 2),
    }
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
