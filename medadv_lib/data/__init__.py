"""Data: find, validate and load the chest X-ray dataset; build it from public sources."""
from .dataset import (CXRDataset, DataError, DATASET_NAME, ENV_VAR, REQUIRED_COLUMNS, SPLITS, ImageDecodeError,
                      augment_batch, candidate_dirs, class_weights, decode_gray, find_data_dir, image_norm_stats,
                      load_metadata, load_split, read_image, stratified_indices)

__all__ = ["CXRDataset", "DataError", "DATASET_NAME", "ENV_VAR", "REQUIRED_COLUMNS", "SPLITS", "ImageDecodeError",
           "augment_batch", "candidate_dirs", "class_weights", "decode_gray", "find_data_dir", "image_norm_stats",
           "load_metadata", "load_split", "read_image", "stratified_indices"]
