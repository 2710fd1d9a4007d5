"""The paired comparison of models attacked on the same images: the exact McNemar test, Holm's
adjustment, per-image outcomes kept by robustness_table, and the verdicts of notebooks 04 and 05."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medadv_lib import course
from medadv_lib.metrics.defense import (bits_outcome, holm, mcnemar_exact, outcome_bits, paired_tests,
                                        paired_text)


def test_mcnemar_exact_by_hand():
    # A right, B wrong on 1 image; A wrong, B right on 7; 10 concordant.  Under H0 the 8 discordant
    # images are fair coins: P(X <= 1) = (C(8,0) + C(8,1)) / 2^8 = 9/256, doubled: 18/256.
    a = [1] * 5 + [0] * 5 + [1] + [0] * 7
    b = [1] * 5 + [0] * 5 + [0] + [1] * 7
    t = mcnemar_exact(a, b)
    assert (t["n"], t["both"], t["neither"], t["a_only"], t["b_only"], t["discordant"]) == (18, 5, 5, 1, 7, 8)
    assert t["p_value"] == pytest.approx(18 / 256)
    assert mcnemar_exact(b, a)["p_value"] == pytest.approx(18 / 256)          # symmetric
    assert mcnemar_exact([1, 0, 1], [1, 0, 1])["p_value"] == 1.0              # no discordant image
    assert mcnemar_exact([1] * 6, [0] * 6)["p_value"] == pytest.approx(2 / 64)
    assert mcnemar_exact([1, 0], [0, 1])["p_value"] == 1.0                    # 1 vs 1: capped at 1
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact([1, 0], [1])


def test_mcnemar_matches_scipys_binomial_test():
    stats = pytest.importorskip("scipy.stats")
    for k, d in ((0, 5), (2, 11), (9, 20), (30, 41)):
        a = [1] * k + [0] * (d - k)
        b = [0] * k + [1] * (d - k)
        assert mcnemar_exact(a, b)["p_value"] == pytest.approx(stats.binomtest(k, d, 0.5).pvalue, rel=1e-9)


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([]) == []


def test_outcome_bits_round_trip():
    m = np.array([True, False, False, True])
    assert outcome_bits(m) == "1001" and (bits_outcome("1001") == m).all()
    with pytest.raises(ValueError):
        bits_outcome("10x1")


def _table(outcomes: dict, eps=1 / 255, attack="pgd") -> pd.DataFrame:
    """A fabricated robustness table: one PGD row per model with its per-image outcomes."""
    rows = []
    for name, ok in outcomes.items():
        ok = np.asarray(ok, dtype=bool)
        rows.append({"model": name, "attack": attack, "eps": eps, "n": len(ok), "robust_accuracy": ok.mean(),
                     "defense_rate": ok.mean(), "outcome_clean": "1" * len(ok), "outcome_attacked": outcome_bits(ok)})
    return pd.DataFrame(rows)


def _kept(n: int, *ranges, lost=()) -> np.ndarray:
    """Per-image outcomes: True on the images of ``ranges`` (``(start, stop)``), then False on ``lost``."""
    ok = np.zeros(n, bool)
    for a, b in ranges:
        ok[a:b] = True
    for a, b in lost:
        ok[a:b] = False
    return ok


def test_paired_tests_on_a_fabricated_ablation():
    n = 40
    base = _kept(n, (0, 20))                                           # 20/40
    ft = base.copy()                                                   # the same 20
    strong = _kept(n, (0, 32))                                         # +12 images, none lost: p = 2/4096
    noisy = _kept(n, (0, 23), lost=[(0, 2)])                           # +3 −2
    t = paired_tests(_table({"baseline": base, "baseline-ft": ft, "strong": strong, "noisy": noisy}), "baseline-ft",
                     eps=1 / 255, models=["strong", "noisy"]).set_index("model")
    assert t.loc["strong", ["model_only", "reference_only"]].tolist() == [12, 0]
    assert t.loc["strong", "p_value"] == pytest.approx(2 / 2 ** 12)
    assert t.loc["strong", "p_holm"] == pytest.approx(2 * 2 / 2 ** 12)
    assert t.loc["noisy", ["model_only", "reference_only"]].tolist() == [3, 2]
    assert t.loc["noisy", "p_value"] == pytest.approx(1.0)
    assert t.shown.tolist() == ["higher", "not shown"]
    assert t.loc["strong", "robust_accuracy"] == pytest.approx(32 / 40)
    text = paired_text(t.reset_index().iloc[0])
    assert "strong correct under attack on 32/40 images vs 20/40 for baseline-ft" in text
    assert "12 only strong, 0 only baseline-ft" in text and "Holm-adjusted" in text


def test_paired_tests_refuse_unpaired_or_outcome_free_tables():
    t = _table({"a": [1, 0, 1], "b": [1, 1]})
    with pytest.raises(ValueError, match="not paired"):
        paired_tests(t, "a")
    old = _table({"a": [1, 0], "b": [0, 1]}).drop(columns=["outcome_attacked"])
    with pytest.raises(ValueError, match="no per-image outcomes"):
        paired_tests(old, "a")


def test_robustness_table_keeps_per_image_outcomes(small_model, real_batch):
    from medadv_lib.metrics.defense import RobustnessSettings, robustness_table
    x, y = real_batch
    s = RobustnessSettings(eps=(2 / 255,), suite_eps=(), deepfool_steps=5, l2_steps=0, square_queries=0, large_eps=None)
    t = robustness_table(small_model, x, y, "m", s)
    for r in t.itertuples():
        ok, clean = bits_outcome(r.outcome_attacked), bits_outcome(r.outcome_clean)
        assert ok.size == clean.size == len(y)
        assert ok.mean() == pytest.approx(r.robust_accuracy)
        assert (ok & clean).sum() / max(clean.sum(), 1) == pytest.approx(r.defense_rate, nan_ok=True)
    # round trip through the JSON cache format keeps the strings (leading zeros included)
    import io
    back = pd.read_json(io.StringIO(t.to_json(orient="records")), orient="records",
                        dtype={"outcome_clean": str, "outcome_attacked": str})
    assert back.outcome_attacked.tolist() == t.outcome_attacked.tolist()


def test_the_ablation_verdict_follows_the_paired_test():
    n = 56
    base = _kept(n, (0, 40))
    ft = _kept(n, (0, 42))
    cbam = _kept(n, (0, 42), lost=[(0, 1)])                                     # 1 lost
    prune = _kept(n, (0, 54))                                                   # +12
    t = _table({"baseline": base, "baseline-ft": ft, "cbam": cbam, "prune0.6": prune}, attack="worst")
    v = course.ablation_verdict(t)
    # a pruning arm alone is shown: the rule book's (and the report's) word for the ablation claim is "partly"
    assert v["verdict"] == "partly" and v["best"] == "prune0.6"
    assert "**partly** [`chen-ablation`]: prune0.6 keeps more images correct than baseline-ft" in v["text"]
    assert "Paired on the same 56 attacked images" in v["text"] and "12 only prune0.6, 0 only baseline-ft" in v["text"]
    assert v["vs_undefended"].set_index("model").loc["prune0.6", "model_only"] == 14
    # the same gain from an arm a masking check flags is "not shown (masking)"
    checks = pd.DataFrame({"model": ["baseline", "baseline-ft", "cbam", "prune0.6"], "failed": [[], [], [], ["transfer"]]})
    assert course.ablation_verdict(t, checks=checks)["verdict"] == "not shown (masking)"
    t2 = _table({"baseline": base, "baseline-ft": ft, "cbam": cbam, "prune0.6": ft}, attack="worst")
    v2 = course.ablation_verdict(t2)
    assert v2["verdict"] == "not shown" and v2["text"].count("**not shown**") == 1
    assert "at least 7 discordant images, all one way, would be needed" in v2["text"]    # two arms: 2 · 2 · 2^-7 < 0.05
    assert course.pipelines._min_discordant(2) == 7 and course.pipelines._min_discordant(4) == 8
    assert course.pipelines._min_discordant(1) == 6


def test_method_labels_say_what_the_adversarial_training_is():
    assert course.method_label("pgd-at", True) == "FGSM-RS AT (2/255)"
    assert course.method_label("pgd-at", False) == "PGD-7 AT (2/255)"
    assert course.method_label("pgd-at", True, eps=4 / 255) == "FGSM-RS AT (4/255)"
    assert course.method_label("uat", True) == "uat" and course.method_labels(True) == {"pgd-at": "FGSM-RS AT (2/255)"}


def test_adversarial_verdicts_compare_with_the_undefended_model_image_by_image():
    from test_adversarial_training import _matrix
    n = 56
    base = _kept(n, (0, 20))
    uft = _kept(n, (0, 23))                                                # +3: not shown
    at = _kept(n, (0, 40))                                                 # +20: shown
    paired = paired_tests(_table({"baseline": base, "uap-finetune": uft, "pgd-at": at}, eps=2 / 255), "baseline")
    labels = course.method_labels(True)
    v = course.adversarial_verdicts(_matrix(0.30, 0.10, 0.05), paired=paired, labels=labels).set_index("key", drop=False)
    assert "image by image" in v.statement["finetune-pgd2"] and v.verdict["finetune-pgd2"] == "not shown to differ (paired)"
    assert "3 only uap-finetune, 0 only baseline" in v.measured["finetune-pgd2"]
    last = v.loc["paired:pgd-at"]
    assert last.statement.startswith("FGSM-RS AT (2/255) against the worst case over the suite (ε = 2/255)")
    assert last.verdict == "more images correct under attack than the undefended model"
    assert "20 only FGSM-RS AT (2/255), 0 only baseline" in last.measured
    assert v.statement["at-pgd-bar"].startswith("FGSM-RS AT (2/255): worst-case defense rate") and "pgd-at" not in " ".join(v.statement)
    assert not math.isnan(paired.p_value.iloc[0])


def test_the_wilson_interval_always_holds_its_rate():
    """At k = 0 or k = n the rounding of centre ± half used to land inside the rate (104 of the (k, n) below),
    and notebook 04's error bars then had a negative length, which matplotlib refuses."""
    from medadv_lib.stats import wilson_interval
    outside = [(k, n) for n in range(1, 300) for k in range(n + 1)
               if not wilson_interval(k, n)[0] <= k / n <= wilson_interval(k, n)[1]]
    assert not outside, outside[:5]
    assert wilson_interval(21, 21)[1] == 1.0 and wilson_interval(0, 22)[0] == 0.0


