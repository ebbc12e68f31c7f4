#!/usr/bin/env python3
"""Generate TF-slim-like ResNet v1/v2 (50/152) as OpenVINO IR, with random weights.

The graphs mirror what converting a TF-slim `resnet_v1_50` / `resnet_v2_50` /
`resnet_v1_152` / `resnet_v2_152` SavedModel to OpenVINO looks like after the
usual MOC transformations (BatchNorm folded into the convolutions):

  input  `input`          f32 NHWC [N,224,224,3]  (transposed to NCHW inside the graph)
  output `probabilities`  f32 [N,1000]            (softmax over the logits)

  conv1 7x7/2 (64, explicit SAME padding as slim's conv2d_same) -> maxpool 3x3/2 SAME
  -> bottleneck blocks [3,4,6,3] (50) or [3,8,36,3] (152), widths 256/512/1024/2048
     (slim layout: the stride-2 sits on the 3x3 conv of the *last* unit of blocks 1-3)
  -> global average pool -> 1x1 conv "logits" (1000, with bias) -> squeeze -> softmax

  v1: conv+BN+ReLU everywhere, post-activation units: relu(shortcut + conv3(conv2(conv1(x)))).
  v2: pre-activation units: preact = relu(BN(x)); shortcut from x (identity / subsample)
      or a biased 1x1 conv of preact; conv3 has a bias and no BN; final BN+ReLU "postnorm";
      conv1 of the root block has no BN/ReLU.

Weights: He-normal from numpy default_rng(seed) (seed derived from --seed and the model
name, so each model is reproducible), with the last conv of every residual branch scaled
down so activations stay O(1) through 152 layers. Saved in fp32 (compress_to_fp16=False).

Usage:
  python3 scripts/make_resnet.py [--out DIR] [--models a,b] [--batch N|-1] [--force]
                                 [--no-verify] [--bench ITERS]
Writes DIR/<name>/1/model.xml|bin (default DIR: <repo>/generated/models). Existing models
are skipped unless --force (or unless their batch differs from --batch).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "generated" / "models"

_DEPS = REPO_ROOT / ".deps" / "python"
if _DEPS.is_dir() and str(_DEPS) not in sys.path:
    sys.path.insert(0, str(_DEPS))

try:
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops
except ImportError as exc:  # pragma: no cover
    sys.exit(f"make_resnet.py: cannot import openvino ({exc}); run scripts/setup.sh first")

from resnet_spec import MODELS, NUM_CLASSES, RESIDUAL_SCALE  # noqa: E402 (this folder is on sys.path)


class Builder:
    """Small helper that names every node after a TF-slim-like scope (deterministic IR)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    # -- parameters ---------------------------------------------------------
    def _he(self, shape, fan_in, scale=1.0):
        w = self.rng.standard_normal(shape, dtype=np.float32)
        w *= np.float32(scale * np.sqrt(2.0 / fan_in))
        return w

    def _bias(self, c, std=0.01):
        return (self.rng.standard_normal(c, dtype=np.float32) * np.float32(std)).reshape(1, c, 1, 1)

    # -- layers -------------------------------------------------------------
    def conv(self, x, cin, cout, k, stride, scope, *, bias=True, relu=False, scale=1.0, same_explicit=True):
        """Conv (BN folded => conv + bias) [+ ReLU]. Padding like slim: SAME for stride 1,
        explicit symmetric pad + VALID for stride > 1 (conv2d_same)."""
        w = self._he((cout, cin, k, k), cin * k * k, scale)
        pad_total = k - 1
        if stride == 1 or same_explicit:
            pb, pe = pad_total // 2, pad_total - pad_total // 2
        else:  # pragma: no cover
            pb, pe = 0, 0
        y = ops.convolution(x, ops.constant(w, name=f"{scope}/weights"), [stride, stride],
                            [pb, pb], [pe, pe], [1, 1], name=f"{scope}/Conv2D")
        if bias:
            y = ops.add(y, ops.constant(self._bias(cout), name=f"{scope}/bias"), name=f"{scope}/BiasAdd")
        if relu:
            y = ops.relu(y, name=f"{scope}/Relu")
        return y

    def bn_relu(self, x, c, scope):
        """Inference-form BatchNorm (per-channel scale & shift) + ReLU."""
        gamma = (1.0 + 0.1 * self.rng.standard_normal(c, dtype=np.float32)).reshape(1, c, 1, 1)
        beta = self._bias(c, 0.05)
        y = ops.multiply(x, ops.constant(gamma.astype(np.float32), name=f"{scope}/scale"), name=f"{scope}/mul")
        y = ops.add(y, ops.constant(beta, name=f"{scope}/shift"), name=f"{scope}/add")
        return ops.relu(y, name=f"{scope}/Relu")

    @staticmethod
    def subsample(x, stride, scope):
        if stride == 1:
            return x
        return ops.max_pool(x, [stride, stride], [1, 1], [0, 0], [0, 0], [1, 1],
                            name=f"{scope}/MaxPool").output(0)

    # -- units --------------------------------------------------------------
    def bottleneck_v1(self, x, cin, depth, stride, scope):
        db = depth // 4
        if depth == cin:
            shortcut = self.subsample(x, stride, f"{scope}/shortcut")
        else:
            shortcut = self.conv(x, cin, depth, 1, stride, f"{scope}/shortcut")
        r = self.conv(x, cin, db, 1, 1, f"{scope}/conv1", relu=True)
        r = self.conv(r, db, db, 3, stride, f"{scope}/conv2", relu=True)
        r = self.conv(r, db, depth, 1, 1, f"{scope}/conv3", scale=RESIDUAL_SCALE)
        y = ops.add(shortcut, r, name=f"{scope}/add")
        return ops.relu(y, name=f"{scope}/Relu")

    def bottleneck_v2(self, x, cin, depth, stride, scope):
        db = depth // 4
        preact = self.bn_relu(x, cin, f"{scope}/preact")
        if depth == cin:
            shortcut = self.subsample(x, stride, f"{scope}/shortcut")
        else:
            shortcut = self.conv(preact, cin, depth, 1, stride, f"{scope}/shortcut")
        r = self.conv(preact, cin, db, 1, 1, f"{scope}/conv1", relu=True)
        r = self.conv(r, db, db, 3, stride, f"{scope}/conv2", relu=True)
        r = self.conv(r, db, depth, 1, 1, f"{scope}/conv3", scale=RESIDUAL_SCALE)
        return ops.add(shortcut, r, name=f"{scope}/add")


