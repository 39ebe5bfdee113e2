"""edgecxr: chest X-ray triage models that run on a Raspberry Pi (research use only).

    from edgecxr import load_model
    model = load_model()                 # bundled default
    p = model.predict("scan.png")        # path, numpy array or DICOM
    p.label, p.probabilities, p.latency_ms, p.warnings, p.to_dict()

Importing edgecxr never imports TensorFlow.
"""
from edgecxr.core.card import ModelError
from edgecxr.core.imageio import ImageError, load_image
from edgecxr.core.inputs import find_images
from edgecxr.core.model import Model, Prediction, load_model

__all__ = ["ImageError", "Model", "ModelError", "Prediction", "find_images", "load_image", "load_model"]
__version__ = "0.1.0"
