"""Converters: trained Keras model → pruned / quantized ``.tflite`` variants with verified model cards.

Run from a checkout with the ``train`` extra: ``python -m converters --help``.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
