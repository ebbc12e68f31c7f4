"""KServe's own Python SDK against a running vinoserve: health, readiness, inference (JSON and
binary tensors, request `parameters`), error bodies. (tritonclient is checked by
tritonclient_check.py: both packages register the `inference.*` protobuf messages, so they
cannot be imported into one process.)

Usage: kserve_sdk.py REST_ADDR GRPC_ADDR   (the server serves the `add` fixture)
Exits non-zero on the first difference, saying what differed.
"""
import asyncio
import sys

import httpx
import numpy as np
from kserve import (
    InferenceGRPCClient,
    InferenceRESTClient,
    InferInput,
    InferRequest,
    RESTConfig,
)

X = np.arange(10, dtype=np.float32).reshape(1, 10)


def add_request(binary: bool, request_id: str) -> InferRequest:
    tensor = InferInput("x", [1, 10], "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    return InferRequest(
        model_name="add",
        infer_inputs=[tensor],
        request_id=request_id,
        parameters={"client_tag": "kserve-sdk"},
    )


async def kserve_rest(base: str) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    assert await client.is_server_live(base) is True, "is_server_live"
    assert await client.is_server_ready(base) is True, "is_server_ready"
    assert await client.is_model_ready(base, "add") is True, "is_model_ready(add)"
    assert await client.is_model_ready(base, "nope") is False, "is_model_ready(nope)"
    for binary in (False, True):
        answer = await client.infer(base, add_request(binary, f"rest-{binary}"), model_name="add")
        assert answer.model_name == "add", answer.model_name
        assert answer.id == f"rest-{binary}", answer.id
        y = answer.outputs[0].as_numpy()
        assert answer.outputs[0].name == "y", answer.outputs[0].name
        np.testing.assert_array_equal(y, X + 2, err_msg=f"REST binary={binary}")
    wrong = InferInput("x", [1, 11], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 11), np.float32), binary_data=False)
    try:
        await client.infer(base, InferRequest(model_name="add", infer_inputs=[wrong]), model_name="add")
    except httpx.HTTPStatusError as error:
        assert error.response.status_code == 400, error.response.status_code
        assert "Invalid input shape" in str(error), str(error)
    else:
        raise AssertionError("a wrong shape was accepted")
    await client.close()
    print("kserve REST: live, ready, model ready, infer JSON and binary, error body: ok")


async def kserve_grpc(address: str) -> None:
    client = InferenceGRPCClient(address, retries=2, timeout=60)
    assert await client.is_server_live() is True, "is_server_live"
    assert await client.is_server_ready() is True, "is_server_ready"
    assert await client.is_model_ready("add") is True, "is_model_ready(add)"
    answer = await client.infer(add_request(False, "grpc-1"))
    assert answer.model_name == "add", answer.model_name
    assert answer.id == "grpc-1", answer.id
    np.testing.assert_array_equal(answer.outputs[0].as_numpy(), X + 2, err_msg="gRPC")
    await client.close()
    print("kserve gRPC: live, ready, model ready, infer: ok")


async def main(rest: str, grpc: str) -> None:
    await kserve_rest(f"http://{rest}")
    await kserve_grpc(grpc)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
