#!/usr/bin/env python3
"""Build the tiny TensorFlow-format test fixtures (SavedModel, TF Serving warm-up
file, TFLite) used by the vinoserve tests that serve TF Serving repositories as-is.

NEEDS TENSORFLOW. This script is run ONCE BY HAND; its outputs are committed under
tests/fixtures/tf/ and neither the build nor CI runs it. Tested with:

    python3 -m venv venv
    venv/bin/pip install tensorflow-cpu==2.21.0 openvino==2026.4.1 numpy
    venv/bin/pip install --no-deps tensorflow-serving-api==2.21.0   # + grpcio, protobuf
    venv/bin/python scripts/make_tf_fixtures.py [OUT] [--check]

Layout written (default OUT = <repo>/tests/fixtures/tf):

    OUT/scorer/1/                         SavedModel, signature `serving_default`
    OUT/scorer/2/                         SavedModel, other weights, + warm-up file:
    OUT/scorer/2/assets.extra/tf_serving_warmup_requests
    OUT/lite/1/model.tflite               TFLite flatbuffer, fixed shapes
    OUT/reference.json                    inputs + outputs computed by TensorFlow

`scorer/<v>` signature `serving_default` (the Python argument is named `x`, the
signature input key is `features`, so one can see which name a reader exposes):
    in : features f32 [-1,4]
    out: score    f32 [-1,1] = sigmoid(features @ W_v + b_v)
         doubled  f32 [-1,4] = features * 2 + v

`lite/1` (argument `x`, signature `serving_default`):
    in : x      f32 [1,6]
    out: total  f32 [1,1] = sum(x, axis=1, keepdims)
         hidden f32 [1,3] = relu(x @ W + b)

Every weight and input comes from numpy RandomState with a fixed seed, so values
are deterministic (the protobuf/flatbuffer bytes may still differ between TF
versions). `--check` additionally loads every fixture with OpenVINO (if
installed), prints port names/shapes/types, runs reference.json on CPU with
INFERENCE_PRECISION_HINT=f32 and prints the max abs difference.
See tests/fixtures/tf/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU kernels

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "tf"

try:
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
except ImportError as exc:  # pragma: no cover
    sys.exit(
        f"make_tf_fixtures.py: {exc}; needs tensorflow-cpu and "
        "`pip install --no-deps tensorflow-serving-api` (see the docstring)"
    )

SEED = 20260401
SIGNATURE = "serving_default"


# --------------------------------------------------------------------------- helpers

def _tensor_json(a: np.ndarray) -> dict:
    """A tensor as JSON: dtype, shape and row-major flat data (float32 values are
    written as the exact decimal of the float32, so they round-trip bit-exact)."""
    a = np.asarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": [float(v) for v in a.reshape(-1)]}


def _case_inputs(rng: np.random.RandomState, batch: int, width: int) -> np.ndarray:
    # Quantised to 1/8 so inputs are exact short decimals in JSON and in tests.
    return (rng.randint(-16, 17, size=(batch, width)) / 8.0).astype(np.float32)


# --------------------------------------------------------------------------- scorer (SavedModel)

class Scorer(tf.Module):
    def __init__(self, version: int, rng: np.random.RandomState):
        super().__init__(name="scorer")
        self.w = tf.Variable(rng.normal(0.0, 0.5, size=(4, 1)).astype(np.float32), name="w")
        self.b = tf.Variable(rng.normal(0.0, 0.1, size=(1,)).astype(np.float32), name="b")
        self.version = tf.constant(float(version), tf.float32, name="version")

    # The Python argument is `x`; the TensorSpec name makes the signature key `features`.
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def serve(self, x):
        score = tf.sigmoid(tf.matmul(x, self.w) + self.b)
        doubled = x * 2.0 + self.version
        return {"score": score, "doubled": doubled}


def write_scorer(out: Path, version: int, cases: list[np.ndarray]) -> list[dict]:
    rng = np.random.RandomState(SEED + version)
    module = Scorer(version, rng)
    path = out / "scorer" / str(version)
    tf.saved_model.save(module, str(path), signatures={SIGNATURE: module.serve})

    # Reference outputs from the *loaded* SavedModel's signature, as TF Serving runs it.
    fn = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    in_keys = list(fn.structured_input_signature[1].keys())
    assert in_keys == ["features"], f"scorer/{version}: signature inputs {in_keys}"
    ref = []
    for feats in cases:
        got = fn(features=tf.constant(feats))
        assert sorted(got) == ["doubled", "score"], sorted(got)
        ref.append({
            "name": f"batch{feats.shape[0]}",
            "inputs": {"features": _tensor_json(feats)},
            "outputs": {k: _tensor_json(got[k].numpy()) for k in ("score", "doubled")},
        })
    return ref


def write_warmup(path: Path, cases: list[np.ndarray]) -> None:
    """TF Serving's warm-up file: a TFRecord of PredictionLog{predict_log{request}}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for feats in cases:
            req = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name="scorer", signature_name=SIGNATURE))
            req.inputs["features"].CopyFrom(tf.make_tensor_proto(feats, dtype=tf.float32))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=req))
            w.write(log.SerializeToString())


