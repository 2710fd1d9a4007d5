"""Metrics: classification quality and robustness under attack."""
from .classification import classification_report, confusion_matrix
