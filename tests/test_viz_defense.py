"""Defense plots and the shared figures carry their intervals (hand-made tables; no model needed)."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from medadv_lib.stats import wilson_interval  # noqa: E402
from medadv_lib.viz import plot_confusion, plot_history  # noqa: E402
from medadv_lib.viz.defense import plot_cross_threat, plot_defense_rates, plot_rounds, plot_sparsity_curve  # noqa: E402


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _row(model, attack, eps, rate):
    lo, hi = wilson_interval(round(rate * 40), 40)
    return {"model": model, "attack": attack, "eps": eps, "defense_rate": rate, "defense_rate_lo": lo,
            "defense_rate_hi": hi, "n": 48, "clean_accuracy": 40 / 48}


def _table():
    rows = []
    for m in ("baseline", "cbam"):
        for e in (1 / 255, 2 / 255):
            rows += [_row(m, "pgd", e, 0.5 - 10 * e), _row(m, "worst", e, 0.4 - 10 * e)]
        rows += [_row(m, "deepfool", 0.1, 0.3), _row(m, "transfer", 2 / 255, 0.8)]
    return pd.DataFrame(rows)


def test_defense_rates_every_curve_and_bar_has_its_interval():
    fig = plot_defense_rates(_table())
    left, right = fig.axes[:2]
    assert len(_bands(left)) == 2                               # PGD-10 alone: one band per model
    assert len(_errorbars(left)) == 2                           # the worst case: Wilson error bars per model
    assert len(_errorbars(right)) == 2                          # the bars of the other attacks, per model
    assert "Wilson 95 %" in left.get_ylabel()
    plt.close(fig)


def test_sparsity_curve_clean_accuracy_band_and_defense_rate_bars():
    e = 2 / 255
    sweep = pd.DataFrame({"sparsity": [0.0, 0.3, 0.6], "clean_accuracy": [0.8, 0.75, 0.7], "n": 40, "eps": e,
                          "defense_rate": [0.2, 0.3, 0.4], "defense_rate_lo": [0.1, 0.2, 0.3],
                          "defense_rate_hi": [0.3, 0.4, 0.5]})
    fig = plot_sparsity_curve(sweep)
    ax = fig.axes[0]
    assert len(_bands(ax)) == 1 and len(_errorbars(ax)) == 1
    ys = sorted(float(y) for x, y in _bands(ax)[0].get_paths()[0].vertices if abs(x) < 1e-9)
    assert (ys[0], ys[-1]) == pytest.approx(wilson_interval(32, 40))
    plt.close(fig)
    fig = plot_sparsity_curve(sweep.drop(columns="n"))            # no count: no clean band, nothing invented
    assert not _bands(fig.axes[0]) and len(_errorbars(fig.axes[0])) == 1
    plt.close(fig)


def _rounds():
    rows = []
    for r in range(3):
        row = {"round": r, "clean_accuracy": 0.8 - 0.01 * r, "balanced_accuracy": 0.78, "n": 300}
        for col, v in (("fresh_uap_fooling_rate", 0.5 - 0.1 * r), ("old_uap_fooling_rate", np.nan if r == 0 else 0.2),
                       ("random_fooling_rate", 0.05)):
            lo, hi = wilson_interval(round(v * 300), 300) if v == v else (np.nan, np.nan)
            row.update({col: v, f"{col}_lo": lo, f"{col}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def test_rounds_error_bars_left_clean_accuracy_band_right_and_reference_bands():
    fig = plot_rounds(_rounds(), others={"plain": (0.45, 0.79)})
    a1, a2 = fig.axes[:2]
    assert len(_errorbars(a1)) == 3                             # fresh, old, random: each with Wilson bars
    assert len(_bands(a2)) == 1                                 # clean accuracy (balanced: no counts, no band)
    plt.close(fig)
    rt = _rounds().assign(balanced_accuracy_lo=0.7, balanced_accuracy_hi=0.85)
    fig = plot_rounds(rt, others={"plain": ((0.45, 0.4, 0.5), (0.79, 0.74, 0.83))})
    a1, a2 = fig.axes[:2]
    assert len(_bands(a2)) == 2                                 # clean and balanced accuracy
    spans = [p for p in a1.patches + a2.patches if p.get_alpha() == pytest.approx(0.10)]
    assert len(spans) == 2                                      # the reference's interval on both panels
    plt.close(fig)


def test_cross_threat_cells_carry_their_interval_flipped_with_the_rate():
    m = pd.DataFrame({"uap_fooling_rate": [0.6], "uap_fooling_rate_lo": [0.5], "uap_fooling_rate_hi": [0.7],
                      "uap_to_covid_success": [0.3], "uap_to_covid_success_lo": [0.2], "uap_to_covid_success_hi": [0.4],
                      "pgd1_defense_rate": [0.4], "pgd1_defense_rate_lo": [0.25], "pgd1_defense_rate_hi": [0.55]},
                     index=["baseline"])
    fig = plot_cross_threat(m)
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert cells == ["0.40\n[0.30, 0.50]", "0.70\n[0.60, 0.80]", "0.40\n[0.25, 0.55]"]   # 1 − rate: [1 − hi, 1 − lo]
    plt.close(fig)


def test_confusion_row_shares_carry_wilson_intervals_counts_do_not_need_them():
    ax = plot_confusion([[8, 2, 0], [1, 9, 0], [0, 0, 10]], normalize=True)
    lo, hi = wilson_interval(8, 10)
    assert f"0.80\n[{lo:.2f}, {hi:.2f}]" in [t.get_text() for t in ax.texts] and "Wilson" in ax.get_title()
    ax = plot_confusion([[8, 2, 0], [1, 9, 0], [0, 0, 10]])
    assert "8" in [t.get_text() for t in ax.texts]
    plt.close("all")


def test_history_top_class_share_band_where_the_validation_size_is_recorded():
    hist = [{"epoch": e, "train_loss": 1.0 / e, "val_macro_f1": 0.5, "val_balanced_accuracy": 0.5,
             "val_top_class_share": 0.6, "val_n": 50} for e in (1, 2, 3)]
    ax = plot_history(hist)
    ax2 = [a for a in ax.figure.axes if a is not ax][0]
    assert len(_bands(ax2)) == 1
    ys = sorted(float(y) for x, y in _bands(ax2)[0].get_paths()[0].vertices if abs(x - 2) < 1e-9)
    assert (ys[0], ys[-1]) == pytest.approx(wilson_interval(30, 50))
    plt.close("all")
    ax = plot_history([{k: v for k, v in h.items() if k != "val_n"} for h in hist])   # older checkpoints: no count
    assert not any(_bands(a) for a in ax.figure.axes)
    plt.close("all")
