"""TF Serving's own Python API (tensorflow-serving-api with TensorFlow) against vinoserve
serving a TF Serving repository unchanged (tests/fixtures/tf/scorer): Predict with
`tf.make_tensor_proto` and `signature_name`, GetModelMetadata's SignatureDefMap, GetModelStatus,
and the REST predict a TF Serving user would send; answers compared with TensorFlow's
(tests/fixtures/tf/reference.json).

Usage: tfs_api_check.py REST_ADDR GRPC_ADDR REFERENCE_JSON
"""
import json
import sys
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

TOLERANCE = 1e-5


def main(rest: str, address: str, reference_path: str) -> None:
    reference = json.load(open(reference_path))["models"]["scorer"]
    channel = grpc.insecure_channel(address)
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "scorer"
    versions = models.GetModelStatus(status, timeout=60).model_version_status
    assert sorted(v.version for v in versions) == [1, 2], versions

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "scorer"
    request.metadata_field.append("signature_def")
    metadata = predict.GetModelMetadata(request, timeout=60)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def["serving_default"]
    assert set(serving.inputs) == {"features"}, serving.inputs
    assert set(serving.outputs) == {"score", "doubled"}, serving.outputs

    worst = 0.0
    for version in ("1", "2"):
        for case in reference[version]["cases"]:
            features = np.array(case["inputs"]["features"]["data"], np.float32).reshape(
                case["inputs"]["features"]["shape"]
            )
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "scorer"
            request.model_spec.signature_name = "serving_default"
            request.model_spec.version.value = int(version)
            request.inputs["features"].CopyFrom(tf.make_tensor_proto(features))
            answer = predict.Predict(request, timeout=60)
            for key, want in case["outputs"].items():
                got = tf.make_ndarray(answer.outputs[key])
                want = np.array(want["data"], np.float32).reshape(want["shape"])
                assert got.shape == want.shape, (key, got.shape, want.shape)
                worst = max(worst, float(np.max(np.abs(got - want))))
            # The REST API, as TF Serving documents it (row format, signature_name).
            body = json.dumps({"signature_name": "serving_default", "instances": features.tolist()})
            url = f"http://{rest}/v1/models/scorer/versions/{version}:predict"
            answer = json.load(urllib.request.urlopen(url, body.encode()))
            rows = answer["predictions"]
            doubled = np.array([row["doubled"] for row in rows], np.float32)
            want = np.array(case["outputs"]["doubled"]["data"], np.float32).reshape(doubled.shape)
            worst = max(worst, float(np.max(np.abs(doubled - want))))
    assert worst <= TOLERANCE, f"max abs difference {worst}"
    print(f"tensorflow-serving-api (gRPC) and TFS REST on SavedModels match TensorFlow: max abs {worst:.2e}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
