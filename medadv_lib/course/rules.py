"""The rule book of the defense verdicts: one place where notebooks 04–06 and the report decide which arm is
"best" and whether Chen et al.'s numbers are reproduced, from the worst case over the attack suite
(:func:`~medadv_lib.metrics.defense.robustness_table`), the masking checks
(:func:`~medadv_lib.metrics.defense.hygiene_checks`) and the collapse guard
(:func:`~medadv_lib.metrics.defense.collapse_flags`).

The same rule holds for every sample size: an interval decides "not shown", never a kinder verdict.

* **Best arm** (:func:`best_arm`): among the defended arms that no masking check flags and that gave up no
  class, the highest *balanced* robust accuracy under the worst case at the verdict budget (ties: the higher
  worst-case defense rate).  Balanced, because a defense rate over an arm's own clean-correct images rewards
  an arm that gave up the hard classes.  Notebook 04 ranks the arms on *validation* images and judges the chosen
  one on test images (``course.robustness_overview(..., selection=...)``), and records the choice, which notebook
  05 and the report read back (:func:`recorded_best_arm`).
* **A defense-rate claim** (:func:`verdict_defense`): "not shown (masking)" when a masking check flags the arm;
  "not reproduced" when the worst-case defense rate's 95 % interval lies below the paper's number; "not
  shown" when it does not keep significantly more images correct than the equally fine-tuned baseline
  (paired exact test) or when it collapsed; else "reproduced".
* **Every other claim of the report** (Hirano et al.'s UAP claims: :func:`verdict_at_least`,
  :func:`verdict_targeted`, :func:`verdict_majority`, :func:`verdict_random_control`; their fine-tuning claim:
  :func:`verdict_hirano`; Chen et al.'s ablation: :func:`verdict_ablation`), each with its thresholds in its
  docstring.

**One verdict per claim.**  Every claim has a key (:data:`CLAIM_KEYS`, the report's row ``id``) and one word from
:data:`VERDICTS`.  Wherever a notebook prints a claim's verdict it prints :func:`verdict_mark` — the word with the
key beside it — so :func:`notebook_verdicts` can read ``{key: words}`` back from an executed notebook and
:func:`verdict_mismatches` can name every claim whose word differs from the report's claims table
(``tests/test_verdicts.py``; after the FAST pass, ``tests/test_notebooks.py``).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..metrics.universal import HIRANO_TARGETED

CHEN_PGD = 0.7718              # Chen et al. 2021: defense rate of pruning + attention against PGD (chest X-rays)
CHEN_DEEPFOOL = 0.6949         # ... against DeepFool
VERDICT_EPS = 1 / 255
"""The L∞ budget at which the Chen et al. verdicts and the best arm are decided (their budget is unstated)."""
ALPHA = 0.05
"""The level of every paired test the verdicts read."""
DEFENSE_VERDICTS = ("reproduced", "not shown", "not shown (masking)", "not reproduced", "not run")
VERDICTS = ("reproduced", "partly", "not shown", "not shown (masking)", "not reproduced", "not run")
"""Every word a claim's verdict can be, in the report and in the notebooks."""

_UNDEFENDED = ("baseline", "baseline-ft")


def _pct(v, digits: int = 1) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f} %"


def _v(verdict: str, reason: str) -> tuple[str, str]:
    return verdict, reason


_EPS = 1e-9                    # comparisons at a threshold count as reaching it (float rounding aside)


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


def recorded_best_arm(records, eps: float = VERDICT_EPS) -> tuple[str | None, str]:
    """The best arm notebook 04 recorded (records marked ``best_arm``: chosen on validation images and judged on
    test, :func:`~medadv_lib.course.robustness_overview`), else :func:`best_arm` over the records' worst-case rows
    (records written before the selection existed).  Returns ``(arm, how it was chosen)``.

    Example::
        >>> recorded_best_arm([{"defense": "a", "attack": "worst", "eps": 1 / 255, "balanced_robust_accuracy": 0.9,
        ...                     "defense_rate": 0.9}, {"defense": "b", "attack": "worst", "eps": 1 / 255,
        ...                     "balanced_robust_accuracy": 0.5, "defense_rate": 0.5, "best_arm": True,
        ...                     "best_arm_why": "chosen on validation images"}])
        ('b', 'chosen on validation images')
    """
    recs = records.to_dict(orient="records") if hasattr(records, "to_dict") else list(records)
    marked = [r for r in recs if r.get("best_arm")]
    if marked:
        r = marked[0]
        return r.get("defense", r.get("model")), r.get("best_arm_why") or "recorded by notebook 04"
    return best_arm(recs, eps)


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
def _pts(x) -> str:
    return f"{100 * abs(x):.1f} points"


