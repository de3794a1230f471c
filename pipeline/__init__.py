"""bnbench: a reproducible benchmark of batch normalization, activations and dropout."""

import os

# Keep TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) out of every stage's log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
