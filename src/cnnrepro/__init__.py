"""cnnrepro: a reproducible pipeline for LeNet-5, AlexNet, DeepFace and GoogLeNet.

The library holds the machine-learning code; `pipeline/` holds the thin DVC stage entry points that call it.
"""

__version__ = "0.1.0"
