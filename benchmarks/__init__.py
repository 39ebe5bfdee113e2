"""The full benchmark matrix (needs the ``train`` extra): every variant x threads x XNNPACK. See matrix.py."""
