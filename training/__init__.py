"""Training for edgecxr: data pipeline, the MLP-12 and ResNet-18-style models, the training loop.

Run from a checkout with the ``train`` extra installed: ``python -m training --help``.
Importing this package sets ``TF_USE_LEGACY_KERAS=1`` so that ``tf_keras`` (Keras 2) is used,
which tensorflow-model-optimization needs.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