def verdict_finetune(r0, rk, acc0=None, acck=None, r0_lo=None, rk_hi=None,
                     rounds: int | None = None, what: str = "fresh-UAP") -> tuple[str, str]:
    """A claim "fine-tuning on UAP-perturbed images lowers the fooling rate of UAPs made afterwards".

    ``r0``/``rk``: the fooling rate of a fresh white-box UAP against the undefended model (round 0) and
    after the last round; ``acc0``/``acck`` their clean accuracies; ``r0_lo``/``rk_hi`` the Wilson 95 %
    bounds; ``what`` names the rate in the reason ("fresh-UAP", or "strongest-UAP" for the strongest of the fresh
    UAP and the UAPs fine-tuned against).

    * "not run" when ``r0`` or ``rk`` is missing (or there was no fine-tuning round);
    * "reproduced" when the rate falls by at least :data:`FINETUNE_DROP` (10 points), the intervals do not
      overlap (``rk_hi < r0_lo``, when given), and clean accuracy falls by at most
      :data:`FINETUNE_ACC_COST` (5 points);
    * "partly" when it falls by at least :data:`FINETUNE_MIN_DROP` (3 points) otherwise;
    * "not reproduced" otherwise."""
    if r0 is None or rk is None or rounds == 0:
        return _v("not run", "no UAP fine-tuning round recorded")
    drop = r0 - rk
    text = f"{what} fooling rate {_pct(r0)} (round 0) → {_pct(rk)}" + (f" (round {rounds})" if rounds else "")
    cost = None if acc0 is None or acck is None else acc0 - acck
    cost_text = "" if cost is None else f"; clean accuracy {_pct(acc0)} → {_pct(acck)}"
    separated = r0_lo is None or rk_hi is None or rk_hi < r0_lo
    if drop >= FINETUNE_DROP - _EPS and separated and (cost is None or cost <= FINETUNE_ACC_COST + _EPS):
        return _v("reproduced", f"{text}, {_pts(drop)} lower{cost_text}")
    if drop >= FINETUNE_MIN_DROP - _EPS:
        why = ("the 95 % intervals overlap" if not separated else
               f"it costs {_pts(cost)} of clean accuracy" if cost is not None and cost > FINETUNE_ACC_COST + _EPS else
               f"less than {_pts(FINETUNE_DROP)}")
        return _v("partly", f"{text}, {_pts(drop)} lower, but {why}{cost_text}")
    return _v("not reproduced", f"{text}: fresh UAPs fool as many images as before{cost_text}")


def verdict_beyond_controls(verdict: tuple[str, str], rk_hi, controls: list[dict],
                            what: str = "the fresh UAP") -> tuple[str, str]:
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
        return _v(kind, f"{reason}; {what} fools fewer images than a fresh UAP does on every model fine-tuned without "
                              f"UAPs ({text})")
    return _v("partly", f"{reason}; but fine-tuning without UAPs leaves a fresh UAP {text}: the fall is not "
                        "separable from fine-tuning alone")


def verdict_hirano(r0: dict, rk: dict, controls=()) -> tuple[str, str]:
    """Hirano et al.'s claim "fine-tuning with UAPs makes the model more robust to UAPs", as notebook 05 and the
    report both decide it: :func:`verdict_finetune` on round 0 and the last round (:func:`judge_column`: the
    strongest UAP's fooling rate, else the fresh one's, with ``_lo``/``_hi``, ``clean_accuracy``, ``round``: a row of ``course.rounds_table`` or a round record), then
    :func:`verdict_beyond_controls` against the models fine-tuned without UAPs (``controls``: dicts with
    ``control``, ``fooling_rate``, ``fooling_rate_lo``, as ``course.control_records`` writes them)."""
    def get(d, k):
        v = d.get(k)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    rounds = None if rk.get("round") is None else int(rk["round"])
    col = judge_column(rk)
    verdict = verdict_finetune(get(r0, judge_column(r0)), get(rk, col),
                               get(r0, "clean_accuracy"), get(rk, "clean_accuracy"), get(r0, judge_column(r0) + "_lo"),
                               get(rk, col + "_hi"), rounds=rounds,
                               what="strongest-UAP" if col.startswith("strongest") else "fresh-UAP")
    return verdict_beyond_controls(verdict, get(rk, col + "_hi"),
                                   [c for c in controls if c.get("control") is not None and c.get("fooling_rate") is not None],
                                   what="the strongest UAP" if col.startswith("strongest") else "the fresh UAP")


