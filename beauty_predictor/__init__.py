"""beauty_predictor: article 001 (Russian), "abstract beauty is predictability", in TensorFlow/Keras 3.

A centre predictor guesses a 32x32 centre from its 128x128 surroundings; an improver network is
trained so that its output Y stays close to the input X while the picture Z rebuilt from
predicted centres comes close to Y: loss k1*MAE(X,Y) + k2*MAE(Y,Z). Scripts, in pipeline order:
export_photos, train_predictor, train_improver (VARIANT article / contrast / deep), sweep,
recursive, bench.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"  # pinned before any module of the package imports keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
