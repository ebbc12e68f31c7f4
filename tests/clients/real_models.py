"""Real public models (tests/clients/fetch_models.py) served by vinoserve, checked against
their reference runtimes on the same inputs: onnxruntime for ONNX, LiteRT for TFLite, and the
ONNX export of the same weights for the PaddlePaddle model. Driven through the clients users
have: tritonclient (KServe v2, gRPC and HTTP) and ovmsclient (TF Serving API, gRPC and REST).

Usage: real_models.py REST_ADDR GRPC_ADDR MODELS_DIR
(the server serves ocr_cls, ocr_cls_paddle, silero_vad and face_detection from MODELS_DIR,
compiled with INFERENCE_PRECISION_HINT f32)
"""
import json
import sys
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from ai_edge_litert.interpreter import Interpreter
from ovmsclient import make_grpc_client, make_http_client

TOLERANCE = 1e-4
RNG = np.random.default_rng(0)
onnxruntime.set_default_logger_severity(3)  # its notes on unused initializers are not ours


def close(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    worst = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    assert worst <= TOLERANCE, f"{what}: max abs difference {worst}"
    return worst


def triton_infer(client, module, model, inputs, outputs, **binary):
    """`binary`: tritonclient.http's binary_data flag (False sends JSON tensors)."""
    tensors = []
    for name, value in inputs.items():
        datatype = {np.float32: "FP32", np.int64: "INT64"}[value.dtype.type]
        tensor = module.InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value, **binary)
        tensors.append(tensor)
    result = client.infer(model, tensors)
    return {name: result.as_numpy(name) for name in outputs}


def ocr_classifier(rest, grpc, models):
    """Dynamic batch, height and width; an output named with '/' and '.'."""
    reference = onnxruntime.InferenceSession(str(models / "ocr_cls/1/model.onnx"))
    out = "save_infer_model/scale_0.tmp_1"
    worst = 0.0
    client = triton_grpc.InferenceServerClient(grpc)
    for shape in ((1, 3, 48, 192), (3, 3, 48, 96)):
        x = RNG.standard_normal(shape).astype(np.float32)
        want = reference.run([out], {"x": x})[0]
        got = triton_infer(client, triton_grpc, "ocr_cls", {"x": x}, [out])[out]
        worst = max(worst, close(got, want, f"ocr_cls {shape} (KServe gRPC)"))
        # The same weights exported for PaddlePaddle, served from .pdmodel/.pdiparams.
        paddle = triton_infer(client, triton_grpc, "ocr_cls_paddle", {"x": x}, ["softmax_0.tmp_0"])
        worst = max(worst, close(paddle["softmax_0.tmp_0"], want, f"ocr_cls_paddle {shape}"))
    x = RNG.standard_normal((2, 3, 48, 160)).astype(np.float32)
    got = make_http_client(rest).predict({"x": x}, "ocr_cls")
    worst = max(worst, close(got, reference.run([out], {"x": x})[0], "ocr_cls (TFS REST)"))
    metadata = json.load(urllib.request.urlopen(f"http://{rest}/v2/models/ocr_cls"))
    assert metadata["inputs"][0]["shape"] == [-1, 3, -1, -1], metadata
    assert metadata["outputs"][0]["name"] == out, metadata
    print(f"ocr_cls (ONNX, dynamic) and ocr_cls_paddle (Paddle) match onnxruntime: max abs {worst:.2e}")


def voice_activity(rest, grpc, models):
    """An int64 scalar input and recurrent state fed back across requests."""
    reference = onnxruntime.InferenceSession(str(models / "silero_vad/1/model.onnx"))
    sr = np.array(16000, dtype=np.int64)
    state = np.zeros((2, 1, 128), np.float32)
    served_state = state
    worst = 0.0
    client = triton_grpc.InferenceServerClient(grpc)
    for step in range(4):
        chunk = (RNG.standard_normal((1, 576)) * 0.1).astype(np.float32)
        want, state = reference.run(["output", "stateN"], {"input": chunk, "state": state, "sr": sr})
        got = triton_infer(client, triton_grpc, "silero_vad",
                           {"input": chunk, "state": served_state, "sr": sr}, ["output", "stateN"])
        served_state = got["stateN"]
        worst = max(worst, close(got["output"], want, f"silero step {step}"),
                    close(served_state, state, f"silero state step {step}"))
    # KServe REST, JSON and binary tensors ("shape": [] for sr), through tritonclient's HTTP client.
    for binary in (False, True):
        chunk = (RNG.standard_normal((1, 576)) * 0.1).astype(np.float32)
        want = reference.run(["output", "stateN"], {"input": chunk, "state": state, "sr": sr})
        got = triton_infer(triton_http.InferenceServerClient(rest), triton_http, "silero_vad",
                           {"input": chunk, "state": state, "sr": sr}, ["output", "stateN"],
                           binary_data=binary)
        worst = max(worst, close(got["output"], want[0], f"silero KServe REST binary={binary}"),
                    close(got["stateN"], want[1], f"silero KServe REST state binary={binary}"))
    # Through the TF Serving API: a 0-d TensorProto for sr.
    chunk = (RNG.standard_normal((1, 576)) * 0.1).astype(np.float32)
    inputs = {"input": chunk, "state": state, "sr": sr}
    want = reference.run(["output", "stateN"], inputs)
    for transport, client in (("gRPC", make_grpc_client(grpc)), ("REST", make_http_client(rest))):
        got = client.predict(inputs, "silero_vad")
        worst = max(worst, close(got["output"], want[0], f"silero TFS {transport}"),
                    close(got["stateN"], want[1], f"silero TFS {transport} state"))
    metadata = json.load(urllib.request.urlopen(f"http://{rest}/v2/models/silero_vad"))
    shapes = {t["name"]: t["shape"] for t in metadata["inputs"]}
    assert shapes["sr"] == [], f"a scalar's shape is [] in metadata: {shapes}"
    print(f"silero_vad (ONNX, int64 scalar, state) matches onnxruntime: max abs {worst:.2e}")


def face_detection(rest, grpc, models):
    """A TFLite model, against LiteRT."""
    interpreter = Interpreter(model_path=str(models / "face_detection/1/model.tflite"))
    interpreter.allocate_tensors()
    image = RNG.uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    want = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    client = triton_http.InferenceServerClient(rest)
    got = triton_infer(client, triton_http, "face_detection", {"input": image}, list(want))
    worst = max(close(got[name], want[name], f"face_detection {name}") for name in want)
    print(f"face_detection (TFLite) matches LiteRT: max abs {worst:.2e}")


if __name__ == "__main__":
    rest, grpc, models = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    ocr_classifier(rest, grpc, models)
    voice_activity(rest, grpc, models)
    face_detection(rest, grpc, models)
