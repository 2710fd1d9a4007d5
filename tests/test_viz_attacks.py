"""Plots of medadv_lib.viz.attacks: they draw what they are given and reject bad input."""
from __future__ import annotations

import matplotlib
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from matplotlib.collections import PolyCollection  # noqa: E402

from medadv_lib.stats import wilson_interval  # noqa: E402
from medadv_lib.viz import TRUE_SCALE_LABEL, TRUE_SCALE_LIM  # noqa: E402
from medadv_lib.viz.attacks import adversarial_strip, median_interval, plot_rho_hist, plot_robustness_curves  # noqa: E402


def _curve(norm="inf", counts=True):
    df = pd.DataFrame({"eps": [1 / 255, 2 / 255], "norm": norm, "clean_accuracy": 0.9,
                       "robust_accuracy": [0.5, 0.1], "defense_rate": [0.55, 0.1]})
    return df.assign(n=40, n_clean_correct=36) if counts else df


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _band_y(poly):
    """The lower and upper edge of a fill_between band, as {x: (lo, hi)}."""
    xy = poly.get_paths()[0].vertices
    out = {}
    for x, y in xy:
        lo, hi = out.get(round(float(x), 6), (float("inf"), float("-inf")))
        out[round(float(x), 6)] = (min(lo, float(y)), max(hi, float(y)))
    return out


def test_robustness_curves_in_grey_levels_start_at_clean_accuracy():
    ax = plot_robustness_curves({"PGD": _curve(), "FGSM": _curve()})
    x, yv = ax.lines[0].get_data()
    assert list(x) == pytest.approx([0, 1, 2]) and list(yv) == pytest.approx([0.9, 0.5, 0.1])
    assert len(ax.lines) == 2 and "grey levels" in ax.get_xlabel()
    ax2 = plot_robustness_curves({"PGD L2": _curve("2")}, metric="defense_rate")
    assert list(ax2.lines[0].get_data()[0]) == pytest.approx([1 / 255, 2 / 255])
    plt.close("all")
    with pytest.raises(ValueError, match="empty"):
        plot_robustness_curves({})
    with pytest.raises(ValueError, match="no column"):
        plot_robustness_curves({"a": _curve()}, metric="fooling")


def test_rho_hist_one_line_per_class_with_medians():
    rho = torch.tensor([0.001, 0.002, 0.003, 0.01, 0.02, 0.0])
    y = torch.tensor([0, 0, 0, 2, 2, 1])
    ax = plot_rho_hist(rho, y)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(texts) == 2                                      # class 1 has only a zero ρ: skipped
    assert texts[0].startswith("normal (n=3, median 0.2%") and texts[1].startswith("COVID-19 (n=2")
    assert [ln.get_xdata()[0] for ln in ax.lines] == pytest.approx([0.2, 1.5])   # median lines, in %
    plt.close("all")
    with pytest.raises(ValueError, match="same length"):
        plot_rho_hist(rho, y[:3])


def test_adversarial_strip_layout_and_fixed_contrast():
    x = torch.full((2, 1, 8, 8), 0.5)
    x_adv = x + 0.01
    fig = adversarial_strip(x, x_adv, [0, 2], [0, 2], [0, 1], amplify=10)
    assert len(fig.axes) == 8                                   # 4 rows × 2: the true-scale row by default
    delta_img = fig.axes[2].images[0].get_array()              # row 1 (perturbation), column 0
    assert float(delta_img.mean()) == pytest.approx(0.6)
    assert fig.axes[5].title.get_color() == "crimson"           # image 1's prediction changed
    plt.close(fig)


def test_triplets_true_scale_adds_unamplified_perturbation_and_zoomed_crop():
    from medadv_lib.viz import triplets
    x = torch.full((2, 1, 16, 16), 0.5)
    v = torch.zeros(1, 1, 16, 16)
    v[..., 8:12, 4:8] = 0.02                                    # the change sits in one 4×4 square
    fig = triplets(x, v, x + v, row_titles=[("a", "b"), ("c", "d ✗")], true_scale=False)
    assert len(fig.axes) == 6                                   # 2 rows × 3: only when asked to drop the ×1 column
    plt.close(fig)
    fig = triplets(x, v, x + v, zoom=4)                          # the true-scale columns by default
    axes = fig.axes
    assert len(axes) == 12                                      # 2 rows × 6
    titles = [ax.get_title() for ax in axes[:6]]
    assert titles[1] == "perturbation ×25" and "true scale" in titles[3] and "4× crop" in titles[4]
    true_scale = axes[3].images[0].get_array()                  # δ itself, pixel units, on the fixed ±0.5 scale
    assert float(true_scale.max()) == pytest.approx(0.02) and float(true_scale.min()) == pytest.approx(0.0)
    assert axes[3].images[0].get_clim() == (-TRUE_SCALE_LIM, TRUE_SCALE_LIM)
    assert [c.get_ylabel() for c in axes[3].child_axes] == [TRUE_SCALE_LABEL]   # its colour bar, labelled, once
    assert not axes[9].child_axes
    crop_clean, crop_adv = axes[4].images[0].get_array(), axes[5].images[0].get_array()
    assert crop_clean.shape == crop_adv.shape == (4, 4)         # 16 / 4 pixels, the window of largest |δ|
    assert float((crop_adv - crop_clean).min()) == pytest.approx(0.02)
    assert len(axes[0].patches) == len(axes[2].patches) == 1    # the crop is outlined on both full images
    plt.close(fig)