def build_resnet(name: str, batch: int, seed: int) -> ov.Model:
    version, units = MODELS[name]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    b = Builder(rng)

    inp = ops.parameter(ov.PartialShape([batch if batch > 0 else -1, 224, 224, 3]), ov.Type.f32, name="input")
    inp.output(0).set_names({"input"})
    x = ops.transpose(inp, ops.constant(np.array([0, 3, 1, 2], np.int64), name=f"{name}/to_nchw/perm"),
                      name=f"{name}/to_nchw")

    # Root block.
    if version == 1:
        x = b.conv(x, 3, 64, 7, 2, f"{name}/conv1", relu=True)
    else:
        x = b.conv(x, 3, 64, 7, 2, f"{name}/conv1")
    x = ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [3, 3], auto_pad="same_upper",
                     name=f"{name}/pool1/MaxPool").output(0)

    cin = 64
    unit = b.bottleneck_v1 if version == 1 else b.bottleneck_v2
    for bi, (n, depth) in enumerate(zip(units, [256, 512, 1024, 2048]), start=1):
        block_stride = 2 if bi < 4 else 1
        for ui in range(1, n + 1):
            stride = block_stride if ui == n else 1
            x = unit(x, cin, depth, stride, f"{name}/block{bi}/unit_{ui}/bottleneck_v{version}")
            cin = depth

    if version == 2:
        x = b.bn_relu(x, cin, f"{name}/postnorm")

    x = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64), name=f"{name}/pool5/axes"),
                        keep_dims=True, name=f"{name}/pool5")
    # logits: 1x1 conv with bias, LeCun-ish scale so the softmax is not one-hot.
    w = (rng.standard_normal((NUM_CLASSES, cin, 1, 1), dtype=np.float32) * np.float32(np.sqrt(1.0 / cin)))
    x = ops.convolution(x, ops.constant(w, name=f"{name}/logits/weights"), [1, 1], [0, 0], [0, 0], [1, 1],
                        name=f"{name}/logits/Conv2D")
    x = ops.add(x, ops.constant(b._bias(NUM_CLASSES), name=f"{name}/logits/bias"), name=f"{name}/logits/BiasAdd")
    x = ops.squeeze(x, ops.constant(np.array([2, 3], np.int64), name=f"{name}/SpatialSqueeze/axes"),
                    name=f"{name}/SpatialSqueeze")
    probs = ops.softmax(x, -1, name="probabilities")
    probs.output(0).set_names({"probabilities"})
    res = ops.result(probs, name="probabilities/sink_port_0")
    return ov.Model([res], [inp], name)


# ----------------------------------------------------------------------------- io helpers

