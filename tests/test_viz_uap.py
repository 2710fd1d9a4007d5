"""UAP plots draw what they are given (no model needed: hand-made tables and histories)."""
from __future__ import annotations

import matplotlib
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from matplotlib.collections import PolyCollection  # noqa: E402

from medadv_lib.attacks import UAPResult  # noqa: E402
from medadv_lib.stats import wilson_interval  # noqa: E402
from medadv_lib.viz import TRUE_SCALE_LABEL, TRUE_SCALE_LIM  # noqa: E402
from medadv_lib.viz.uap import plot_fooling_vs_zeta, plot_uap_history, show_perturbations  # noqa: E402


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _table(counts=True):
    rows = []
    for norm in ("inf", "2"):
        for z in (0.01, 0.02, 0.04):
            for kind, fr in (("UAP", 10 * z), ("random", z)):
                rows.append({"zeta": z, "norm": norm, "target": "none", "kind": kind, "fooling_rate": fr,
                             "fooling_rate_balanced": fr / 2, "target_success_rate": float("nan"),
                             "fooling_rate[normal]": fr / 4, "fooling_rate[pneumonia]": fr / 2,
                             "fooling_rate[COVID-19]": 3 * fr / 4})
    rows.append({"zeta": 0.02, "norm": "inf", "target": "COVID-19", "kind": "UAP", "fooling_rate": 0.5,
                 "fooling_rate_balanced": 0.4, "target_success_rate": 0.9, "fooling_rate[normal]": 0.4,
                 "fooling_rate[pneumonia]": 0.4, "fooling_rate[COVID-19]": 0.4})
    df = pd.DataFrame(rows)
    return df.assign(**{"n": 100, "n[normal]": 20, "n[pneumonia]": 24, "n[COVID-19]": 56}) if counts else df


def test_fooling_vs_zeta_one_panel_per_norm():
    import matplotlib.pyplot as plt
    fig = plot_fooling_vs_zeta(_table())
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert len(ax.lines) == 4                                   # 2 metrics × (UAP, random)
    xs, ys = ax.lines[0].get_data()
    assert list(xs) == pytest.approx([1, 2, 4]) and list(ys) == pytest.approx([0.1, 0.2, 0.4])
    plt.close(fig)
    fig = plot_fooling_vs_zeta(_table(), metrics=("target_success_rate",), target="COVID-19")
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    plt.close(fig)


def test_fooling_vs_zeta_errors():
    with pytest.raises(ValueError, match="no rows"):
        plot_fooling_vs_zeta(_table(), target="cat")
    with pytest.raises(ValueError, match="no column"):
        plot_fooling_vs_zeta(_table(), metrics=("accuracy",))
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="axes"):
        plot_fooling_vs_zeta(_table(), axes=[ax])
    plt.close("all")


def _res(rates, seconds):
    hist = [{"pass": i + 1, "fooling_rate": r, "seconds": s} for i, (r, s) in enumerate(zip(rates, seconds))]
    return UAPResult(v=torch.zeros(1, 1, 4, 4), eps=0.1, norm="inf", method="sgd", history=hist)


def test_uap_history_lines_start_at_zero():
    import matplotlib.pyplot as plt
    ax = plot_uap_history({"a": _res([0.2, 0.3], [1.0, 2.0]), "b": _res([0.1], [5.0])})
    xs, ys = ax.lines[0].get_data()
    assert list(xs) == [0.0, 1.0, 2.0] and list(ys) == [0.0, 0.2, 0.3]
    ax = plot_uap_history({"a": _res([0.2, 0.3], [1.0, 2.0])}, x="pass")
    assert list(ax.lines[0].get_data()[0]) == [0, 1, 2]
    with pytest.raises(ValueError, match="seconds"):
        plot_uap_history({"a": _res([0.2], [1.0])}, x="epoch")
    with pytest.raises(ValueError, match="target_success_rate"):
        plot_uap_history({"a": _res([0.2], [1.0])}, metric="target_success_rate")
    with pytest.raises(ValueError, match="empty"):
        plot_uap_history({})
    plt.close("all")


def test_show_perturbations_shares_one_contrast():
    import matplotlib.pyplot as plt
    v1, v2 = torch.full((1, 1, 4, 4), 0.01), torch.full((1, 1, 4, 4), -0.02)
    fig = show_perturbations({"a": v1, "b": UAPResult(v=v2, eps=0.02, norm="inf", method="sgd")})  # tensor or result
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 4                                      # amplified row, then the row at ×1
    assert float(shown[1].min()) == pytest.approx(0.0) and float(shown[0].max()) == pytest.approx(0.75)
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        show_perturbations({})