def test_classes_in_turn_prefers_a_changed_image_when_none_is_picked():
    from medadv_lib.viz import classes_in_turn
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert classes_in_turn(y, 3) == [0, 1, 2]
    changed = torch.tensor([False, False, False, False, True, False])
    assert classes_in_turn(y, 3, prefer=changed) == [0, 4, 2]   # class 1's pick swapped for its changed image
    assert classes_in_turn(y, 2, prefer=torch.tensor([0, 0, 0, 0, 0, 1]).bool()) == [0, 5]   # class 2 not picked
    keep = torch.tensor([True, False, False, False, True, False])
    assert classes_in_turn(y, 3, prefer=keep) == [0, 1, 2]      # one is changed already: no swap
    assert classes_in_turn(y, 3, prefer=torch.zeros(6, dtype=torch.bool)) == [0, 1, 2]   # nothing to prefer
    with pytest.raises(ValueError, match="one entry per image"):
        classes_in_turn(y, 3, prefer=changed[:4])


def test_pgd_strip_shows_a_fooled_image_when_there_is_one():
    from types import SimpleNamespace

    from medadv_lib.viz.attacks import pgd_strip
    x = torch.rand(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    res = SimpleNamespace(x_adv=x.clone(), pred=torch.tensor([0, 1, 2, 0, 1, 0]))   # only image 5 changed
    s = {"norm": "inf", "eps_255": 2, "eps": 2 / 255, "robust_accuracy": 0.8, "defense_rate": 0.8, "n": 6}
    fig = pgd_strip(x, y, res, y.clone(), s, n_show=3)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[:3]] == ["true normal", "true pneumonia", "true COVID-19"]
    assert fig.axes[8].get_title() == "adv. pred normal" and fig.axes[8].title.get_color() == "crimson"
    plt.close(fig)


def test_adversarial_strip_true_scale_adds_the_unamplified_row_and_names_the_model():
    from types import SimpleNamespace

    from medadv_lib.viz.attacks import pgd_strip, pgd_summary_text
    x = torch.full((2, 1, 8, 8), 0.5)
    fig = adversarial_strip(x, x + 0.01, [0, 2], [0, 2], [0, 1], amplify=10, true_scale=True)
    assert len(fig.axes) == 8                                   # 4 rows × 2 columns
    row3 = fig.axes[6].images[0].get_array()                    # row 3, column 0: δ at ×1
    assert float(row3.mean()) == pytest.approx(0.01) and "true scale" in fig.axes[6].get_title()
    plt.close(fig)
    res = SimpleNamespace(x_adv=x + 0.01, pred=torch.tensor([0, 1]))
    s = {"norm": "inf", "eps_255": 2, "eps": 2 / 255, "steps": 10, "n": 2, "n_clean_correct": 2, "clean_accuracy": 1.0,
         "robust_accuracy": 0.5, "defense_rate": 0.5, "adv_pred_counts": {"normal": 1, "pneumonia": 1, "COVID-19": 0}}
    fig = pgd_strip(x, torch.tensor([0, 2]), res, torch.tensor([0, 2]), s, n_show=2, true_scale=True, model_name="net")
    assert len(fig.axes) == 8 and fig._suptitle.get_text().startswith("net, PGD L∞ ε = 2/255")
    assert "robust accuracy 50.0% [" in fig._suptitle.get_text()          # with its Wilson interval
    plt.close(fig)
    text = pgd_summary_text(s, "net")
    assert text.startswith("**net**, PGD-10 at L∞ ε = 2/255 on 2 images") and "robust accuracy 50.0%" in text
    assert "(of 2 clean-correct images)" in text and "0.5000" not in text


