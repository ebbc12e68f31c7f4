"""Triton python-backend model that runs an OpenVINO IR: the Triton side of
scripts/bench-batching.sh (docs/benchmarks.md, "Dynamic batching").

Triton's dynamic batcher hands execute() the requests it gathered; they are concatenated along
the first dimension, run as one OpenVINO inference, and the output rows are split back per
request, which is what vinoserve's batcher does. The model's config.pbtxt names the IR
(parameters "ir") and may pass OpenVINO CPU properties as "ov_<KEY>" parameters. One input and
one output, as in the benchmark's MLP.
"""

import json
import os
import sys

# The backend stub's embedded interpreter ignores PYTHONPATH; honour it here, so that numpy and
# openvino come from the install vinoserve links (scripts/env.sh), the same OpenVINO version.
for path in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if path and path not in sys.path:
        sys.path.insert(0, path)

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        properties = {k[3:]: v for k, v in params.items() if k.startswith("ov_")}
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        self.compiled = ov.Core().compile_model(params["ir"], "CPU", properties)
        self.request = self.compiled.create_infer_request()

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        result = self.request.infer({self.input: batch}, share_inputs=True)
        rows = result[self.compiled.output(0)]
        responses, start = [], 0
        for x in inputs:
            end = start + x.shape[0]
            tensor = pb_utils.Tensor(self.output, np.ascontiguousarray(rows[start:end]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start = end
        return responses
