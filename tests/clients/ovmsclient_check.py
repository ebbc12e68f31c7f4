"""OVMS's own Python client (ovmsclient) against a running vinoserve, over gRPC and REST: model
status, metadata and predict, with the version it sends by default (0, "the default version")
and with explicit versions.

Usage: ovmsclient_check.py REST_ADDR GRPC_ADDR   (the server serves `add` versions 1 and 2, and
`two_io`)
"""
import sys

import numpy as np
from ovmsclient import make_grpc_client, make_http_client

X = np.arange(10, dtype=np.float32).reshape(1, 10)


def check(client, transport: str) -> None:
    status = client.get_model_status(model_name="add")
    assert set(status) == {1, 2}, f"{transport} status {status}"
    assert all(s["state"] == "AVAILABLE" for s in status.values()), status
    assert client.get_model_status(model_name="add", model_version=1)[1]["error_code"] == 0

    metadata = client.get_model_metadata(model_name="add")
    assert metadata["model_version"] == 2, f"{transport} metadata {metadata}"
    assert metadata["inputs"]["x"]["shape"] == [1, 10], metadata
    assert metadata["inputs"]["x"]["dtype"] == "DT_FLOAT", metadata
    assert metadata["outputs"]["y"]["shape"] == [1, 10], metadata

    np.testing.assert_array_equal(client.predict({"x": X}, "add"), X + 2, err_msg=transport)
    np.testing.assert_array_equal(
        client.predict({"x": X}, "add", model_version=1), X + 1, err_msg=transport
    )
    a = np.array([[1, 2, 3, 4]], np.float32)
    b = np.array([[0.5, -1, 10, 0]], np.float32)
    outputs = client.predict({"a": a, "b": b}, "two_io")
    np.testing.assert_array_equal(outputs["sum"], a + b, err_msg=transport)
    np.testing.assert_array_equal(outputs["product"], a * b, err_msg=transport)
    print(f"ovmsclient {transport}: status, metadata, predict (default and pinned versions): ok")


if __name__ == "__main__":
    rest, grpc = sys.argv[1], sys.argv[2]
    check(make_grpc_client(grpc), "gRPC")
    check(make_http_client(rest), "REST")
