"""Notebook 02's section 8 as experiments: each candidate lever of the gap between our UAP and Hirano et al.'s
(more steps, more build images, their algorithm) is a UAP that changes that one lever of the course's headline
UAP, measured on the same test images, and judged from the paired difference of the re-weighted rates with its
interval (:func:`~medadv_lib.metrics.universal.paired_reweighted_difference`, McNemar's test on the plain rates
beside it) — not extrapolated from a build curve."""
from __future__ import annotations

import math

import pandas as pd

from ..attacks.uap.cache import precompute_uaps
from ..metrics.universal import cached_predict, paired_reweighted_difference
from ..stats import paired_difference, wilson_interval
from .pipelines import uap_build_images

LEVERS = ("iterations", "training-set size", "the algorithm")


def _gradients(res) -> int:
    """Per-image gradient evaluations a UAP build spent: SGD ``steps × batch``; the iterative algorithm one per
    image and pass (an upper bound: it skips images already fooled)."""
    if res.method == "iterative":
        return int(res.passes) * int(res.params.get("n") or 0)
    return int(res.params.get("steps") or 0) * int(res.params.get("batch_size") or 0)


def gap_variants(model, headline, x_build, x_hold, sgd: dict, *, fast: bool, stats, cache_dir=None, data_dir=None,
                 seed: int = 0, factor: int = 4, iter_step: float = 0.001, iter_passes: int | None = None,
                 progress: bool = False) -> dict:
    """The three variants of the course's ``headline`` SGD UAP (built on ``x_build`` with the settings ``sgd``,
    its plateau measured on ``x_hold``), one lever changed each, cached like every course UAP:

    - ``"iterations"``: the same builder for ``factor`` × the steps the headline ran, with no plateau stop (but the
      headline's selection rule: the best UAP measured on the held-out images);
    - ``"training-set size"``: the same builder on every training image not held out (FAST: 1,500 instead of 512;
      when the headline already used them all, full mode, a quarter of them), without the plateau stop, for at least
      the headline's steps and one full pass, so that the UAP it returns has stepped on every build image;
    - ``"the algorithm"``: Hirano et al.'s iterative algorithm (FGSM inner step ``iter_step``) on the same
      images with at least the headline's gradient budget: ``ceil(steps × batch / images)`` passes, or
      ``iter_passes`` when that is more (notebook 02's section 7 run, which is then reused from the cache).

    Returns ``{lever: (UAPResult, what changed, build images)}``."""
    zeta, norm = headline.params.get("zeta"), headline.norm
    steps, batch = int(headline.params["steps"]), int(sgd["batch_size"])
    n = len(x_build)
    more = factor * steps
    every = int(sgd.get("eval_every") or 1)

    def fixed_budget(x, budget):
        """The headline's builder on ``x`` for exactly ``budget`` steps, but with its selection rule: the best UAP
        measured on the held-out images (a patience longer than the run never stops it early)."""
        return precompute_uaps(model, x, zetas=(zeta,), norms=(norm,), stats=stats, cache_dir=cache_dir, seed=seed,
                               progress=progress, **{**sgd, "holdout": x_hold, "patience": math.ceil(budget / every) + 1,
                                                     "max_steps": budget,
                                                     "epochs": math.ceil(budget * batch / len(x)) + 1})[(zeta, norm, None)]
    it = fixed_budget(x_build, more)
    size = x_build.shape[-1]
    x_all, _, _ = uap_build_images(fast, size, data_dir, seed, train=10 ** 9, holdout=len(x_hold))
    if len(x_all) > n:
        x_size, size_text = x_all, f"{len(x_all):,} build images instead of {n:,}"
    else:                                      # the headline already used every image: a quarter of them instead
        x_size, _, _ = uap_build_images(fast, size, data_dir, seed, train=max(1, n // 4), holdout=len(x_hold))
        size_text = f"{len(x_size):,} build images instead of {n:,} (a quarter)"
    # no plateau stop: the plateau can come before the builder has stepped on every image (a variant that returned
    # the UAP of its 16th step would have seen 256 of 1,500 images); at least the headline's steps, and one full pass
    size_steps = max(steps, math.ceil(len(x_size) / batch))
    sz = fixed_budget(x_size, size_steps)
    size_text += (f", every one stepped on ({size_steps} SGD steps, no plateau stop; the headline ran {steps}); the best "
                  "UAP measured on the held-out images, as the headline's")
    passes = max(math.ceil(steps * batch / n), int(iter_passes or 0))
    al = precompute_uaps(model, x_build, zetas=(zeta,), norms=(norm,), stats=stats, method="iterative", step=iter_step,
                         max_iter=passes, cache_dir=cache_dir, seed=seed, progress=progress)[(zeta, norm, None)]
    return {"iterations": (it, f"{more} SGD steps ({factor}× the headline's {steps}), no plateau stop; the best UAP "
                              "measured on the held-out images, as the headline's", n),
            "training-set size": (sz, size_text, len(x_size)),
            "the algorithm": (al, f"the iterative UAP (FGSM step {iter_step:g}), up to {passes} passes over {n} images "
                                  f"(≥ the headline's {steps * batch} image gradients)", n)}


def gap_experiments(model, headline, variants: dict, x_test, y_test, cache: dict | None = None) -> pd.DataFrame:
    """Each of :func:`gap_variants`' UAPs against the ``headline`` UAP on the same test images.

    Per lever: ``variant`` (what changed), ``build_images``, ``steps`` (SGD steps, or passes of the iterative
    algorithm),
    ``converged``, ``seconds`` (build), ``fooling_rate`` with its Wilson ``_lo``/``_hi`` and
    ``fooling_rate_reweighted`` (the paper's 100/100/31 mix) beside the headline's, and their paired difference
    ``rw_diff`` with its class-stratified bootstrap interval ``rw_diff_lo``/``rw_diff_hi`` (the verdict's numbers:
    :func:`~medadv_lib.metrics.universal.lever_verdict`), ``gradients`` (per-image gradient evaluations
    of the build; the iterative algorithm's is an upper bound), ``headline_fooling_rate``, and the paired
    difference variant − headline (``diff``, ``diff_lo``, ``diff_hi``: 95 %, conditional on the discordant images;
    ``p_value``: exact McNemar) — fooling = prediction changed, as everywhere in notebook 02."""
    cache = {} if cache is None else cache
    clean = cached_predict(model, x_test, None, cache)
    fooled_h = (cached_predict(model, x_test, headline.v, cache) != clean).cpu().numpy()
    rows = {}
    for lever, (res, text, n_build) in variants.items():
        fooled = (cached_predict(model, x_test, res.v, cache) != clean).cpu().numpy()
        d = paired_difference(fooled, fooled_h)
        rw = paired_reweighted_difference(fooled, fooled_h, y_test.cpu().numpy()) or dict.fromkeys(("diff", "lo", "hi", "a", "b"))
        lo, hi = wilson_interval(int(fooled.sum()), fooled.size)
        rows[lever] = {"variant": text, "build_images": n_build,
                       "steps": int(res.params["steps"]) if res.method == "sgd" else int(res.passes),
                       "gradients": _gradients(res), "converged": bool(res.converged),
                       "seconds": round(float(res.seconds), 1), "fooling_rate": float(fooled.mean()),
                       "fooling_rate_lo": lo, "fooling_rate_hi": hi,
                       "fooling_rate_reweighted": rw["a"], "headline_fooling_rate_reweighted": rw["b"],
                       "rw_diff": rw["diff"], "rw_diff_lo": rw["lo"], "rw_diff_hi": rw["hi"],
                       "headline_fooling_rate": float(fooled_h.mean()), "diff": d["diff"], "diff_lo": d["lo"],
                       "diff_hi": d["hi"], "p_value": d["p_value"]}
    return pd.DataFrame(rows).T.rename_axis("lever")

