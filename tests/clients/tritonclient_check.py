"""tritonclient (HTTP and gRPC) against a running vinoserve: health, server metadata, model
readiness, inference with two inputs and two outputs.

Usage: tritonclient_check.py REST_ADDR GRPC_ADDR   (the server serves the `two_io` fixture)
"""
import sys

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http


def triton(rest: str, grpc: str) -> None:
    for module, address in ((triton_http, rest), (triton_grpc, grpc)):
        client = module.InferenceServerClient(address)
        assert client.is_server_live() and client.is_server_ready(), module.__name__
        assert client.is_model_ready("two_io"), module.__name__
        metadata = client.get_server_metadata()
        name = metadata["name"] if isinstance(metadata, dict) else metadata.name
        assert name == "vinoserve", metadata
        a = np.array([[1, 2, 3, 4]], np.float32)
        b = np.array([[0.5, -1, 10, 0]], np.float32)
        inputs = [module.InferInput("a", [1, 4], "FP32"), module.InferInput("b", [1, 4], "FP32")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        result = client.infer("two_io", inputs)
        np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
        np.testing.assert_array_equal(result.as_numpy("product"), a * b)
    print("tritonclient HTTP and gRPC: health, metadata, infer: ok")



if __name__ == "__main__":
    triton(sys.argv[1], sys.argv[2])