def judge_column(row) -> str:
    """The fooling-rate column a UAP fine-tuning round is judged by: ``strongest_uap_fooling_rate`` (the strongest
    of the round's fresh UAP and every UAP it was fine-tuned against, ``course.rounds_table``) where the row has
    it, else ``fresh_uap_fooling_rate`` (records written before that column existed)."""
    v = row.get("strongest_uap_fooling_rate")
    return "fresh_uap_fooling_rate" if v is None or (isinstance(v, float) and math.isnan(v)) else "strongest_uap_fooling_rate"


# --- Hirano et al.'s UAP claims and Chen et al.'s ablation: the report's rows, decided here -------------------
NEAR = 0.10
"""A number up to 10 points below the paper's is "partly" reproduced (:func:`verdict_at_least`)."""
RANDOM_MAX = 0.10
"""The random control counts as "barely changes predictions" up to a 10 % fooling rate."""
RANDOM_RATIO = 3.0
"""... and as "far below" the UAP when the UAP fools at least 3× as many images (and 10 points more)."""
MIN_GAP = 0.05
"""Differences under 5 points count as no difference (random control vs UAP)."""
_COVID = "COVID-19"


def verdict_at_least(value, paper: float, near: float = NEAR, hi=None, what: str = "ours") -> tuple[str, str]:
    """A claim "the rate reaches ``paper``".

    * "not run" when ``value`` is None;
    * "reproduced" when ``value ≥ paper``;
    * "partly" when ``value`` is at most ``near`` (10 points) below ``paper``, or the upper end ``hi`` of
      its 95 % interval reaches ``paper`` (not distinguishable from the paper's number at our sample size);
    * "not reproduced" otherwise.
    Returns ``(verdict, reason)``."""
    if value is None:
        return _v("not run", "no result recorded")
    gap = value - paper
    if gap >= -_EPS:
        return _v("reproduced", f"{what} {_pct(value)} ≥ {_pct(paper, 2)}")
    if -gap <= near + _EPS:
        return _v("partly", f"{what} {_pct(value)} is {_pts(gap)} below {_pct(paper, 2)} (within {_pts(near)})")
    if hi is not None and hi >= paper - _EPS:
        return _v("partly", f"{what} {_pct(value)} is {_pts(gap)} below {_pct(paper, 2)}, but its 95 % interval "
                            f"reaches {_pct(hi)}")
    return _v("not reproduced", f"{what} {_pct(value)} is {_pts(gap)} below {_pct(paper, 2)}")


def verdict_targeted(rates: dict, paper: float = HIRANO_TARGETED, near: float = NEAR) -> tuple[str, str]:
    """A claim "targeted UAPs reach ``paper`` success for the chosen target" (``rates``: target → success rate).

    * "not run" with no target;
    * "reproduced" when every target reaches ``paper``;
    * "partly" when at least one target reaches ``paper − near`` (80 %);
    * "not reproduced" when none does."""
    rates = {k: v for k, v in rates.items() if v is not None}
    if not rates:
        return _v("not run", "no targeted UAP recorded")
    listing = ", ".join(f"→ {k} {_pct(v)}" for k, v in rates.items())
    if all(v >= paper - _EPS for v in rates.values()):
        return _v("reproduced", f"every target reaches {_pct(paper, 0)}: {listing}")
    hit = [k for k, v in rates.items() if v >= paper - near - _EPS]
    if hit:
        def group(keys, words):
            names = " and ".join(f"→ {k}" for k in keys)
            return f"{names} {words[0] if len(keys) == 1 else words[1]}" if keys else None
        full = [k for k in hit if rates[k] >= paper - _EPS]
        parts = [group(full, (f"reaches the paper's {_pct(paper, 0)}", f"reach the paper's {_pct(paper, 0)}")),
                 group([k for k in hit if k not in full], (f"comes within {_pts(near)} of it", f"come within {_pts(near)} of it")),
                 group([k for k in rates if k not in hit], (f"stays below {_pct(paper - near, 0)}",
                                                            f"stay below {_pct(paper - near, 0)}"))]
        return _v("partly", "; ".join(p for p in parts if p) + f": {listing}")
    return _v("not reproduced", f"no target reaches {_pct(paper - near, 0)}: {listing}")


