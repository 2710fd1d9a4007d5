"""medadv_lib: the library behind the medadv course.

Adversarial attacks (universal and per-image) and defenses for COVID-19
chest X-ray classifiers.  Pixel space is always [0, 1] with one grayscale
channel; every model carries its own normalisation as its first layer.
"""

__version__ = "0.1.0"

LABELS = ("normal", "pneumonia", "COVID-19")
"""Class names, in label-index order, used everywhere in the course."""
