"""Measuring models and choosing for a site: accuracy, operating points, calibration, adaptation, benchmarks, targets.

``evaluate``, ``metrics``, ``operating``, ``rocplot`` (a folder of labelled films scored);
``calibrate`` and ``adapt`` (a site's operating points and head, written as a profile the core
applies); ``benchmark``, ``macs`` (latency, memory, multiply-accumulates); ``manifest`` (a
dataset's manifest), ``provenance`` (what made a record), ``targets`` (``targets.json``: what the
models and the benchmark matrix must reach). Training, the converters and the benchmarks use it too.

A module here imports ``edgecxr.core`` and other modules of ``edgecxr.evaluation``, never
``edgecxr.clinic`` (``tests/test_imports.py``).
"""
