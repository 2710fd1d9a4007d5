"""Small-sample statistics on counts and paired outcomes, with no model or data behind them: the Wilson
interval of a rate, the exact McNemar test of two paired outcomes, a stratified bootstrap interval of the
balanced accuracy.  A leaf module, so that :mod:`medadv_lib.claims` and :mod:`medadv_lib.data` use the same
statistics as :mod:`medadv_lib.metrics` (which re-exports them) without importing it."""
from __future__ import annotations

import math

import numpy as np


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (95 % for ``z = 1.96``);
    ``(nan, nan)`` when ``n = 0``."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the interval holds p exactly; at k = 0 or k = n the rounding of centre ± half can land a hair inside
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def _binom_two_sided(k: int, n: int) -> float:
    """Two-sided exact binomial p-value of ``k`` successes in ``n`` trials at p = ½ (doubled smaller tail)."""
    if n <= 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def mcnemar_exact(a, b) -> dict:
    """Exact McNemar test of two per-image boolean outcomes on the *same* images (e.g. "correct under
    the attack" for model A and model B).

    Only the discordant images carry information: ``a_only`` (A succeeds where B fails) and ``b_only``.
    Under "A and B are equally good" each discordant image is a fair coin, so the p-value is the
    two-sided exact binomial test of ``a_only`` out of ``a_only + b_only`` at ½ (the smaller tail,
    doubled, capped at 1; 1 when there is no discordant image).

    Returns ``{"n", "both", "a_only", "b_only", "neither", "discordant", "p_value"}``.

    Example::
        >>> mcnemar_exact([1, 1, 0, 0, 1], [1, 0, 0, 0, 0])["p_value"]     # 2 vs 0 discordant: 2 × ¼
        0.5
    """
    a, b = np.asarray(a, dtype=bool).ravel(), np.asarray(b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same images: {a.size} vs {b.size} outcomes")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    return {"n": int(a.size), "both": int((a & b).sum()), "a_only": a_only, "b_only": b_only,
            "neither": int((~a & ~b).sum()), "discordant": a_only + b_only,
            "p_value": _binom_two_sided(a_only, a_only + b_only)}


def balanced_accuracy_interval(y_true, y_pred, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple:
    """Balanced accuracy (mean per-class sensitivity) with a stratified bootstrap percentile interval.

    Each bootstrap sample redraws the test images *within* each true class, so every class keeps its
    size and the interval reflects only which images the test split happened to hold.  Deterministic for
    a given ``seed``.  Returns ``(balanced_accuracy, lo, hi)``.

        >>> balanced_accuracy_interval([0, 0, 1, 1], [0, 0, 1, 1])
        (1.0, 1.0, 1.0)
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    hits = [(y_pred[y_true == c] == c).astype(float) for c in classes]
    point = float(np.mean([h.mean() for h in hits]))
    rng = np.random.default_rng(seed)
    boot = np.mean([rng.choice(h, size=(n_boot, h.size), replace=True).mean(axis=1) for h in hits], axis=0)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return point, float(lo), float(hi)


def median_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free ``level`` interval of the median of ``values`` from its order statistics: ``[x_(k),
    x_(n−k+1)]`` with the largest ``k`` whose binomial tail ``P(Bin(n, ½) ≤ k − 1)`` is at most ``(1 − level)/2``
    (coverage ≥ ``level`` for any continuous distribution).  ``(nan, nan)`` when ``n`` is too small for one
    (n ≤ 5 at 95 %)."""
    v = np.sort(np.asarray(values, dtype=float).ravel())
    n, alpha = len(v), (1 - level) / 2
    k, tail = 0, 0.0
    for j in range(n):                      # tail = P(B ≤ j)
        tail += math.comb(n, j) / 2 ** n
        if tail > alpha:
            break
        k = j + 1
    if k < 1:
        return math.nan, math.nan
    return float(v[k - 1]), float(v[n - k])


def paired_difference(a, b, level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> dict:
    """The difference of two rates measured on the *same* images, ``rate(a) − rate(b)``, with a paired bootstrap
    interval (images resampled with both outcomes kept together, seeded; percentiles) and the exact McNemar test
    (:func:`mcnemar_exact`).  Only the discordant images move the difference: ``Δ = (a_only − b_only) / n``.

    Returns ``{"diff", "lo", "hi", "p_value", "a_only", "b_only", "n"}``.

    Example::
        >>> r = paired_difference([1, 1, 1, 0, 0, 1], [1, 0, 0, 0, 0, 1])
        >>> round(r["diff"], 3), r["a_only"], r["b_only"]
        (0.333, 2, 0)
    """
    t = mcnemar_exact(a, b)
    n = t["n"]
    if n == 0:
        return {"diff": math.nan, "lo": math.nan, "hi": math.nan, "p_value": 1.0, "a_only": 0, "b_only": 0, "n": 0}
    d = np.asarray(a, dtype=float).ravel() - np.asarray(b, dtype=float).ravel()
    boot = d[np.random.default_rng(seed).integers(0, n, size=(n_boot, n))].mean(axis=1)
    q = (1 - level) / 2
    return {"diff": float(d.mean()), "lo": float(np.quantile(boot, q)), "hi": float(np.quantile(boot, 1 - q)),
            "p_value": t["p_value"], "a_only": t["a_only"], "b_only": t["b_only"], "n": n}
