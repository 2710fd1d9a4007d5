"""Classifier architectures for 1-channel [0,1] chest X-rays.

Every model built here is a :class:`MedModel`: a :class:`PixelNormalize` layer followed
by a torchvision architecture whose first convolution takes one channel and whose head
has ``num_classes`` outputs.  Because the normalisation is inside the model, attacks,
norms and budgets are always in pixel units and clipping to [0, 1] is always valid.

Layout: :mod:`.architectures` (``MedModel``, ``build_model``), :mod:`.spec` (model specs and registered
modifications), :mod:`.modifications` (the course's modifications: attention modules and pruned shapes,
registered on import), :mod:`.checkpoint` (save / read / load with ``weights_only=True``),
:mod:`.inference` (the one ``predict``).
"""
from .architectures import (ARCHITECTURES, BN_MOMENTUM, Float32Linear, MedModel, PixelNormalize,  # noqa: F401
                            build_model)
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, read_checkpoint, save_checkpoint  # noqa: F401
from .inference import predict  # noqa: F401
from .spec import MODIFICATIONS, apply_modification, build_from_spec, register_modification  # noqa: F401
from . import modifications  # noqa: F401  (registers attention, prune_unstructured, slim)