def verdict_majority(shares: dict, cls: str = _COVID, caveat: str = "") -> tuple[str, str]:
    """A claim "most images go to ``cls``" (``shares``: class → share of the images predicted as it under
    the UAP, re-weighted to the paper's test mix).

    * "not run" when ``shares`` is empty or lacks ``cls``;
    * "reproduced" when the share of ``cls`` is above one half;
    * "partly" when ``cls`` is the most frequent class but holds half or less;
    * "not reproduced" otherwise."""
    if not shares or shares.get(cls) is None:
        return _v("not run", "where the images go under the UAP was not recorded" + (f" ({caveat})" if caveat else ""))
    s = shares[cls]
    listing = "re-weighted to the paper's test mix: " + ", ".join(f"{k} {_pct(v)}" for k, v in shares.items())
    if s > 0.5:
        return _v("reproduced", f"{_pct(s)} of the images are predicted {cls} under the UAP ({listing})")
    if s >= max(shares.values()):
        return _v("partly", f"{cls} is the most frequent prediction but holds only {_pct(s)} ({listing})")
    top = max(shares, key=shares.get)
    return _v("not reproduced", f"most images go to {top}, not {cls} ({listing})")


def verdict_random_control(uap, random) -> tuple[str, str]:
    """A claim "random noise of the same norm barely changes predictions; the UAP does".

    * "not run" when either rate is missing;
    * "reproduced" when the random control fools at most :data:`RANDOM_MAX` (10 %) and the UAP at least
      :data:`RANDOM_RATIO` (3×) as many images and :data:`NEAR` (10 points) more;
    * "partly" when the UAP beats the control by at least :data:`MIN_GAP` (5 points) but not that far;
    * "not reproduced" otherwise (the UAP does no better than noise)."""
    if uap is None or random is None:
        return _v("not run", "no UAP with its random control recorded")
    gap = uap - random
    text = f"UAP {_pct(uap)} vs random {_pct(random)}"
    if random <= RANDOM_MAX + _EPS and uap >= RANDOM_RATIO * random - _EPS and gap >= NEAR - _EPS:
        return _v("reproduced", f"{text}: the control is far below")
    if gap >= MIN_GAP - _EPS:
        why = (f"the control itself changes more than {_pct(RANDOM_MAX)} of the predictions" if random > RANDOM_MAX + _EPS
               else f"less than {RANDOM_RATIO:g}× the control" if uap < RANDOM_RATIO * random - _EPS
               else f"only {_pts(gap)} above it")
        return _v("partly", f"{text}: the UAP is above the control ({_pts(gap)}), but {why}")
    return _v("not reproduced", f"{text}: the UAP does no better than noise of its norm")


def verdict_defense_rate(value, paper: float, hi=None, baseline=None, what: str = "defended") -> tuple[str, str]:
    """A claim "the defended model reaches a defense rate of ``paper``" (Chen et al.).

    :func:`verdict_at_least` on ``value`` (with its interval's upper end ``hi``), except that a
    "reproduced" becomes "partly" when the undefended ``baseline`` reaches ``paper`` at the same budget
    too: the number is then set by the (unstated) budget, not by the defense; and a "partly" becomes
    "not reproduced" when the defended model stays *below* the undefended ``baseline``: a number near
    the paper's that the defense made worse is no support for it."""
    verdict, reason = verdict_at_least(value, paper, hi=hi, what=what)
    if verdict == "reproduced" and baseline is not None and baseline >= paper - _EPS:
        return _v("partly", f"{reason}, but the undefended model reaches {_pct(baseline)} at this budget too")
    if verdict == "partly" and baseline is not None and value < baseline - _EPS:
        return _v("not reproduced", f"{reason}, but not above the undefended model's {_pct(baseline)}: no gain from "
                                    "the defense")
    return verdict, reason


