"""The runtime core: a verified model, its card and the one preprocessing, from an image file to a prediction.

What a board needs to classify a film (numpy, OpenCV, pydicom, LiteRT): images read (``imageio``,
``headers``, ``inputs``), cards and their parts (``card``, ``cardparts``, ``fields``, ``embedded``,
``families``, ``registry``), preprocessing and input checks (``preprocess``, ``checks``,
``regions``), the interpreter (``interpreter``), the classifier and the lung model (``model``,
``lungs``), heatmaps (``cam``) and what a site profile applies (``site``, ``head``, ``calibration``).

A module here imports only the standard library, the runtime's dependencies and other modules of
``edgecxr.core``: never ``edgecxr.evaluation`` or ``edgecxr.clinic`` (``tests/test_imports.py``).
"""
