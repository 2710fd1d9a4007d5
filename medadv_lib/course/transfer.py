"""Notebook 06's pipeline: every course model of one input size — undefended (notebook 01) and defended
(notebooks 04–05) — with its own course UAP, for the transferability matrix
(:func:`medadv_lib.metrics.transfer.transfer_matrix`).  Everything is loaded from the caches of the
earlier notebooks (or built the same way when a notebook was skipped)."""
from __future__ import annotations

from .adversarial import best_arm_of_04, course_adversarial_training, course_uap_finetune
from .config import defense_base, parse_defense, settings
from .pipelines import course_defense, course_model, course_uap

DEFENDED = ("best-04", "uap-finetune", "pgd-at")
"""The defended models :func:`transfer_study` adds by default: notebook 04's best arm, the last round of
UAP fine-tuning and PGD adversarial training (notebook 05)."""


def transfer_study(fast: bool, models=None, defended=DEFENDED, base: str | None = None, output_dir="../runs",
                   data_dir=None, device=None, seed: int = 0, precision=None, progress: bool = False):
    """``(models, uaps, infos)``: ``{name: model}``, ``{name: UAPResult}`` (each model's own ζ = 2 % L∞
    course UAP) and ``{name: info}`` (as :func:`~medadv_lib.train.load_or_train`) for the course's
    ``models`` (default: the mode's, notebook 01) and the ``defended`` versions of ``base`` (default
    :func:`~medadv_lib.course.config.defense_base`; names from :data:`DEFENDED`; ``"best-04"`` becomes the arm's own name, e.g. ``cbam+prune0.6``).
    All at the mode's image size, so every UAP fits every model."""
    base = base or defense_base(fast)
    run = dict(output_dir=output_dir, data_dir=data_dir, device=device, seed=seed, precision=precision)
    size = settings(fast).image_size
    pairs = {n: course_model(n, fast, progress=progress, **run) for n in (models or settings(fast).models)}
    for d in defended:
        if d == "best-04":
            arm, _ = best_arm_of_04(output_dir)
            pairs[arm] = course_defense(base, parse_defense(arm), fast, progress=progress, **run)
        elif d == "uap-finetune":
            last = course_uap_finetune(base, fast, progress=progress, **run)[-1]
            pairs[d] = (last["model"], last["info"])
        elif d in ("uat", "pgd-at"):
            pairs[d] = course_adversarial_training(base, d, fast, progress=progress, **run)
        else:
            raise ValueError(f"unknown defended model {d!r}; use {', '.join(DEFENDED)} or uat")
    uaps = {n: course_uap(m, 0.02, "inf", fast=fast, output_dir=output_dir, data_dir=data_dir, seed=seed,
                          image_size=size) for n, (m, _) in pairs.items()}
    return {n: m for n, (m, _) in pairs.items()}, uaps, {n: i for n, (_, i) in pairs.items()}
