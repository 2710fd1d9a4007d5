"""Plots of medadv_lib.viz.attacks: they draw what they are given and reject bad input."""
from __future__ import annotations

import matplotlib
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from medadv_lib.viz.attacks import adversarial_strip, plot_rho_hist, plot_robustness_curves  # noqa: E402


def _curve(norm="inf"):
    return pd.DataFrame({"eps": [1 / 255, 2 / 255], "norm": norm, "clean_accuracy": 0.9,
                         "robust_accuracy": [0.5, 0.1], "defense_rate": [0.55, 0.1]})


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
    assert len(fig.axes) == 6
    delta_img = fig.axes[2].images[0].get_array()              # row 1 (perturbation), column 0
    assert float(delta_img.mean()) == pytest.approx(0.6)
    assert fig.axes[5].title.get_color() == "crimson"           # image 1's prediction changed
    plt.close(fig)