def test_error_bars_of_a_rate_at_its_bound_are_not_negative():
    from medadv_lib.viz.defense import _err
    err = _err([1.0, 0.0, 0.5], [0.8, 0.0, 0.4], [1.0 - 1e-16, 0.2, 0.6])
    assert (err >= 0).all() and err[1, 0] == 0.0


def _replicates(rows) -> pd.DataFrame:
    """A fabricated course.seed_replicates table: (arm, seed, shown) rows, every_seed as the function derives it."""
    t = pd.DataFrame([{"arm": a, "finetune_seed": s, "shown": sh, "n": 56, "eps": 1 / 255, "robust_accuracy": 0.5,
                       "defense_rate": 0.6 + 0.1 * s,
                       "reference_robust_accuracy": 0.4, "p_holm": 0.01 if sh != "not shown" else 0.5}
                      for a, s, sh in rows])
    agg = t.groupby("arm").shown.agg(lambda s: "higher" if set(s) == {"higher"} else "lower" if set(s) == {"lower"}
                                     else "not shown" if set(s) == {"not shown"} else "not at every seed")
    return t.assign(every_seed=t.arm.map(agg))


def test_a_verdict_holds_only_if_every_fine_tuning_seed_says_so():
    """Issue 22, item 6: prune0.6 is shown better than baseline-ft at fine-tuning seed 0 but not at seed 1, so the
    ablation no longer counts it, in notebook 04 and in the report alike; confirmed at both seeds, it counts."""
    n = 56
    base, ft = _kept(n, (0, 40)), _kept(n, (0, 42))
    cbam, prune = _kept(n, (0, 42), lost=[(0, 1)]), _kept(n, (0, 54))
    t = _table({"baseline": base, "baseline-ft": ft, "cbam": cbam, "prune0.6": prune}, attack="worst")
    assert course.replicate_arms(t, "cbam") == ["cbam", "prune0.6"]          # the best arm and the arm shown better
    worse = _table({"baseline": base, "baseline-ft": ft, "cbam": cbam, "channels0.3": _kept(n, (0, 30))}, attack="worst")
    assert course.replicate_arms(worse, "cbam") == ["cbam", "channels0.3"]    # an arm shown worse is re-run too
    wobbly = _replicates([("cbam", 0, "not shown"), ("cbam", 1, "not shown"), ("prune0.6", 0, "higher"),
                          ("prune0.6", 1, "not shown")])
    v = course.ablation_verdict(t, replicates=wobbly)
    assert v["verdict"] == "not shown" and "prune0.6 was shown higher at the first fine-tuning seed but not at every seed" in v["text"]
    assert v["vs_control"].set_index("model").shown["prune0.6"] == "not at every seed"
    steady = _replicates([("cbam", 0, "not shown"), ("cbam", 1, "not shown"), ("prune0.6", 0, "higher"),
                          ("prune0.6", 1, "higher")])
    assert course.ablation_verdict(t, replicates=steady)["verdict"] == "partly"
    text = course.replicate_text(wobbly)
    assert "**prune0.6** — seed 0:" in text and "→ **not at every seed**" in text
    assert "Holm over the 2 re-run arms" in text and "baseline-ft itself keeps 22/56 at seed 0, 22/56 at seed 1" in text


