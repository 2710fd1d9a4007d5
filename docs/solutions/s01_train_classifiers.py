"""Worked solutions to the exercises of notebook 01 (``01_train_classifiers.ipynb``).

Run by ``tests/test_solutions.py`` on small inputs (tiny models, a few epochs at a small image size); in the
notebook pass its own models and data, e.g. ``exercise_1(models["resnet18"], course.course_model("resnet18",
FAST, OUTPUT_DIR, crop_top=True)[0], IMAGE_SIZE)``."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import pandas as pd
import torch

import medadv_lib.models.architectures as A
from medadv_lib.data import load_split
from medadv_lib.data.explore import hide_region
from medadv_lib.models import build_model
from medadv_lib.train import TrainConfig, collapse_check, evaluate, fit


def border_probe(model, x, y) -> pd.Series:
    """Balanced accuracy of ``model`` on the full images, the border only and the centre only."""
    return pd.Series({"full": evaluate(model, x, y)["balanced_accuracy"],
                      **{f"{r} only": evaluate(model, hide_region(x, r), y)["balanced_accuracy"] for r in ("border", "center")}})


def exercise_1(model, model_crop_top, image_size: int, data_dir=None, limit: int | None = None) -> pd.DataFrame:
    """The border probe of a model trained on whole images and of one trained with ``crop_top=True``, each on
    the test images prepared the way it was trained (the cropped model gets ``load_split(..., crop_top=True)``:
    it never saw the top sixth, and the resized crop moves every anatomical structure).

    If the border-only score drops with ``crop_top``, part of the shortcut sat in the top strip (text labels
    and markers, which COVIDx crops for this reason); if it stays well above chance (0.33), the rest of the
    frame — sides, bottom, exposure — still carries the source.
    """
    x, y = load_split("test", image_size, data_dir, limit=limit)
    xc, yc = load_split("test", image_size, data_dir, crop_top=True, limit=limit)
    return pd.DataFrame({"whole image": border_probe(model, x, y), "crop_top=True": border_probe(model_crop_top, xc, yc)}).T


def _train(config: TrainConfig, train, val):
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    history = fit(model, train, val, config, progress=False, precision="fp32")
    return model, history


def exercise_2(config: TrainConfig, train, val, test, factor: int = 2) -> pd.DataFrame:
    """Train ``config`` for its epochs and for ``factor`` × as many (the notebook: ``EPOCHS = 20``, or
    ``course.course_model(name, FAST, OUTPUT_DIR, epochs=20)``) and compare test and best validation accuracy.

    The validation accuracy of the kept epoch rises with more epochs almost by construction (more epochs to
    pick the best from: the checkpoint is the best validation macro-F1); the test accuracy is the honest
    number. On ~1600 images a small network gains a few points at most, and the gap between the two is a
    reminder that selecting on validation overfits it a little.
    """
    rows = {}
    for e in (config.epochs, factor * config.epochs):
        model, history = _train(dataclasses.replace(config, epochs=e), train, val)
        r = evaluate(model, *test)
        rows[e] = {"test accuracy": r["accuracy"], "test balanced accuracy": r["balanced_accuracy"],
                   "best val accuracy": max(h["val_accuracy"] for h in history)}
    return pd.DataFrame(rows).T.rename_axis("epochs")


def exercise_3(argv=("--model", "resnet18", "--image-size", "112", "--epochs", "10"), out: str = "runs") -> pd.Series:
    """``medadv train ... --json`` run in-process; returns its per-class sensitivity.

    The CLI trains with :class:`~medadv_lib.train.TrainConfig`'s defaults (batch 32, lr 2e-3, the whole
    training split) where the notebook uses the course's FAST configuration, so the numbers differ a little
    from the notebook's table even for the same epochs and seed — and the checkpoint is another file. Compare
    which class is found least often: that ranking is usually stable, the decimals are not.
    """
    from medadv_lib.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["train", *argv, "--out", str(out), "--json"]) == 0
    result = json.loads(buf.getvalue().strip().splitlines()[-1])
    return pd.Series({k: v["sensitivity"] for k, v in result["per_class"].items()}, name="sensitivity")


def exercise_4(config: TrainConfig, train, val, momentum: float = 0.01) -> dict:
    """Retrain with torchvision's MobileNetV3 BatchNorm momentum (0.01) and count the collapsed epochs.

    With ``momentum=0.01`` the running statistics that eval mode uses move 1% of the way per step, so after
    one short epoch they still mostly hold their initial values: the network trains in train mode but
    predicts (nearly) one class in eval mode, and most epochs after the warm-up collapse (7 of 10 in the
    course's earlier version). The course's ``BN_MOMENTUM = 0.1`` is restored afterwards.
    """
    old = A.BN_MOMENTUM
    A.BN_MOMENTUM = momentum
    try:
        model, history = _train(config, train, val)
    finally:
        A.BN_MOMENTUM = old
    bn = [m.momentum for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    return {**collapse_check(history), "bn_momentum": sorted(set(bn))}