def test_robustness_curves_carry_one_wilson_band_per_curve():
    ax = plot_robustness_curves({"PGD": _curve(), "FGSM": _curve()})
    assert len(_bands(ax)) == len(ax.lines) == 2                # one band per curve, none missing
    edges = _band_y(_bands(ax)[0])
    assert edges[0.0] == pytest.approx(wilson_interval(36, 40))                 # clean accuracy 0.9 on n = 40
    assert edges[1.0] == pytest.approx(wilson_interval(20, 40))                 # robust accuracy 0.5 on n = 40
    ax = plot_robustness_curves({"PGD": _curve()}, metric="defense_rate")
    edges = _band_y(_bands(ax)[0])
    assert edges[2.0] == pytest.approx(wilson_interval(round(0.1 * 36), 36))    # a share of the clean-correct images
    assert "Wilson 95 %" in ax.get_ylabel()
    with_bounds = _curve(counts=False).assign(defense_rate_lo=[0.4, 0.05], defense_rate_hi=[0.7, 0.2])
    ax = plot_robustness_curves({"PGD": with_bounds}, metric="defense_rate")
    assert _band_y(_bands(ax)[0])[1.0] == pytest.approx((0.4, 0.7))             # the frame's own bounds first
    plt.close("all")


def test_robustness_curves_without_counts_or_bounds_draw_no_invented_band():
    ax = plot_robustness_curves({"PGD": _curve(counts=False), "FGSM": _curve()})
    assert len(ax.lines) == 2 and len(_bands(ax)) == 1          # only the curve with counts has evidence
    plt.close("all")


def test_median_interval_from_order_statistics():
    assert all(v != v for v in median_interval(range(1, 6)))             # n = 5: (nan, nan), no 95 % interval
    assert median_interval(range(1, 7)) == (1.0, 6.0)                    # n = 6: P(B ≤ 0) = 1/64 ≤ 2.5 %
    lo, hi = median_interval(range(1, 101))
    assert (lo, hi) == (40.0, 61.0)                                      # the textbook ranks for n = 100


def test_rho_hist_shades_each_median_interval():
    g = torch.Generator().manual_seed(0)
    rho = torch.rand(40, generator=g) * 0.02 + 0.001
    y = torch.tensor([0] * 20 + [1] * 17 + [2] * 3)             # class 2: 3 images, too few for an interval
    ax = plot_rho_hist(rho, y)
    spans = [p for p in ax.patches if not hasattr(p, "get_fill") or p.get_fill()]
    assert len(spans) == 2                                       # one shaded interval per class with n ≥ 6
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "[" in texts[0] and "[" in texts[1] and "[" not in texts[2]
    plt.close("all")


def test_every_perturbation_figure_shows_the_true_scale_beside_the_amplified_one():
    from types import SimpleNamespace

    from medadv_lib.viz.attacks import pgd_strip
    x = torch.full((3, 1, 8, 8), 0.5)
    fig = adversarial_strip(x, x + 0.01, [0, 1, 2], [0, 1, 2], [0, 1, 1])          # defaults
    titles = [ax.get_title() for ax in fig.axes]
    assert sum("perturbation ×" in t and "×1" not in t for t in titles) == 3       # the amplified row
    assert sum("true scale" in t for t in titles) == 3                              # and the ×1 row
    ts = [ax for ax in fig.axes if "true scale" in ax.get_title()]
    assert all(ax.images[0].get_clim() == (-TRUE_SCALE_LIM, TRUE_SCALE_LIM) for ax in ts)
    assert [c.get_ylabel() for ax in ts for c in ax.child_axes] == [TRUE_SCALE_LABEL]
    plt.close(fig)
    res = SimpleNamespace(x_adv=x + 0.01, pred=torch.tensor([0, 1, 1]))
    s = {"norm": "inf", "eps_255": 2, "eps": 2 / 255, "robust_accuracy": 0.6, "defense_rate": 0.6, "n": 3}
    fig = pgd_strip(x, torch.tensor([0, 1, 2]), res, torch.tensor([0, 1, 2]), s, n_show=3)
    assert len(fig.axes) == 12 and sum("true scale" in ax.get_title() for ax in fig.axes) == 3
    plt.close(fig)
    fig = adversarial_strip(x, x + 0.01, [0, 1, 2], [0, 1, 2], [0, 1, 1], true_scale=False)
    assert not any("true scale" in ax.get_title() for ax in fig.axes)     # only when a caller drops it
    plt.close(fig)