def confirm_by_seeds(paired: dict, every_seed: dict) -> dict:
    """Issue 22, item 6: a paired "shown" holds only if it holds for every fine-tuning seed.  ``paired``: arm → a
    row of :func:`~medadv_lib.metrics.defense.paired_tests` against baseline-ft (the first seed); ``every_seed``:
    arm → ``course.seed_replicates``' ``every_seed`` ("higher", "lower", "not shown", "not at every seed").  An arm
    shown higher or lower whose ``every_seed`` differs becomes ``shown = "not at every seed"``; arms without a
    replicate keep their row.  Returns a new dict.

    Example::
        >>> confirm_by_seeds({"cbam": {"shown": "higher"}}, {"cbam": "not at every seed"})["cbam"]["shown"]
        'not at every seed'
    """
    out = {}
    for arm, row in paired.items():
        row = dict(row)
        again = every_seed.get(arm)
        if again is not None and row.get("shown") in ("higher", "lower") and again != row["shown"]:
            row["shown"] = "not at every seed"
        out[arm] = row
    return out


def verdict_ablation(arms: dict, reference, paired: dict | None = None, masked=()) -> tuple[str, str]:
    """A claim "each module (attention, pruning) helps" (Chen et al.'s ablation).

    ``arms``: defended arm name → ``(rate, lo, hi)``, the defense rate and its Wilson 95 % interval;
    ``reference``: the same for the equally fine-tuned undefended baseline ("baseline-ft").

    With ``paired`` (arm → a row of :func:`~medadv_lib.metrics.defense.paired_tests` against baseline-ft:
    ``model_only``, ``reference_only``, ``p_holm``, ``shown``), every arm having been attacked on the same
    images: an arm is *shown* better when it keeps significantly more images correct under the attack
    (exact McNemar test, Holm-adjusted p < 0.05 over the arms).  Without it (records from before the
    per-image outcomes were kept) an arm is shown better when its interval lies above the reference's
    (``lo > reference hi``), a conservative rule.  Arms are attention-only (``cbam``, ``se``),
    pruning-only (``prune…``, ``channels…``) or both (``+``).

    * "not run" without the reference or without any arm;
    * "reproduced" when an attention-only arm *and* a pruning-only arm are shown better;
    * "partly" when some arm is shown better, but not one of each module;
    * "not shown" when no arm is shown better (the paired test could not separate them: absence of evidence),
      "not reproduced" when no arm is shown better and some arm is shown *worse*;
    * an arm in ``masked`` (a masking check flags it) never counts as shown; "not shown (masking)" when only
      such arms are."""
    if reference is None or reference[0] is None or not arms:
        return _v("not run", "no ablation (defended arms and the fine-tuned baseline) recorded")
    ref_rate, _, ref_hi = reference
    if paired:
        shown = [a for a, t in paired.items() if t["shown"] == "higher"]
        listing = "; ".join(f"{a}: kept correct by it alone {int(t['model_only'])}, by baseline-ft alone "
                            f"{int(t['reference_only'])} (Holm-adjusted p = {t['p_holm']:.3g}"
                            + ("; not at every fine-tuning seed" if t["shown"] == "not at every seed" else "") + ")"
                            for a, t in paired.items())
        listing += ("; the ablation arms only: notebook 04's sparsity sweep is judged there, with its collapse guard "
                    "(no transfer attack in the sweep)")
        ref = ("baseline-ft (image by image: exact McNemar test on 'correct under every attack of the suite', "
               "Holm-adjusted over the arms)")
        none_why = f"no arm keeps more of the same images correct than {ref} beyond chance; {listing}"
    else:
        shown = [a for a, (r, lo, hi) in arms.items() if r is not None and lo is not None and lo > ref_hi]
        listing = ", ".join(f"{a} {_pct(r)} [{_pct(lo)}, {_pct(hi)}]" for a, (r, lo, hi) in arms.items())
        ref = f"baseline-ft {_pct(ref_rate)} [{_pct(reference[1])}, {_pct(ref_hi)}]"
        none_why = f"every arm's 95 % interval overlaps {ref} or lies below it: {listing}"
    worse = [a for a, t in (paired or {}).items() if t.get("shown") == "lower"]
    if shown and set(shown) <= set(masked) and not worse:
        return _v("not shown (masking)", f"only {', '.join(shown)} above {ref}, and a masking check flags "
                                         f"{'it' if len(shown) == 1 else 'them'}: {listing}")
    shown = [a for a in shown if a not in set(masked)]
    kinds = {a: arm_kind(a) for a in shown}
    if "attention" in kinds.values() and "pruning" in kinds.values():
        return _v("reproduced", f"attention and pruning arms both above {ref}: {listing}")
    if shown:
        return _v("partly", f"only {', '.join(shown)} above {ref} (not one arm of each module): {listing}")
    if worse:
        return _v("not reproduced", f"{none_why}; and {', '.join(worse)} {'is' if len(worse) == 1 else 'are'} shown worse")
    return _v("not shown", none_why)


