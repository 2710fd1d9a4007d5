"""The rule book of the defense verdicts: one place where notebooks 04–06 and the report decide which arm is
"best" and whether Chen et al.'s numbers are reproduced, from the worst case over the attack suite
(:func:`~medadv_lib.metrics.defense.robustness_table`), the masking checks
(:func:`~medadv_lib.metrics.defense.hygiene_checks`) and the collapse guard
(:func:`~medadv_lib.metrics.defense.collapse_flags`).

The same rule holds for every sample size: an interval decides "not shown", never a kinder verdict.

* **Best arm** (:func:`best_arm`): among the defended arms that no masking check flags and that gave up no
  class, the highest *balanced* robust accuracy under the worst case at the verdict budget (ties: the higher
  worst-case defense rate).  Balanced, because a defense rate over an arm's own clean-correct images rewards
  an arm that gave up the hard classes.
* **A defense-rate claim** (:func:`verdict_defense`): "not shown (masking)" when a masking check flags the arm;
  "not reproduced" when the worst-case defense rate's 95 % interval lies below the paper's number; "not
  shown" when it does not keep significantly more images correct than the equally fine-tuned baseline
  (paired exact test) or when it collapsed; else "reproduced".
"""
from __future__ import annotations

import math

CHEN_PGD = 0.7718              # Chen et al. 2021: defense rate of pruning + attention against PGD (chest X-rays)
CHEN_DEEPFOOL = 0.6949         # ... against DeepFool
VERDICT_EPS = 1 / 255
"""The L∞ budget at which the Chen et al. verdicts and the best arm are decided (their budget is unstated)."""
ALPHA = 0.05
"""The level of every paired test the verdicts read."""
DEFENSE_VERDICTS = ("reproduced", "not shown", "not shown (masking)", "not reproduced", "not run")

_UNDEFENDED = ("baseline", "baseline-ft")


def _pct(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f} %"


def best_arm(rows, eps: float = VERDICT_EPS) -> tuple[str | None, str]:
    """The best defended arm from worst-case rows (dicts or a DataFrame with ``model`` or ``defense``,
    ``attack`` = "worst", ``eps``, ``balanced_robust_accuracy``, ``defense_rate`` and optionally ``masked``
    and ``collapsed``).  Returns ``(arm, how it was chosen)``; ``(None, why)`` when no arm qualifies.

    Example::
        >>> best_arm([{"model": "a", "attack": "worst", "eps": 1 / 255, "balanced_robust_accuracy": 0.5,
        ...            "defense_rate": 0.6}, {"model": "b", "attack": "worst", "eps": 1 / 255,
        ...            "balanced_robust_accuracy": 0.7, "defense_rate": 0.5, "collapsed": True}])[0]
        'a'
    """
    recs = rows.to_dict(orient="records") if hasattr(rows, "to_dict") else list(rows)
    cand, out = [], []
    for r in recs:
        name = r.get("defense", r.get("model"))
        if (r.get("attack") != "worst" or name in _UNDEFENDED or r.get("eps") is None
                or abs(float(r["eps"]) - eps) > 1e-9):
            continue
        if r.get("masked"):
            out.append(f"{name} (masking check failed)")
        elif r.get("collapsed"):
            out.append(f"{name} (collapsed: gave up a class)")
        else:
            cand.append((r.get("balanced_robust_accuracy") or 0.0, r.get("defense_rate") or 0.0, name))
    if not cand:
        return None, "no defended arm qualifies" + (f"; left out: {', '.join(out)}" if out else "")
    bal, rate, name = max(cand)
    why = (f"highest balanced robust accuracy under the worst case at ε = {eps * 255:g}/255: {_pct(bal)}, "
           f"defense rate {_pct(rate)}" + (f"; left out: {', '.join(out)}" if out else ""))
    return name, why


def verdict_defense(rate, lo, hi, paper: float, gain: str | None, masked: bool, collapsed: bool = False,
                    what: str = "the defended arm") -> tuple[str, str]:
    """A claim "the defense reaches a defense rate of ``paper``" from the worst-case ``rate`` with its 95 % interval
    ``[lo, hi]``, ``gain`` — the paired test against the equally fine-tuned baseline ("higher", "lower",
    "not shown"; None when it was not run) — and the ``masked`` / ``collapsed`` flags.  See the module docstring.

    Example::
        >>> verdict_defense(0.8, 0.7, 0.9, 0.7718, "higher", masked=False)[0]
        'reproduced'
        >>> verdict_defense(0.8, 0.7, 0.9, 0.7718, "higher", masked=True)[0]
        'not shown (masking)'
        >>> verdict_defense(0.3, 0.2, 0.45, 0.7718, "higher", masked=False)[0]
        'not reproduced'
    """
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "not run", f"no worst-case defense rate recorded for {what}"
    ours = f"{what}: {_pct(rate)} [{_pct(lo)}, {_pct(hi)}] under the worst case vs the paper's {_pct(paper)}"
    if masked:
        return "not shown (masking)", f"{ours}; a masking check flags it, so its robustness may be the attacks failing"
    if hi is not None and hi < paper:
        return "not reproduced", f"{ours}: the whole 95 % interval lies below the paper's number"
    if collapsed:
        return "not shown", f"{ours}; but it gave up a class (collapse guard): not a defense"
    if gain != "higher":
        return "not shown", (f"{ours}; but it does not keep significantly more images correct than the equally "
                             f"fine-tuned baseline (paired test: {gain or 'not run'}): the number is not the defense's")
    return "reproduced", f"{ours}; significantly more images kept correct than the equally fine-tuned baseline"
