#!/usr/bin/env python3
"""Build the tiny OpenVINO IR test models used by the vinoserve test-suite.

Layout written (default OUT = <repo>/tests/fixtures/models):

    OUT/<model_name>/<version>/model.xml
    OUT/<model_name>/<version>/model.bin

Usage:
    python3 scripts/make_fixtures.py                    # (re)build every fixture
    python3 scripts/make_fixtures.py --out DIR          # ... into another repository root
    python3 scripts/make_fixtures.py --only add,int64   # ... a subset
    python3 scripts/make_fixtures.py --add-version N --out DIR [--model-name add]
        # write just DIR/<model-name>/N/ with an `add` model computing y = x + N
        # (used by hot-reload tests). The version folder appears atomically.

Requires the `openvino` Python package (scripts/setup.sh installs it into
.deps/python; `source scripts/env.sh` puts it on PYTHONPATH). The output is
deterministic: every node has an explicit name and all constants are fixed.
See tests/fixtures/models/README.md for the model specifications.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "models"

# Make `import openvino` work without sourcing scripts/env.sh.
_DEPS = REPO_ROOT / ".deps" / "python"
if _DEPS.is_dir() and str(_DEPS) not in sys.path:
    sys.path.insert(0, str(_DEPS))

try:
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops
except ImportError as exc:  # pragma: no cover
    sys.exit(f"make_fixtures.py: cannot import openvino ({exc}); run scripts/setup.sh first")


# --------------------------------------------------------------------------- helpers

def _param(name: str, shape, etype: ov.Type):
    p = ops.parameter(ov.PartialShape(shape), etype, name=name)
    p.output(0).set_names({name})
    return p


def _const(value, name: str):
    c = ops.constant(value, name=name)
    return c


def _named(node, name: str):
    """Give `node` a friendly name and make `name` its (only) output tensor name."""
    node.set_friendly_name(name)
    node.output(0).set_names({name})
    return node


def _model(outputs, params, name: str) -> ov.Model:
    results = []
    for out in outputs:
        tname = out.output(0).get_any_name()
        results.append(ops.result(out, name=f"{tname}/sink_port_0"))
    return ov.Model(results, params, name)


# --------------------------------------------------------------------------- models

def build_identity(model_name: str = "identity") -> ov.Model:
    # y = x * 1.0 : a real op that the CPU plugin keeps, and bit-exact
    # (unlike x + 0, which turns -0.0 into +0.0). NaN/Inf/denormals pass through.
    x = _param("x", [1, 10], ov.Type.f32)
    y = _named(ops.multiply(x, _const(np.float32(1.0), "one")), "y")
    return _model([y], [x], model_name)


def build_add(version: int) -> ov.Model:
    x = _param("x", [1, 10], ov.Type.f32)
    y = _named(ops.add(x, _const(np.float32(version), "addend")), "y")
    return _model([y], [x], "add")


def build_two_io() -> ov.Model:
    a = _param("a", [1, 4], ov.Type.f32)
    b = _param("b", [1, 4], ov.Type.f32)
    s = _named(ops.add(a, b), "sum")
    p = _named(ops.multiply(a, b), "product")
    return _model([s, p], [a, b], "two_io")


def build_int64() -> ov.Model:
    x = _param("x", [1, 5], ov.Type.i64)
    y = _named(ops.multiply(x, _const(np.int64(2), "two")), "y")
    return _model([y], [x], "int64")


def build_half() -> ov.Model:
    x = _param("x", [1, 4], ov.Type.f16)
    y = _named(ops.add(x, _const(np.float16(1.0), "one")), "y")
    return _model([y], [x], "half")


def build_uint8() -> ov.Model:
    # A plain u8 Add *saturates* on the OpenVINO CPU plugin (255 + 1 -> 255).
    # To get wrap-around semantics, compute ((i32(x) + 1) & 255) -> u8.
    x = _param("x", [1, 6], ov.Type.u8)
    xi = ops.convert(x, ov.Type.i32, name="x_i32")
    s = ops.add(xi, _const(np.int32(1), "one"), name="x_plus_1")
    w = ops.bitwise_and(s, _const(np.int32(255), "mask"), name="wrapped")
    y = _named(ops.convert(w, ov.Type.u8), "y")
    return _model([y], [x], "uint8")


def build_dynamic() -> ov.Model:
    x = _param("x", [-1, 8], ov.Type.f32)
    y = _named(ops.multiply(x, _const(np.float32(3.0), "three")), "y")
    return _model([y], [x], "dynamic")


def build_image_stats(model_name: str, etype: ov.Type, batch: int) -> ov.Model:
    # An NHWC image input (the layout the server decodes JPEG/PNG strings into) and two
    # statistics that let tests check the decoded pixels without a big output:
    # mean = per-channel mean over H and W, pixel00 = the top-left pixel, both f32 [N,3].
    image = _param("image", [batch, 32, 32, 3], etype)
    x = image if etype == ov.Type.f32 else ops.convert(image, ov.Type.f32, name="image_f32")
    mean = _named(ops.reduce_mean(x, _const(np.array([1, 2], np.int64), "hw_axes"), keep_dims=False), "mean")
    row0 = ops.gather(x, _const(np.int64(0), "row0"), _const(np.int64(1), "h_axis"), name="row_0")
    pixel00 = _named(ops.gather(row0, _const(np.int64(0), "col0"), _const(np.int64(1), "w_axis")), "pixel00")
    return _model([mean, pixel00], [image], model_name)


# --------------------------------------------------------------------------- checks

def _check(core: ov.Core, xml: Path, inputs: dict, expected: dict, *, exact: bool = True) -> ov.CompiledModel:
    """Compile on CPU, check port names/dtypes and the outputs for `inputs`."""
    cm = core.compile_model(core.read_model(str(xml)), "CPU")
    in_names = [p.get_any_name() for p in cm.inputs]
    out_names = [p.get_any_name() for p in cm.outputs]
    assert in_names == list(inputs), f"{xml}: inputs {in_names} != {list(inputs)}"
    assert out_names == list(expected), f"{xml}: outputs {out_names} != {list(expected)}"
    for port in cm.inputs:
        want = inputs[port.get_any_name()].dtype
        got = port.get_element_type().to_dtype()
        assert got == want, f"{xml}: input {port.get_any_name()} compiled as {got}, declared {want}"
    res = cm(inputs)
    for name, want in expected.items():
        got = res[cm.output(name)]
        assert got.dtype == want.dtype, f"{xml}: output {name} dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{xml}: output {name} shape {got.shape} != {want.shape}"
        if exact:
            ok = np.array_equal(got.view(np.uint8), want.view(np.uint8)) if got.dtype.kind == "f" \
                else np.array_equal(got, want)
        else:
            ok = np.allclose(got, want)
        assert ok, f"{xml}: output {name} = {got}, expected {want}"
    return cm


def _port_desc(ports) -> str:
    parts = []
    for p in ports:
        parts.append(f"{p.get_any_name()}:{p.get_element_type().get_type_name()}{p.get_partial_shape()}")
    return ",".join(parts)


def _size(d: Path) -> int:
    return sum(f.stat().st_size for f in d.iterdir() if f.is_file())


# --------------------------------------------------------------------------- writing

def _save_version(model: ov.Model, out: Path, name: str, version: int) -> Path:
    """Write OUT/name/version/model.{xml,bin}; the version dir appears atomically."""
    base = out / name
    base.mkdir(parents=True, exist_ok=True)
    final = base / str(version)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_broken(out: Path) -> Path:
    """broken/1: a complete, well-formed IR (closed </net>, .bin long enough) whose middle layer
    has an operation type that does not exist, so reading it fails inside OpenVINO.

    (A *truncated* XML would look like a copy still in progress: the server waits for such a
    folder to complete instead of loading it, so it could not exercise the load-failure path.)"""
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-broken-"))
    try:
        ov.save_model(build_identity("broken"), str(tmp / "model.xml"), compress_to_fp16=False)
        xml = (tmp / "model.xml").read_text()
        # The identity's Multiply becomes an operation no opset has.
        assert 'type="Multiply"' in xml, "identity fixture changed shape"
        truncated = xml.replace('type="Multiply"', 'type="NoSuchOperation"', 1)
        binary = (tmp / "model.bin").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d = out / "broken" / "1"
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.xml").write_text(truncated)
    (d / "model.bin").write_bytes(binary)
    return d


def _summary(name: str, version: int, d: Path, cm: ov.CompiledModel, note: str = "") -> None:
    print(f"{name}/{version}: inputs[{_port_desc(cm.inputs)}] outputs[{_port_desc(cm.outputs)}] "
          f"{_size(d)} B ok{(' (' + note + ')') if note else ''}")


# --------------------------------------------------------------------------- per-model drivers

def make_add_version(core, out: Path, version: int, name: str = "add", verify: bool = True) -> None:
    d = _save_version(build_add(version), out, name, version)
    if verify:
        x = np.linspace(-4.5, 4.5, 10, dtype=np.float32).reshape(1, 10)
        cm = _check(core, d / "model.xml", {"x": x}, {"y": x + np.float32(version)})
        _summary(name, version, d, cm, f"y = x + {version}")


def make_all(core, out: Path, only: set[str] | None, verify: bool = True) -> None:
    def want(n):
        return only is None or n in only

    f32 = np.float32
    if want("identity"):
        d = _save_version(build_identity(), out, "identity", 1)
        x = np.array([[0.0, -0.0, 1.5, -2.25, 1e-40, 3.4e38, -1e-7, np.inf, -np.inf, np.nan]], f32)
        if verify:
            cm = _check(core, d / "model.xml", {"x": x}, {"y": x.copy()})
            _summary("identity", 1, d, cm, "y == x bit-exact")

    if want("add"):
        for v in (1, 2):
            make_add_version(core, out, v, verify=verify)

    if want("two_io"):
        d = _save_version(build_two_io(), out, "two_io", 1)
        a = np.array([[1, 2, 3, 4]], f32)
        b = np.array([[0.5, -1, 10, 0]], f32)
        if verify:
            cm = _check(core, d / "model.xml", {"a": a, "b": b}, {"sum": a + b, "product": a * b})
            _summary("two_io", 1, d, cm, "sum = a + b, product = a * b")

    if want("int64"):
        d = _save_version(build_int64(), out, "int64", 1)
        x = np.array([[0, 1, -3, 1_000_000_000, -(2**30)]], np.int64)
        if verify:
            cm = _check(core, d / "model.xml", {"x": x}, {"y": x * 2})
            _summary("int64", 1, d, cm, "y = x * 2; CPU computes in i32")

    if want("half"):
        d = _save_version(build_half(), out, "half", 1)
        x = np.array([[0.5, -2.25, 1000, 2048]], np.float16)
        if verify:
            cm = _check(core, d / "model.xml", {"x": x}, {"y": x + np.float16(1)})
            _summary("half", 1, d, cm, "y = x + 1")

    if want("uint8"):
        d = _save_version(build_uint8(), out, "uint8", 1)
        x = np.array([[0, 1, 127, 128, 254, 255]], np.uint8)
        if verify:
            cm = _check(core, d / "model.xml", {"x": x}, {"y": (x + np.uint8(1)).astype(np.uint8)})
            _summary("uint8", 1, d, cm, "y = x + 1 mod 256")

    if want("dynamic"):
        d = _save_version(build_dynamic(), out, "dynamic", 1)
        if verify:
            for n in (1, 3):
                x = np.arange(n * 8, dtype=f32).reshape(n, 8) - 4
                cm = _check(core, d / "model.xml", {"x": x}, {"y": x * f32(3)})
            _summary("dynamic", 1, d, cm, "y = x * 3; checked batch 1 and 3")

    for name, etype, dtype, batch in (("image_stats", ov.Type.u8, np.uint8, 1),
                                      ("image_stats_f32", ov.Type.f32, f32, -1)):
        if not want(name):
            continue
        d = _save_version(build_image_stats(name, etype, batch), out, name, 1)
        if verify:
            rng = np.random.default_rng(7)
            for n in ((1,) if batch == 1 else (1, 2)):
                x = rng.integers(0, 256, size=(n, 32, 32, 3)).astype(dtype)
                mean = x.astype(np.float64).mean(axis=(1, 2)).astype(f32)
                expected = {"mean": mean, "pixel00": x[:, 0, 0, :].astype(f32)}
                cm = _check(core, d / "model.xml", {"image": x}, expected, exact=False)
            _summary(name, 1, d, cm, "mean over H,W and top-left pixel, per channel")

    if want("broken"):
        d = _write_broken(out)
        if verify:
            try:
                core.read_model(str(d / "model.xml"))
            except Exception as exc:  # expected
                lines = [ln for ln in str(exc).splitlines() if ln.strip()]
                msg = lines[-1].strip()[:80] if lines else type(exc).__name__
                print(f"broken/1: {_size(d)} B ok (read_model fails: {msg})")
            else:
                raise AssertionError("broken/1/model.xml unexpectedly loads")


ALL = ["identity", "add", "two_io", "int64", "half", "uint8", "dynamic", "image_stats", "image_stats_f32",
       "broken"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"model repository root (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    ap.add_argument("--only", help=f"comma-separated subset of: {','.join(ALL)}")
    ap.add_argument("--add-version", type=int, metavar="N",
                    help="only write OUT/<model-name>/N/ holding an `add` model with y = x + N")
    ap.add_argument("--model-name", default="add", help="folder name used with --add-version (default: add)")
    ap.add_argument("--no-verify", action="store_true", help="skip compiling/inferring the written models")
    args = ap.parse_args(argv)

    core = ov.Core()
    out = args.out.resolve()
    if args.add_version is not None:
        if args.add_version < 1:
            ap.error("--add-version must be >= 1")
        make_add_version(core, out, args.add_version, args.model_name, verify=not args.no_verify)
        return 0

    only = None
    if args.only:
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = only - set(ALL)
        if unknown:
            ap.error(f"unknown model(s): {','.join(sorted(unknown))}")
    make_all(core, out, only, verify=not args.no_verify)
    return 0


if __name__ == "__main__":
    sys.exit(main())
