"""The benchmark ResNets' architecture, shared by scripts/make_resnet.py (OpenVINO IR) and
benches/tf_baseline.py (the same graphs in Keras), so the two runtimes always compute the same
networks. No imports: tf_baseline.py loads it without OpenVINO's python packages on its path."""

MODELS = {  # name: (ResNet version, units per block)
    "resnet_v1_50": (1, [3, 4, 6, 3]),
    "resnet_v2_50": (2, [3, 4, 6, 3]),
    "resnet_v1_152": (1, [3, 8, 36, 3]),
    "resnet_v2_152": (2, [3, 8, 36, 3]),
}
NUM_CLASSES = 1000
RESIDUAL_SCALE = 0.2  # multiplier on the He init of each residual branch's last conv