def _existing_batch(xml: Path) -> str | None:
    """Batch dim of the `input` Parameter of an existing IR ("1", "-1"/"?", ...), or None."""
    try:
        with open(xml, "r", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    m = re.search(r'name="input" type="Parameter"[^>]*>\s*<data shape="([^"]*)"', head)
    if not m:
        return None
    first = m.group(1).split(",")[0].strip()
    return "-1" if first in ("?", "-1") else first


def _save(model: ov.Model, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        os.chmod(tmp, 0o755)
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _verify(core: ov.Core, xml: Path, batch: int) -> str:
    cm = core.compile_model(str(xml), "CPU")
    n = batch if batch > 0 else 2
    x = np.random.default_rng(123).uniform(-1.0, 1.0, (n, 224, 224, 3)).astype(np.float32)
    y = cm({"input": x})[cm.output("probabilities")]
    assert y.shape == (n, NUM_CLASSES), f"{xml}: output shape {y.shape}"
    assert np.all(np.isfinite(y)), f"{xml}: output has NaN/Inf"
    sums = y.sum(axis=1)
    assert np.allclose(sums, 1.0, atol=1e-2), f"{xml}: softmax rows sum to {sums}"
    return f"verified b{n}: finite, max p={float(y.max()):.4f}, argmax={int(y[0].argmax())}"


def _bench(core: ov.Core, xml: Path, iters: int, batch: int) -> None:
    n = batch if batch > 0 else 1
    x = np.random.default_rng(7).uniform(-1.0, 1.0, (n, 224, 224, 3)).astype(np.float32)
    for label, cfg in (("default precision", {}), ("INFERENCE_PRECISION_HINT=f32", {"INFERENCE_PRECISION_HINT": "f32"})):
        cfg = dict(cfg, PERFORMANCE_HINT="LATENCY")
        t0 = time.perf_counter()
        cm = core.compile_model(str(xml), "CPU", cfg)
        t_compile = time.perf_counter() - t0
        prec = cm.get_property("INFERENCE_PRECISION_HINT")
        req = cm.create_infer_request()
        for _ in range(5):
            req.infer({"input": x})
        lat = []
        for _ in range(iters):
            t = time.perf_counter()
            req.infer({"input": x})
            lat.append((time.perf_counter() - t) * 1e3)
        lat = np.array(lat)
        print(f"  bench {xml.parent.parent.name} b{n} {label} (inference precision {prec}): "
              f"compile {t_compile:.2f}s, {iters} iters: median {np.median(lat):.2f} ms, "
              f"mean {lat.mean():.2f} ms, p90 {np.percentile(lat, 90):.2f} ms, min {lat.min():.2f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="repository root to write into")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset (default: all four)")
    ap.add_argument("--batch", type=int, default=1, help="batch size; -1 = dynamic batch (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="base RNG seed (default 0)")
    ap.add_argument("--force", action="store_true", help="regenerate even if the model files exist")
    ap.add_argument("--no-verify", action="store_true", help="skip the compile + NaN/Inf check")
    ap.add_argument("--bench", type=int, metavar="ITERS", default=0,
                    help="after generating, time ITERS inferences (LATENCY hint) with default and f32 precision")
    args = ap.parse_args(argv)

    names = [s.strip() for s in args.models.split(",") if s.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    if args.batch == 0 or args.batch < -1:
        ap.error("--batch must be >= 1 or -1")

    core = ov.Core()
    out = args.out.resolve()
    want_batch = str(args.batch)
    for name in names:
        final = out / name / "1"
        xml, bin_ = final / "model.xml", final / "model.bin"
        exists = xml.is_file() and bin_.is_file()
        have_batch = _existing_batch(xml) if exists else None
        if exists and not args.force and have_batch == want_batch:
            print(f"{name}: exists at {final} (batch {have_batch}), skipped (use --force to regenerate)")
        else:
            if exists and not args.force:
                print(f"{name}: existing model has batch {have_batch}, regenerating with batch {want_batch}")
            t0 = time.perf_counter()
            model = build_resnet(name, args.batch, args.seed)
            t_build = time.perf_counter() - t0
            _save(model, final)
            t_total = time.perf_counter() - t0
            size = xml.stat().st_size + bin_.stat().st_size
            print(f"{name}: wrote {final} batch {want_batch}: {size / 1e6:.1f} MB "
                  f"(xml {xml.stat().st_size / 1e3:.0f} KB), build {t_build:.1f}s + save {t_total - t_build:.1f}s")
            if not args.no_verify:
                t1 = time.perf_counter()
                msg = _verify(core, xml, args.batch)
                print(f"  {msg} ({time.perf_counter() - t1:.1f}s)")
        if args.bench > 0:
            _bench(core, xml, args.bench, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
