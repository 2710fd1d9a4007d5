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


# --- Hirano et al.'s fine-tuning claim: one rule for notebook 05 and the report -----------------------------
FINETUNE_DROP = 0.10
"""UAP fine-tuning "improves robustness" when fresh UAPs fool at least 10 points fewer images ..."""
FINETUNE_MIN_DROP = 0.03
"""... "partly" from a 3-point drop ..."""
FINETUNE_ACC_COST = 0.05
"""... and at most 5 points of clean accuracy may be paid for a full "reproduced"."""
_TOL = 1e-9                    # comparisons at a threshold count as reaching it (float rounding aside)


def _verdict(verdict: str, reason: str) -> tuple[str, str]:
    return verdict, reason


def _pts(x) -> str:
    return f"{100 * abs(x):.1f} points"


def verdict_finetune(r0, rk, acc0=None, acck=None, r0_lo=None, rk_hi=None,
                     rounds: int | None = None) -> tuple[str, str]:
    """A claim "fine-tuning on UAP-perturbed images lowers the fooling rate of UAPs made afterwards".

    ``r0``/``rk``: the fooling rate of a fresh white-box UAP against the undefended model (round 0) and
    after the last round; ``acc0``/``acck`` their clean accuracies; ``r0_lo``/``rk_hi`` the Wilson 95 %
    bounds.

    * "not run" when ``r0`` or ``rk`` is missing (or there was no fine-tuning round);
    * "reproduced" when the rate falls by at least :data:`FINETUNE_DROP` (10 points), the intervals do not
      overlap (``rk_hi < r0_lo``, when given), and clean accuracy falls by at most
      :data:`FINETUNE_ACC_COST` (5 points);
    * "partly" when it falls by at least :data:`FINETUNE_MIN_DROP` (3 points) otherwise;
    * "not reproduced" otherwise."""
    if r0 is None or rk is None or rounds == 0:
        return _verdict("not run", "no UAP fine-tuning round recorded")
    drop = r0 - rk
    text = f"fresh-UAP fooling rate {_pct(r0)} (round 0) → {_pct(rk)}" + (f" (round {rounds})" if rounds else "")
    cost = None if acc0 is None or acck is None else acc0 - acck
    cost_text = "" if cost is None else f"; clean accuracy {_pct(acc0)} → {_pct(acck)}"
    separated = r0_lo is None or rk_hi is None or rk_hi < r0_lo
    if drop >= FINETUNE_DROP - _TOL and separated and (cost is None or cost <= FINETUNE_ACC_COST + _TOL):
        return _verdict("reproduced", f"{text}, {_pts(drop)} lower{cost_text}")
    if drop >= FINETUNE_MIN_DROP - _TOL:
        why = ("the 95 % intervals overlap" if not separated else
               f"it costs {_pts(cost)} of clean accuracy" if cost is not None and cost > FINETUNE_ACC_COST + _TOL else
               f"less than {_pts(FINETUNE_DROP)}")
        return _verdict("partly", f"{text}, {_pts(drop)} lower, but {why}{cost_text}")
    return _verdict("not reproduced", f"{text}: fresh UAPs fool as many images as before{cost_text}")


def verdict_beyond_controls(verdict: tuple[str, str], rk_hi, controls: list[dict]) -> tuple[str, str]:
    """Hirano et al.'s claim against the models notebook 05 fine-tuned *without* UAPs (its control
    records: ``control``, ``fooling_rate`` and ``fooling_rate_lo``): a "reproduced" or "partly" of
    :func:`verdict_finetune` stays so only when the last round's interval (upper end ``rk_hi``) lies below
    every control's; otherwise the fall is not separable from fine-tuning alone, and the verdict is at
    most "partly", with the controls in the reason — the same comparison notebook 05's verdicts make."""
    kind, reason = verdict
    if kind not in ("reproduced", "partly") or not controls:
        return verdict
    text = "; ".join(f"{c['control']} {_pct(c['fooling_rate'])}" for c in controls)
    if rk_hi is not None and all(c.get("fooling_rate_lo") is not None and rk_hi < c["fooling_rate_lo"]
                                 for c in controls):
        return _verdict(kind, f"{reason}; below every model fine-tuned without UAPs ({text})")
    return _verdict("partly", f"{reason}; but fine-tuning without UAPs leaves a fresh UAP {text}: the fall is not "
                        "separable from fine-tuning alone")


def verdict_hirano(r0: dict, rk: dict, controls=()) -> tuple[str, str]:
    """Hirano et al.'s claim "fine-tuning with UAPs makes the model more robust to UAPs", as notebook 05 and the
    report both decide it: :func:`verdict_finetune` on round 0 and the last round (``fresh_uap_fooling_rate`` with
    ``_lo``/``_hi``, ``clean_accuracy``, ``round``: a row of ``course.rounds_table`` or a round record), then
    :func:`verdict_beyond_controls` against the models fine-tuned without UAPs (``controls``: dicts with
    ``control``, ``fooling_rate``, ``fooling_rate_lo``, as ``course.control_records`` writes them)."""
    def get(d, k):
        v = d.get(k)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    rounds = None if rk.get("round") is None else int(rk["round"])
    verdict = verdict_finetune(get(r0, "fresh_uap_fooling_rate"), get(rk, "fresh_uap_fooling_rate"),
                               get(r0, "clean_accuracy"), get(rk, "clean_accuracy"), get(r0, "fresh_uap_fooling_rate_lo"),
                               get(rk, "fresh_uap_fooling_rate_hi"), rounds=rounds)
    return verdict_beyond_controls(verdict, get(rk, "fresh_uap_fooling_rate_hi"),
                                   [c for c in controls if c.get("control") is not None and c.get("fooling_rate") is not None])