def arm_kind(name: str) -> str:
    """An arm's modules: "attention" (``cbam``, ``se``), "pruning" (``prune…``, ``channels…``), "both" (joined
    by ``+``) or "other"."""
    parts = str(name).split("+")
    att = any(p in ("cbam", "se") for p in parts)
    pru = any(p.startswith(("prune", "channels")) for p in parts)
    return "both" if att and pru else "attention" if att else "pruning" if pru else "other"


# --- one verdict per claim: the word and its claim's key, as every notebook prints them ---------------------
CLAIM_KEYS = ("hirano-nontargeted", "hirano-targeted", "hirano-to-covid", "hirano-random", "hirano-finetune",
              "chen-pgd", "chen-deepfool", "chen-ablation")
"""The claims of both papers, by the key the report's claims table gives each row (``id``)."""
NOTEBOOK_CLAIMS = {
    "02_universal_perturbations": ("hirano-nontargeted", "hirano-targeted", "hirano-to-covid", "hirano-random"),
    "04_pruning_and_attention": ("chen-pgd", "chen-deepfool", "chen-ablation"),
    "05_uap_finetuning_and_adversarial_training": ("hirano-finetune",),
    "06_transfer_and_report": CLAIM_KEYS,
}
"""The claims whose verdict each notebook prints (with :func:`verdict_mark`): every one of them must be there."""
_MARK = re.compile(r"\*\*(?P<verdict>[^*\n]+?)\*\* \[`(?P<key>[a-z][a-z0-9-]*)`\]")


def verdict_mark(key: str, verdict: str) -> str:
    """A claim's verdict as the notebooks print it: the word in bold, the claim's key beside it — the marker
    :func:`notebook_verdicts` reads back.  Refuses a key the report has no row for and a word that is no
    verdict (a notebook's own word, such as "shown", cannot pass for the rule book's).

        >>> verdict_mark("hirano-finetune", "partly")
        '**partly** [`hirano-finetune`]'
    """
    if key not in CLAIM_KEYS:
        raise ValueError(f"{key!r} is no claim of the report; the claims are {', '.join(CLAIM_KEYS)}")
    if verdict not in VERDICTS:
        raise ValueError(f"{verdict!r} is no verdict of the rule book; the verdicts are {', '.join(VERDICTS)}")
    return f"**{verdict}** [`{key}`]"


def marked_verdicts(text: str) -> dict[str, list[str]]:
    """``{claim key: [every word marked for it]}`` in ``text`` (Markdown or plain), in order of appearance.

        >>> marked_verdicts("ours: **not shown** [`chen-ablation`]; and **partly** [`hirano-random`] (why)")
        {'chen-ablation': ['not shown'], 'hirano-random': ['partly']}
    """
    out: dict[str, list[str]] = {}
    for m in _MARK.finditer(text):
        out.setdefault(m["key"], []).append(m["verdict"])
    return out


def _output_texts(output: dict) -> list[str]:
    def text(v):
        return "".join(v) if isinstance(v, list) else str(v)
    if output.get("output_type") == "stream":
        return [text(output.get("text", ""))]
    data = output.get("data", {})
    return [text(data[k]) for k in ("text/markdown", "text/plain") if k in data]


