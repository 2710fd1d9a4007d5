"""Course-wide settings, so every notebook trains (or reuses) the very same models, UAPs and defenses:
the FAST (CPU) and FULL (GPU) modes, the SGD-UAP settings, the defense fine-tuning and robustness
evaluation settings, and the arms of notebook 04's ablation."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from ..defenses import KINDS, normalize_defense
from ..metrics.defense import RobustnessSettings
from ..train import TrainConfig

# FAST: CPU-friendly (CI, laptops) — small images, few epochs, a half-width ResNet-18.  FULL: the study for a GPU.
# FAST was 96 px, ResNet-18 6 epochs (test accuracy ~0.80) and MobileNetV3-small 10 epochs (collapsed
# to one class in 7 of 10 epochs, 0.70).  The channels_last layout of the precision policy pays for
# 112 px (size beats epochs: a ResNet-18 at 64 px × 20 epochs reached 0.80, at 112 px × 10 epochs 0.82; at 64 px
# the converged ζ = 2 % UAP fooled far less: re-weighted 0.53 vs 0.79) and the BatchNorm-momentum fix
# (models.architectures.BN_MOMENTUM) ends MobileNet's collapse (112 px: 10 epochs 0.78, 8 epochs 0.81).
# The ResNet is ResNet-18 at half width (models.narrow: 32-64-128-256 channels, 2.8 M parameters instead of
# 11.2 M): with UAPs run to convergence and a worst case over an attack suite, the full-width one made CI take
# 70-89 minutes.  Measured on the course's 2-core fp32 CPU (2026-12-07, seed 0): a training step 0.33 s vs 1.28 s,
# 10 epochs 210 s vs ~450 s, test accuracy 0.822 vs 0.810, and its converged ζ = 2 % L∞ UAP (40 steps, 10 s)
# fools normal 0.96 / pneumonia 0.92 / COVID-19 0.13 of the test images (re-weighted 0.83; full width 0.79),
# herding them into COVID-19 as in Hirano et al.  Full mode keeps the full-width ResNet-18 (defense_base).
FAST = SimpleNamespace(models=("resnet18_w0.5", "mobilenet_v3_small"), image_size=112,
                       epochs={"resnet18_w0.5": 10, "mobilenet_v3_small": 8}, batch_size=32)


FULL = SimpleNamespace(models=("vgg16", "resnet50", "densenet121", "covidnet_small"), image_size=224,
                       epochs={"vgg16": 30, "resnet50": 30, "densenet121": 30, "covidnet_small": 30}, batch_size=32,
                       patience=6)
# covidnet_small: COVIDNet-CXR Small (Wang, Lin & Wong 2020), the architecture Hirano et al. attacked, trained
# from scratch (no weights can be downloaded); ~2.2 GMACs at 224 px, a GPU job (about 11× a ResNet-18 step on
# the course's CPU), so FAST mode leaves it out.


# patience: early stopping once validation macro-F1 has not improved for 6 epochs (the best epoch is
# kept either way) — on a workstation CPU, where a full-mode epoch takes minutes, this is the
# difference between hours and a day; on a GPU it only trims a plateau.
FULL_LR = {"vgg16": 3e-4}     # plain VGG (no batch norm) needs a smaller step from scratch


# The course's SGD UAPs (Shafahi et al.), shared by notebooks 02 and 03 (and any later one), so that
# "the ζ = 2% UAP" is the same perturbation everywhere (and loaded from 02's cache in 03).  A UAP stops when it
# has converged: its fooling rate on `holdout` class-stratified training images it never steps on has not
# improved for `patience` measurements (one every `eval_every` steps), within `epochs` passes over the `train`
# build images (None: every training image not held out).  FAST was 128 images × 3 epochs × batch 16 = 24 sign
# steps, which stopped while the rate was still rising (issue 21: re-weighted 0.39 vs 0.67 for a long build).
# The first step is half the budget (`lr_ratio`): from a fifth of it (Shafahi et al.'s default here) the FAST UAP
# settled in a weaker pattern.  Measured on the full-width FAST ResNet-18 of the time (112 px, ζ = 2 % L∞, 2026-12-07, one CPU thread):
# first step ε/5: a plateau after 104 steps, the images herded into pneumonia, test fooling 0.38 (re-weighted 0.43);
# first step ε/2: a plateau after 64 steps, herded into COVID-19, test fooling normal 0.94 / pneumonia 0.84 /
# COVID-19 0.14 (0.46 plain, re-weighted 0.79).
UAP_FAST = SimpleNamespace(train=512, holdout=128, epochs=10, batch_size=16, eval_every=8, patience=3, lr_ratio=0.5)


UAP_FULL = SimpleNamespace(train=None, holdout=512, epochs=10, batch_size=32, eval_every=16, patience=5, lr_ratio=0.5)


def settings(fast: bool) -> SimpleNamespace:
    """The FAST or FULL settings (models, image size, epochs per model)."""
    return FAST if fast else FULL


DEFENSE_BASE = {True: "resnet18_w0.5", False: "resnet18"}


def defense_base(fast: bool) -> str:
    """The model notebooks 04-06 defend (attention needs a ResNet): the half-width ResNet-18 of FAST mode
    (notebook 01 trains it) or the full-width ResNet-18 in full mode."""
    return DEFENSE_BASE[bool(fast)]


def uap_settings(fast: bool, train: int | None = None, epochs: int | None = None,
                 batch_size: int | None = None, holdout: int | None = None) -> SimpleNamespace:
    """The course's SGD-UAP settings for the mode, with any argument given overriding its default.

    Returns a namespace with ``train`` (number of build images, ``None`` = every training image not held
    out), ``holdout`` (training images the stopping rate is measured on, never stepped on), ``epochs``
    (passes at most), ``batch_size``, ``eval_every``, ``patience``, ``lr_ratio``, ``text`` (the settings in one
    sentence), ``kwargs`` (``sgd`` without ``method``: :func:`~medadv_lib.attacks.sgd_uap`'s) and ``sgd``: the keyword arguments for
    :func:`~medadv_lib.attacks.uap.cache.precompute_uaps` (``method="sgd"``, epochs, batch size, the
    plateau rule) — pass the held-out images of :func:`~medadv_lib.course.uap_build_images` beside them
    as ``holdout=``; :func:`course_uap` does both.

    Example::
        >>> course.uap_settings(True).sgd
        {'method': 'sgd', 'epochs': 10, 'batch_size': 16, 'eval_every': 8, 'patience': 3, 'lr_ratio': 0.5}
    """
    d = UAP_FAST if fast else UAP_FULL
    for name, val in (("train", train), ("holdout", holdout)):
        if val is not None and val < 1:
            raise ValueError(f"{name} must be a positive number of images or None (the default); got {val}")
    out = SimpleNamespace(train=d.train if train is None else int(train), epochs=int(epochs or d.epochs),
                          batch_size=int(batch_size or d.batch_size), holdout=int(holdout or d.holdout),
                          eval_every=d.eval_every, patience=d.patience, lr_ratio=d.lr_ratio)
    out.sgd = {"method": "sgd", "epochs": out.epochs, "batch_size": out.batch_size, "eval_every": out.eval_every,
               "patience": out.patience, "lr_ratio": out.lr_ratio}
    out.kwargs = {k: v for k, v in out.sgd.items() if k != "method"}     # for sgd_uap itself
    out.text = (f"SGD UAP on {out.train or 'all'} training images, batch {out.batch_size}, stopping when its rate on "
                f"{out.holdout} held-out training images has not improved for {out.patience} measurements (one every "
                f"{out.eval_every} steps; at most {out.epochs} epochs)")
    return out


def model_config(name: str, fast: bool, image_size: int | None = None, epochs: int | None = None,
                 seed: int = 0, **overrides) -> TrainConfig:
    """The :class:`~medadv_lib.train.TrainConfig` the course uses for ``name``."""
    s = settings(fast)
    cfg = TrainConfig(model=name, image_size=image_size or s.image_size,
                      epochs=epochs or s.epochs.get(name, max(s.epochs.values())),
                      batch_size=s.batch_size, seed=seed, patience=getattr(s, "patience", None))
    if not fast and name in FULL_LR:
        cfg = dataclasses.replace(cfg, lr=FULL_LR[name])
    return dataclasses.replace(cfg, **overrides)


# Fine-tuning a defended model from the course's trained one (notebook 01's checkpoint): a few epochs
# at a small learning rate.  The "baseline-ft" arm gets the very same fine-tuning without a defense,
# so that the ablation compares defenses, not extra training.  FAST fine-tunes one epoch on a
# class-stratified 640 of the 1,628 training images and attacks 56 test images, so that the six arms
# of notebook 04 fit a 5-minute CPU notebook (800 and 64 took 300 s); FULL fine-tunes 10 epochs on everything
# and attacks the whole test split.
DEFENSE_FAST = SimpleNamespace(epochs=1, lr=5e-4, warmup_epochs=0.2, train_limit=640, eval_images=56)


DEFENSE_FULL = SimpleNamespace(epochs=10, lr=3e-4, warmup_epochs=0.5, train_limit=None, eval_images=None)


def robustness_settings(fast: bool):
    """The attacks of the course's robustness evaluation (:class:`~medadv_lib.metrics.defense.RobustnessSettings`).

    Both modes run PGD-10 at 1, 2 and 4/255 and the **worst-case suite** at every ε where a verdict is decided
    (FAST: 1 and 2/255; full: all three), each attack only on the images every earlier one left correct.
    FULL: PGD 50 steps × 5 restarts, APGD-CE and APGD-DLR 100 steps (AutoAttack's), Square 1,000 queries, PGD-L2
    and APGD-L2 50 steps beside DeepFool.  FAST, to fit a CPU notebook on 56 test images: APGD-CE and APGD-DLR
    10 steps (APGD replaces the stronger PGD), Square 100 queries, PGD-L2 / APGD-L2 10 steps — a weaker suite,
    said so wherever its verdicts are shown.  Measured on the full-width FAST ResNet-18 of the time (112 px, 2026-12-07): after PGD-10,
    the stronger attacks fooled none of its 29 (1/255) and 13 (2/255) surviving images."""
    if fast:
        return RobustnessSettings(suite_eps=(1 / 255, 2 / 255), strong_steps=0, apgd_steps=10, square_queries=100,
                                  l2_steps=10)
    return RobustnessSettings()


# The ablation of notebook 04 (Chen et al.'s design: baseline, + attention, + pruning, + both).  Names are
# the defenses' own (:func:`medadv_lib.defenses.defense_name`); "baseline" is notebook 01's model as is.
DEFENSE_ARMS = ("baseline", "baseline-ft", "cbam", "se", "prune0.6", "channels0.3", "cbam+prune0.6")


# FAST leaves out the squeeze-and-excitation arm (a second attention type, not part of Chen et al.'s
# baseline / + attention / + pruning / + both design): each arm costs ~1 minute of a CPU notebook.
DEFENSE_ARMS_FAST = tuple(a for a in DEFENSE_ARMS if a != "se")


def defense_arms(fast: bool) -> tuple:
    """Notebook 04's ablation arms for the mode: :data:`DEFENSE_ARMS_FAST` or :data:`DEFENSE_ARMS`."""
    return DEFENSE_ARMS_FAST if fast else DEFENSE_ARMS


SPARSITY_GRID = (0.3, 0.6, 0.9)     # unstructured sparsities of the sweep (and the instructor widget)


def parse_defense(name: str) -> dict | None:
    """The defense description behind an arm name (inverse of :func:`~medadv_lib.defenses.defense_name`):
    ``"cbam+prune0.6"`` → ``{"attention": "cbam", "prune": 0.6, "structured": False}``; ``"baseline"`` → None."""
    if name in ("baseline", "baseline-ft"):
        return None if name == "baseline" else normalize_defense(None)
    d = {}
    for part in name.split("+"):
        if part in KINDS:
            d["attention"] = part
        elif part.startswith("prune"):
            d["prune"] = float(part[5:])
        elif part.startswith("channels"):
            d.update(prune=float(part[8:]), structured=True)
        else:
            raise ValueError(f"unknown defense arm {name!r}: parts are cbam, se, prune<amount>, channels<amount>, "
                             "joined by '+', or baseline / baseline-ft")
    return normalize_defense(d)


ATTACKS_FAST = SimpleNamespace(n_test=64, eps_255=(0.5, 1, 2, 4), eps_l2=(0.25, 0.5), pgd_steps=10)
ATTACKS_FULL = SimpleNamespace(n_test=None, eps_255=(0.25, 0.5, 1, 2, 4, 8), eps_l2=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
                               pgd_steps=20)


def attack_settings(fast: bool, n_test: int | None = None, eps_255=None, eps_l2=None,
                    pgd_steps: int | None = None) -> SimpleNamespace:
    """Notebook 03's per-image attack settings for the mode (:data:`ATTACKS_FAST` / :data:`ATTACKS_FULL`),
    each argument given overriding its default: ``n_test`` test images attacked (class-stratified;
    ``None`` = the mode's: 64 FAST, the whole split full), L∞ budgets ``eps_255`` in grey levels, L2
    budgets ``eps_l2`` in pixel units, PGD steps.  Returns a namespace with those four fields."""
    d = ATTACKS_FAST if fast else ATTACKS_FULL
    return SimpleNamespace(n_test=d.n_test if n_test is None else int(n_test), eps_255=list(eps_255 or d.eps_255),
                           eps_l2=list(eps_l2 or d.eps_l2), pgd_steps=int(pgd_steps or d.pgd_steps))


# FAST: 1, 2 and 4 %.  The course's UAPs run until they converge (about 40–60 s each on a 2-core fp32 CPU), and the
# curve is flat between 2 % and 4 % (measured 2026-12-07: L∞ 46.0 / 47.4 / 47.1 % at 2 / 3 / 4 %, the ceiling of
# herding into COVID-19 47.7 %), so 3 % is left to full mode (and to ZETAS in the parameters cell).
UAP_GRID_FAST = SimpleNamespace(zetas=(0.01, 0.02, 0.04), iter_passes=4)
UAP_GRID_FULL = SimpleNamespace(zetas=(0.005, 0.01, 0.02, 0.03, 0.04), iter_passes=15)


def uap_grid_settings(fast: bool, zeta: float = 0.02, zetas=None, target_zetas=None,
                      iter_passes: int | None = None) -> SimpleNamespace:
    """Notebook 02's grid for the mode, each argument given overriding its default: the ζ of the
    fooling-rate curve (always including the headline ``zeta``), the ζ of the targeted UAPs (FAST:
    the headline only; full: the whole curve), and the passes of the iterative UAP (4 FAST, Hirano
    et al.'s 15 full).  Returns a namespace with ``zetas``, ``target_zetas``, ``iter_passes``."""
    d = UAP_GRID_FAST if fast else UAP_GRID_FULL
    zs = sorted(set(zetas or d.zetas) | {zeta})
    return SimpleNamespace(zetas=zs, target_zetas=list(target_zetas or ((zeta,) if fast else zs)),
                           iter_passes=int(iter_passes or d.iter_passes))


# Notebook 05's training-side defenses, all fine-tuned from notebook 01's model with the same optimiser
# settings as notebook 04's defenses and the same number of fine-tuning epochs each, so that they compare
# defenses, not amounts of training:
# - UAP fine-tuning (Hirano et al.; schedule unpublished): `rounds` rounds of "build the course's ζ = 2 %
#   UAP against the current model, fine-tune `round_epochs` on training images with that UAP added to
#   `share` of every batch (true labels)".  Half of each batch stays clean so the model keeps its clean
#   accuracy; Hirano et al.'s figure shows most of the effect within the first rounds.
# - Universal adversarial training (Shafahi et al.): one UAP at the same ζ updated on every batch, the
#   whole batch perturbed, as in their paper; `epochs` = rounds × round_epochs.
# - PGD adversarial training (Madry et al.) at ε = `at_eps`: FAST uses FGSM with a random start
#   (`at_steps` = 1, Wong et al. 2020), FULL PGD with 7 steps.
# The fresh UAP that judges each round (and joins the next round's pool) is the course's converged builder run on
# the `judge_split` images — validation images, which no training or fine-tuning ever steps on — with the seed
# SEED + `judge_seed`: an attacker with images and random draws of its own.
ADVERSARIAL_FAST = SimpleNamespace(rounds=3, round_epochs=1, share=0.5, zeta=0.02, uat_share=1.0,
                                   at_eps=2 / 255, at_steps=1, at_share=1.0, judge_split="val", judge_seed=1)


ADVERSARIAL_FULL = SimpleNamespace(rounds=5, round_epochs=2, share=0.5, zeta=0.02, uat_share=1.0,
                                   at_eps=2 / 255, at_steps=7, at_share=1.0, judge_split="val", judge_seed=1)


def adversarial_settings(fast: bool, rounds: int | None = None, eps: float | None = None) -> SimpleNamespace:
    """Notebook 05's settings for the mode (:data:`ADVERSARIAL_FAST` / :data:`ADVERSARIAL_FULL`), with
    ``rounds`` (UAP fine-tuning rounds) and ``eps`` (the adversarial-training budget, pixel units)
    overriding the defaults; ``epochs`` is the fine-tuning epochs each defense gets in all."""
    d = dict(vars(ADVERSARIAL_FAST if fast else ADVERSARIAL_FULL))
    if rounds is not None:
        if int(rounds) != rounds or rounds < 1:
            raise ValueError(f"rounds must be a positive integer; got {rounds}")
        d["rounds"] = int(rounds)
    if eps is not None:
        if not 0 < float(eps) <= 1:
            raise ValueError(f"eps is in pixel units of [0,1] images, e.g. 2/255 = {2 / 255:.4f}; got {eps}")
        d["at_eps"] = float(eps)
    d["epochs"] = d["rounds"] * d["round_epochs"]
    return SimpleNamespace(**d)
