"""Synthetic burned-in markers (``--markers``): text, letters, arrows and boxes on films of ALL classes.

Web-collected COVID films carry arrows, letters and boxes; a model can learn "marker means
COVID". Burning such marks at random places into every class's training films, with a chance that
does not depend on the label (the functions here never see one), makes a marker carry no class.

A bank of stamps is drawn once with OpenCV (white on black, 0-1 coverage masks of a fixed square
size): side letters (L, R), view and position words (AP, PA, PORTABLE, SUPINE, ERECT), random
letters and digits, dates, arrows at random angles and rectangles; a text stamp too faint to see is
drawn thicker (:data:`MIN_INK`), whichever OpenCV renders it. In the pipeline each image gets
up to two stamps at random positions, white or black, at a random strength.
"""
from __future__ import annotations

import string

import cv2
import numpy as np
import tensorflow as tf

# Every text stamp carries at least MIN_INK pixels' worth of full coverage: one drawn fainter is drawn again one
# pixel thicker (up to MAX_THICK). No random number is drawn for it, so a bank with no faint stamp is unchanged.
MIN_INK = 3.0
MAX_THICK = 4
WORDS = ("L", "R", "AP", "PA", "PORTABLE", "SUPINE", "ERECT", "UPRIGHT", "SEMI-ERECT", "LAT", "1", "2", "A", "B")


def stamp_bank(image_side: int, count: int = 256, seed: int = 0) -> np.ndarray:
    """(count, S, S) float32 coverage masks in [0, 1], S = half the image side."""
    rng = np.random.default_rng(seed)
    side = max(16, image_side // 2)
    bank = np.zeros((count, side, side), np.float32)
    chars = string.ascii_uppercase + string.digits
    for k in range(count):
        canvas = np.zeros((side, side), np.uint8)
        kind = k % 4
        thick = int(rng.integers(1, 3))
        if kind in (0, 1):  # a word, or random letters/digits (a date-like string sometimes)
            if kind == 0:
                text = str(rng.choice(WORDS))
            elif rng.random() < 0.3:
                text = f"{rng.integers(1, 29):02d}.{rng.integers(1, 13):02d}.{rng.integers(0, 100):02d}"
            else:
                text = "".join(rng.choice(list(chars), size=int(rng.integers(1, 5))))
            scale = max(0.3, float(rng.uniform(0.25, 0.7)) * side / 64.0)  # legible down to tiny inputs
            font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_PLAIN]))
            (w, h), _ = cv2.getTextSize(text, font, scale, thick)
            x0 = int(rng.integers(0, max(1, side - w)))
            y0 = int(rng.integers(min(h + 1, side - 1), side))
            cv2.putText(canvas, text, (x0, y0), font, scale, 255, thick, cv2.LINE_AA)
            while canvas.sum() < MIN_INK * 255 and thick < MAX_THICK:  # too faint to see (OpenCV >= 5.1 draws an "I" at scale 0.3 as 2 px of ink)
                thick += 1
                canvas[:] = 0
                cv2.putText(canvas, text, (x0, y0), font, scale, 255, thick, cv2.LINE_AA)
        elif kind == 2:  # an arrow at a random angle
            length = rng.uniform(0.3, 0.9) * side
            angle = rng.uniform(0, 2 * np.pi)
            cx, cy = side / 2, side / 2
            dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
            cv2.arrowedLine(canvas, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 255, thick, cv2.LINE_AA, tipLength=0.35)
        else:  # a box outline
            a, b = rng.integers(0, side // 3, 2)
            c, d = rng.integers(2 * side // 3, side, 2)
            cv2.rectangle(canvas, (int(a), int(b)), (int(c), int(d)), 255, thick)
        bank[k] = canvas / 255.0
    return bank


def burn_markers(images: tf.Tensor, bank: tf.Tensor, rng: tf.random.Generator, p: float = 0.5, max_marks: int = 2) -> tf.Tensor:
    """Burn up to ``max_marks`` stamps into each image of a batch, each with chance ``p``; same shape, [0, 1]."""
    n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    side = tf.shape(bank)[1]
    for _ in range(max_marks):
        pick = rng.uniform([n], 0, tf.cast(tf.shape(bank)[0], tf.float32))
        stamps = tf.gather(bank, tf.cast(pick, tf.int32))[..., None]
        top = tf.cast(rng.uniform([n], 0, tf.cast(h - side + 1, tf.float32)), tf.int32)
        left = tf.cast(rng.uniform([n], 0, tf.cast(w - side + 1, tf.float32)), tf.int32)
        masks = tf.map_fn(
            lambda args: tf.image.pad_to_bounding_box(args[0], args[1], args[2], h, w),
            (stamps, top, left),
            fn_output_signature=tf.float32,
        )
        on = tf.cast(rng.uniform([n, 1, 1, 1]) < p, tf.float32)
        strength = rng.uniform([n, 1, 1, 1], 0.6, 1.0) * on
        value = tf.where(rng.uniform([n, 1, 1, 1]) < 0.8, 1.0, 0.0)  # mostly white marks, sometimes black
        alpha = masks * strength
        images = images * (1.0 - alpha) + value * alpha
    return tf.clip_by_value(images, 0.0, 1.0)