def read_warmup(path: Path) -> list[prediction_log_pb2.PredictionLog]:
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(str(path))]


# --------------------------------------------------------------------------- lite (TFLite)

class Lite(tf.Module):
    def __init__(self, rng: np.random.RandomState):
        super().__init__(name="lite")
        self.w = tf.constant(rng.normal(0.0, 0.5, size=(6, 3)).astype(np.float32), name="w")
        self.b = tf.constant(np.array([0.25, -0.5, 0.0], np.float32), name="b")

    @tf.function(input_signature=[tf.TensorSpec([1, 6], tf.float32, name="x")])
    def serve(self, x):
        total = tf.reduce_sum(x, axis=1, keepdims=True)
        hidden = tf.nn.relu(tf.matmul(x, self.w) + self.b)
        return {"total": total, "hidden": hidden}


def write_lite(out: Path, cases: list[np.ndarray]) -> tuple[list[dict], dict]:
    module = Lite(np.random.RandomState(SEED + 100))
    conc = module.serve.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([conc], module)
    flat = conv.convert()
    path = out / "lite" / "1" / "model.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flat)

    interp = tf.lite.Interpreter(model_content=flat)
    interp.allocate_tensors()
    tensor_names = {
        "inputs": [{"name": d["name"], "shape": d["shape"].tolist(), "dtype": np.dtype(d["dtype"]).name}
                   for d in interp.get_input_details()],
        "outputs": [{"name": d["name"], "shape": d["shape"].tolist(), "dtype": np.dtype(d["dtype"]).name}
                    for d in interp.get_output_details()],
    }
    runner = interp.get_signature_runner(SIGNATURE)
    # signature key -> TFLite tensor name (OpenVINO exposes the tensor names, not the keys)
    tensor_names["signature_" + SIGNATURE] = {
        "inputs": {k: d["name"] for k, d in sorted(runner.get_input_details().items())},
        "outputs": {k: d["name"] for k, d in sorted(runner.get_output_details().items())},
    }
    ref = []
    for i, x in enumerate(cases):
        got = runner(x=x)
        ref.append({
            "name": f"case{i}",
            "inputs": {"x": _tensor_json(x)},
            "outputs": {k: _tensor_json(got[k]) for k in ("total", "hidden")},
        })
    return ref, tensor_names


# --------------------------------------------------------------------------- optional OpenVINO check

