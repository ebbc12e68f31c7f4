"""The OpenVINO Model API against vinoserve, as against OVMS: a classifier whose rt_info holds
model_info (type, labels, preprocessing) is exported by the Model API itself (preprocessing
embedded in the graph, as users deploy to OVMS), then `Model.create_model(OVMSAdapter(...))`
on the served model must give the same wrapper, labels and scores as a local OpenvinoAdapter
on the same IR.

Usage:
    model_api_check.py prepare DIR        writes DIR/classifier/1/model.{xml,bin}
    model_api_check.py check REST_ADDR DIR
"""
import sys
from pathlib import Path

import numpy as np
import openvino as ov
from model_api.adapters import OpenvinoAdapter, OVMSAdapter, create_core
from model_api.models import Model
from openvino import opset13 as ops

F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def local(xml: Path):
    adapter = OpenvinoAdapter(create_core(), str(xml), device="CPU", plugin_config=F32)
    return Model.create_model(adapter, preload=True)


def prepare(out: Path) -> None:
    image = ops.parameter([1, 3, 32, 32], np.float32, name="image")
    image.output(0).set_names({"image"})
    mean = ops.reduce_mean(image, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    weights = ops.constant(np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32))
    logits = ops.matmul(mean, weights, False, False)
    logits.output(0).set_names({"logits"})
    model = ov.Model([logits], [image], "classifier")
    for key, value in {
        "model_type": "Classification",
        "labels": "cat dog bird fish",
        "mean_values": "0 0 0",
        "scale_values": "255 255 255",
    }.items():
        model.set_rt_info(value, ["model_info", key])
    raw = out / "raw.xml"
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(raw), compress_to_fp16=False)
    version = out / "classifier" / "1"
    version.mkdir(parents=True, exist_ok=True)
    local(raw).save(str(version / "model.xml"))
    print(f"model_api_check.py: exported {version / 'model.xml'}")


def check(rest: str, out: Path) -> None:
    xml = out / "classifier" / "1" / "model.xml"
    here = local(xml)
    served = Model.create_model(OVMSAdapter(f"{rest}/v2/models/classifier"), preload=True)
    assert type(served) is type(here), f"{type(served).__name__} != {type(here).__name__}"
    assert served.params.labels == here.params.labels, f"{served.params.labels} != {here.params.labels}"
    rng = np.random.default_rng(1)
    for height, width in ((40, 50), (64, 32), (32, 32)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        got, want = served(image), here(image)
        labels = [(label.id, label.name) for label in got.top_labels]
        assert labels == [(label.id, label.name) for label in want.top_labels], f"{got} != {want}"
        for label, expected in zip(got.top_labels, want.top_labels):
            assert abs(label.confidence - expected.confidence) <= 1e-5, f"{got} != {want}"
    print(f"Model API: {type(served).__name__} over OVMSAdapter matches OpenvinoAdapter: {got}")


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        check(sys.argv[2], Path(sys.argv[3]))