def test_show_perturbations_true_scale_adds_a_row_at_x1():
    import matplotlib.pyplot as plt
    v1, v2 = torch.full((1, 1, 4, 4), 0.01), torch.full((1, 1, 4, 4), -0.02)
    fig = show_perturbations({"a": v1, "b": v2})               # the row at ×1 by default
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 4                                      # 2 amplified + 2 at ×1
    assert float(shown[2].mean()) == pytest.approx(0.01) and float(shown[3].mean()) == pytest.approx(-0.02)
    assert "true scale" in fig.axes[2].get_title() and "true scale" in fig.axes[3].get_title()
    assert all(ax.images[0].get_clim() == (-TRUE_SCALE_LIM, TRUE_SCALE_LIM) for ax in fig.axes[2:])
    assert [c.get_ylabel() for ax in fig.axes for c in ax.child_axes] == [TRUE_SCALE_LABEL]   # one labelled bar
    plt.close(fig)
    fig = show_perturbations({"a": v1, "b": v2}, true_scale=False)
    assert len(fig.axes) == 2 and not any("true scale" in ax.get_title() for ax in fig.axes)
    plt.close(fig)


def test_fooling_vs_zeta_draws_the_ceiling_and_the_paper_with_a_legend_per_panel():
    import matplotlib.pyplot as plt
    ceil = {"normal": 0.7, "pneumonia": 0.8, "COVID-19": 0.4}
    fig = plot_fooling_vs_zeta(_table(), ceiling=ceil, paper=True)
    assert len(fig.legends) == 1                                # one legend under both panels
    _, given = plt.subplots(1, 2)
    plot_fooling_vs_zeta(_table(), ceiling=ceil, paper=True, axes=given)
    for ax, legend in [(a, fig.legends[0]) for a in fig.axes] + [(a, a.get_legend()) for a in given]:
        labels = [t.get_text() for t in legend.get_texts()]
        assert "ceiling of the plain rate: 0.80 (every image → pneumonia)" in labels
        assert any(lab.startswith("Hirano et al.: > 85% fooling at ζ = 2%") for lab in labels)
        ys = {round(float(ln.get_ydata()[0]), 3) for ln in ax.lines[4:]}
        assert {0.8, 0.85} <= ys                                # the two reference lines
        assert list(ax.lines[-1].get_data()[0]) == pytest.approx([2.0])   # the paper's star at ζ = 2%
    plt.close(fig)
    fig = plot_fooling_vs_zeta(_table(), metrics=("target_success_rate",), target="COVID-19", ceiling=0.5, paper=True)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any("ceiling" in lab for lab in labels) and any("> 90% target success" in lab for lab in labels)
    plt.close(fig)


def test_plain_rate_ceilings_from_the_clean_predictions():
    from medadv_lib.metrics.universal import plain_rate_ceilings, uap_metrics_from_predictions
    m = uap_metrics_from_predictions([0, 0, 1, 2, 2, 2, 2, 2, 2, 2], [1, 0, 1, 2, 2, 2, 2, 2, 2, 0],
                                     [0, 0, 1, 2, 2, 2, 2, 2, 2, 2])
    assert plain_rate_ceilings(m) == pytest.approx({"normal": 0.8, "pneumonia": 0.9, "COVID-19": 0.3})


def test_uap_grid_figure_shows_a_fooled_image_when_the_uap_fools_one():
    import matplotlib.pyplot as plt

    from medadv_lib.viz.uap import uap_grid_figure
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    pred_clean, pred_adv = y.clone(), torch.tensor([0, 1, 2, 1, 1, 2])          # only image 3 fooled
    m = {"norm": "inf", "zeta": 0.02, "eps": 0.02, "target": None, "target_name": "none", "n": 6,
         "fooling_rate": 1 / 6, "fooling_rate_balanced": 1 / 6}
    fig = uap_grid_figure(x, y, torch.full((1, 1, 8, 8), 0.01), m, pred_clean, pred_adv, n_show=3)
    perturbed = [ax.get_title() for ax in fig.axes[2::6]]      # 6 columns: the true-scale ones by default
    assert perturbed == ["perturbed: pneumonia ✗", "perturbed: pneumonia", "perturbed: COVID-19"]   # image 3 first
    assert fig.axes[0].get_title() == "clean: normal (true normal)"
    plt.close(fig)
    assert [ax.get_title() for ax in fig.axes[3::6]] == ["perturbation ×1 (true scale)"] * 3
    assert "fooling rate 16.7% [" in fig._suptitle.get_text()              # with its Wilson interval
    plt.close(fig)
    fig = uap_grid_figure(x, y, torch.full((1, 1, 8, 8), 0.01), m, pred_clean, pred_adv, n_show=3, true_scale=False)
    assert len(fig.axes) == 9
    plt.close(fig)