def test_the_report_reads_the_seed_replicates_notebook_04_records(tmp_path, monkeypatch):
    from medadv_lib.course import report as rep
    from medadv_lib.course.results import defense_records, record
    n = 56
    base, ft = _kept(n, (0, 40)), _kept(n, (0, 42))
    both = _kept(n, (0, 56))                                                  # +14: shown at seed 0
    t = _table({"baseline": base, "baseline-ft": ft, "cbam+prune0.6": both}, attack="worst")
    t = t.assign(n_clean_correct=n, defense_rate_lo=t.defense_rate - 0.1, defense_rate_hi=t.defense_rate + 0.05)
    info = {"config": {"model": "resnet18_w0.5", "image_size": 112}, "checkpoint": "x.pt"}
    study = {m: (None, info) for m in t.model}
    checks = pd.DataFrame({"model": list(t.model), "verdict": ["no masking detected"] * 3, "failed": [[]] * 3})

    import medadv_lib.course.results as res
    monkeypatch.setattr(res, "model_record", lambda *a, **k: {"model": "resnet18_w0.5", "data_fingerprint": "d",
                                                               "checkpoint_fingerprint": "c", "precision": "fp32"})

    def chen(replicates):                      # (no checkpoint file behind the fake study: model_record is faked)
        recs = defense_records(t, checks, study, "fp32", replicates=replicates)
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        record("04_pruning_and_attention", recs, out)
        claims = {c["id"]: c for c in rep.claims_table(rep.load_results(out))}
        return claims["chen-pgd"], claims["chen-ablation"], recs
    c, a, _ = chen(None)
    assert c["verdict"] == "reproduced" and a["verdict"] == "partly"
    c, a, recs = chen(_replicates([("cbam+prune0.6", 0, "higher"), ("cbam+prune0.6", 1, "not shown")]))
    assert [r.get("every_seed") for r in recs] == [None, None, "not at every seed"]
    assert c["verdict"] == "not shown" and "not at every seed" in c["reason"]
    assert "fine-tuned again with another seed: 60.0 % at fine-tuning seed 0, 70.0 % at fine-tuning seed 1" in c["reason"]
    assert a["verdict"] == "not shown" and "an arm counts only if it is shown at every seed" in a["our_conditions"]


def test_one_median_of_rho_adv_in_every_table(small_model, real_batch):
    """Issue 22, item 8: the robustness table's DeepFool median ρ_adv is the course's one median (numpy's: the mean of
    the two middle values for an even count), the one the histograms and metrics.median_rho_adv show."""
    from medadv_lib.attacks import deepfool
    from medadv_lib.metrics import rho_adv
    from medadv_lib.metrics.defense import RobustnessSettings, robustness_table
    x, y = real_batch
    s = RobustnessSettings(eps=(), suite_eps=(), deepfool_steps=5, l2_steps=0, square_queries=0, large_eps=None)
    row = robustness_table(small_model, x, y, "m", s).set_index("attack").loc["deepfool"]
    correct = small_model(x).argmax(1) == y
    df = deepfool(small_model, x, y, norm="2", steps=5)
    rho = rho_adv(df.delta, x)[correct & df.success].numpy()
    assert rho.size >= 2 and row.median_rho_adv == pytest.approx(float(np.median(rho)), rel=1e-5)