def check_openvino(out: Path, reference: dict) -> None:
    import openvino as ov

    core = ov.Core()
    print(f"openvino {ov.__version__}")
    for mname, versions in reference["models"].items():
        for ver, entry in versions.items():
            target = out / entry["path"]
            model = core.read_model(str(target))
            print(f"== {mname}/{ver}: read_model({entry['path']})")
            for kind, ports in (("in ", model.inputs), ("out", model.outputs)):
                for i, p in enumerate(ports):
                    print(f"  {kind}[{i}] names={sorted(p.get_names())} any={p.get_any_name()!r} "
                          f"shape={p.get_partial_shape()} type={p.get_element_type().get_type_name()}")
            cm = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            for case in entry["cases"]:
                feed = {}
                for key, t in case["inputs"].items():
                    arr = np.array(t["data"], np.float32).reshape(t["shape"])
                    port = next((p for p in cm.inputs if key in p.get_names()), None)
                    feed[port if port is not None else 0] = arr
                res = cm(feed)
                diffs = []
                for j, (key, t) in enumerate(case["outputs"].items()):
                    want = np.array(t["data"], np.float32).reshape(t["shape"])
                    port = next((p for p in cm.outputs if key in p.get_names()), None)
                    if port is None:  # match by shape when the signature key is not a port name
                        port = next(p for p in cm.outputs if tuple(res[p].shape) == want.shape)
                    got = res[port]
                    diffs.append(f"{key}<-{port.get_any_name()} {float(np.max(np.abs(got - want))):.3g}")
                print(f"  {case['name']}: max|ov-tf| " + ", ".join(diffs))


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true", help="also load/run every fixture with OpenVINO")
    args = ap.parse_args()
    out = Path(args.out).resolve()

    np.random.seed(SEED)
    tf.random.set_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    for sub in ("scorer", "lite"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.RandomState(SEED)
    scorer_cases = [_case_inputs(rng, 1, 4), _case_inputs(rng, 3, 4)]
    lite_cases = [_case_inputs(rng, 1, 6), _case_inputs(rng, 1, 6)]

    reference: dict = {
        "generator": "scripts/make_tf_fixtures.py",
        "tensorflow": tf.__version__,
        "note": "outputs computed by TensorFlow: SavedModel via the loaded serving_default "
                "signature, TFLite via tf.lite.Interpreter's signature runner; data is row-major",
        "models": {"scorer": {}, "lite": {}},
    }
    for version in (1, 2):
        reference["models"]["scorer"][str(version)] = {
            "format": "saved_model",
            "path": f"scorer/{version}",
            "signature": SIGNATURE,
            "inputs": {"features": {"dtype": "float32", "shape": [-1, 4]}},
            "outputs": {"score": {"dtype": "float32", "shape": [-1, 1]},
                        "doubled": {"dtype": "float32", "shape": [-1, 4]}},
            "cases": write_scorer(out, version, scorer_cases),
        }

    warmup = out / "scorer" / "2" / "assets.extra" / "tf_serving_warmup_requests"
    write_warmup(warmup, scorer_cases)
    logs = read_warmup(warmup)
    assert [l.predict_log.request.inputs["features"].tensor_shape.dim[0].size for l in logs] == [1, 3]
    for log, feats in zip(logs, scorer_cases):
        np.testing.assert_array_equal(tf.make_ndarray(log.predict_log.request.inputs["features"]), feats)

    lite_ref, lite_tensors = write_lite(out, lite_cases)
    reference["models"]["lite"]["1"] = {
        "format": "tflite",
        "path": "lite/1/model.tflite",
        "signature": SIGNATURE,
        "inputs": {"x": {"dtype": "float32", "shape": [1, 6]}},
        "outputs": {"total": {"dtype": "float32", "shape": [1, 1]},
                    "hidden": {"dtype": "float32", "shape": [1, 3]}},
        "tflite_tensors": lite_tensors,
        "cases": lite_ref,
    }

    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")

    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:8d}  {p.relative_to(out)}")
    head = warmup.read_bytes()[:16]
    print(f"warm-up: {len(logs)} PredictionLog records; first 16 bytes {head.hex(' ')}")

    if args.check:
        check_openvino(out, reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