def notebook_verdicts(notebook) -> dict[str, list[str]]:
    """``{claim key: [words]}`` marked (:func:`verdict_mark`) in the outputs of an executed notebook: a path to its
    ``.ipynb`` or the notebook as a dict (nbformat's node is one).  Reads every code cell's streams and its
    Markdown and plain-text results; a claim printed twice lists both words (each output once)."""
    nb = notebook if isinstance(notebook, dict) else json.loads(Path(notebook).read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            found: dict[str, list[str]] = {}
            for t in _output_texts(output):          # the same output as Markdown and as text: counted once
                for key, words in marked_verdicts(t).items():
                    found[key] = max(found.get(key, []), words, key=len)
            for key, words in found.items():
                out.setdefault(key, []).extend(words)
    return out


def verdict_mismatches(found: dict, claims, expected=()) -> dict[str, dict]:
    """Every claim whose verdict in a notebook (``found``: ``{key: word or [words]}``, e.g. from
    :func:`notebook_verdicts`) is not the report's (``claims``: rows of the claims table with ``id`` and
    ``verdict``), and every claim of ``expected`` the notebook does not print: ``{key: {"notebook": [words],
    "report": word or None}}``, empty when they agree.

        >>> verdict_mismatches({"chen-ablation": "shown"}, [{"id": "chen-ablation", "verdict": "partly"}])
        {'chen-ablation': {'notebook': ['shown'], 'report': 'partly'}}
    """
    report = {c["id"]: c["verdict"] for c in claims}
    out = {}
    for key in [*dict.fromkeys([*expected, *found])]:
        words = found.get(key) or []
        words = [words] if isinstance(words, str) else list(words)
        if not words or any(w != report.get(key) for w in words):
            out[key] = {"notebook": words, "report": report.get(key)}
    return out


def rules_text() -> str:
    """The rule book in words, one Markdown bullet per kind of claim, with the thresholds this module
    defines (so the text changes when a threshold does): what notebook 06 shows under its claims table."""
    return "\n".join([
        f"- **A rate that should reach the paper's number** (Hirano et al.'s non-targeted fooling rate): reproduced at or "
        f"above it; partly within {_pts(NEAR)} below it, or when the 95 % interval reaches it; else not reproduced. The "
        "rate read is re-weighted to the paper's test mix and counted against the clean predictions.",
        f"- **Targeted UAPs**: reproduced when every target reaches {_pct(HIRANO_TARGETED, 0)}; partly when at least one reaches "
        f"{_pct(HIRANO_TARGETED - NEAR, 0)}; else not reproduced.",
        "- **Where the images go**: reproduced when more than half go to COVID-19 (re-weighted); partly when COVID-19 is "
        "the most frequent prediction but holds half or less.",
        f"- **The random control**: reproduced when the control changes at most {_pct(RANDOM_MAX, 0)} of the predictions and the "
        f"UAP at least {RANDOM_RATIO:g}× and {_pts(NEAR)} more; partly when the UAP is at least {_pts(MIN_GAP)} above it.",
        f"- **UAP fine-tuning** (Hirano et al.): each round is judged by its strongest UAP (the fresh one or any UAP it was "
        f"fine-tuned against); reproduced when that rate falls by at least {_pts(FINETUNE_DROP)} "
        f"with the 95 % intervals apart and at most {_pts(FINETUNE_ACC_COST)} of clean accuracy lost; partly when it falls by "
        f"at least {_pts(FINETUNE_MIN_DROP)} but a condition fails; else not reproduced. A reproduced stays so only when "
        "the last round's interval lies below a fresh UAP's on every model fine-tuned without UAPs (else partly).",
        f"- **A defense rate** (Chen et al., worst case over the attack suite): not shown (masking) when a masking check "
        "flags the arm; not reproduced when the whole 95 % interval lies below the paper's number; not shown when the arm "
        "collapsed, or when it does not keep significantly more images correct than the equally fine-tuned baseline at "
        f"every fine-tuning seed it was trained with (exact McNemar, Holm, α = {ALPHA:g}); else reproduced.",
        "- **The ablation**: reproduced when both modules (attention, pruning) are shown to help on the same images; "
        "partly when one is; not shown when neither is; not reproduced when an arm is shown worse. An arm counts as "
        "shown better (or worse) only if every fine-tuning seed it was trained with says so.",
    ])