def test_uap_grid_figure_picks_images_the_model_gets_right_when_clean():
    import matplotlib.pyplot as plt

    from medadv_lib.viz.uap import uap_grid_figure
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    pred_clean = torch.tensor([2, 1, 2, 0, 2, 2])                  # images 0 and 4 wrong when clean
    pred_adv = torch.tensor([1, 1, 2, 0, 1, 1])                    # 0 and 4 "fixed"/changed, 5 fooled
    m = {"norm": "inf", "zeta": 0.02, "eps": 0.02, "target": None, "target_name": "none", "n": 6,
         "fooling_rate": 0.5, "fooling_rate_balanced": 0.5}
    fig = uap_grid_figure(x, y, torch.full((1, 1, 8, 8), 0.01), m, pred_clean, pred_adv, n_show=3)
    clean = [ax.get_title() for ax in fig.axes[0::6]]
    assert clean == ["clean: normal (true normal)", "clean: pneumonia (true pneumonia)", "clean: COVID-19 (true COVID-19)"]
    assert [ax.get_title() for ax in fig.axes[2::6]][2] == "perturbed: pneumonia ✗"    # image 5, the fooled one
    assert "‖v‖∞ ≤ 0.02" in fig._suptitle.get_text() and "fooling rate 50.0%" in fig._suptitle.get_text()
    plt.close(fig)


def test_fooling_vs_zeta_draws_one_95_band_per_line():
    import matplotlib.pyplot as plt
    fig = plot_fooling_vs_zeta(_table())
    for ax in fig.axes:
        assert len(_bands(ax)) == len(ax.lines) == 4            # every line (2 metrics × UAP/random) has its band
    xy = _bands(fig.axes[0])[0].get_paths()[0].vertices          # UAP plain rate, L∞: 0.1, 0.2, 0.4 on n = 100
    at2 = sorted(float(y) for x, y in xy if abs(x - 2.0) < 1e-9)
    assert (at2[0], at2[-1]) == pytest.approx(wilson_interval(20, 100))
    assert "95 %" in fig.axes[0].get_ylabel()
    plt.close(fig)
    fig = plot_fooling_vs_zeta(_table(), metrics=("target_success_rate",), target="COVID-19")
    assert len(_bands(fig.axes[0])) == 1
    plt.close(fig)


def test_fooling_vs_zeta_without_counts_draws_no_band():
    import matplotlib.pyplot as plt
    fig = plot_fooling_vs_zeta(_table(counts=False))
    assert all(len(ax.lines) == 4 and not _bands(ax) for ax in fig.axes)
    plt.close(fig)


def test_uap_history_bands_on_the_images_measured():
    import matplotlib.pyplot as plt
    a, b = _res([0.2, 0.3], [1.0, 2.0]), _res([0.1], [5.0])
    a.params, b.params = {"n": 50}, {}                           # b records no count: no band, none invented
    ax = plot_uap_history({"a": a, "b": b})
    assert len(ax.lines) == 2 and len(_bands(ax)) == 1
    plt.close("all")
    a.params = {"n": 400, "holdout": 64}
    a.history = [dict(h, on="holdout") for h in a.history]
    ax = plot_uap_history({"a": a})
    ys = sorted(float(y) for x, y in _bands(ax)[0].get_paths()[0].vertices if abs(x - 2.0) < 1e-9)
    assert (ys[0], ys[-1]) == pytest.approx(wilson_interval(round(0.3 * 64), 64))   # on the 64 held-out images
    plt.close("all")


def test_transfer_matrix_cells_carry_their_wilson_interval():
    import matplotlib.pyplot as plt

    from medadv_lib.metrics.transfer import RANDOM_ROW
    from medadv_lib.viz.uap import plot_transfer_matrix
    m = pd.DataFrame({"a": [0.5, 0.3, 0.1], "b": [0.2, 0.6, 0.1]}, index=["a", "b", RANDOM_ROW])
    m.attrs.update(metric="fooling_rate", n=100)
    ax = plot_transfer_matrix(m)
    cells = [t.get_text() for t in ax.texts if "\n" in t.get_text()]
    lo, hi = wilson_interval(50, 100)
    assert len(cells) == 6 and f"0.50\n[{lo:.2f}, {hi:.2f}]" in cells        # every cell, its interval under it
    assert "Wilson 95 %" in ax.get_title()
    plt.close("all")
    m.attrs.update(metric="fooling_rate_reweighted")
    ax = plot_transfer_matrix(m)
    assert not any("[" in t.get_text() for t in ax.texts) and "no interval" in ax.get_title()
    plt.close("all")
