"""beauty_predictor: article 001 (Russian), "abstract beauty is predictability", in TensorFlow/Keras 3 (README.md)."""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"  # pinned before any module of the package imports keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
