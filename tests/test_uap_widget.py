"""The UAP ζ-slider: its view function reports exactly evaluate_uap's metrics, the precomputed grid
respects every budget, the file cache round-trips, the widget builds, bad inputs raise clearly."""
from __future__ import annotations

import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from medadv_lib.attacks import lp_norm, uap_budget  # noqa: E402
from medadv_lib.metrics import evaluate_uap  # noqa: E402
from medadv_lib.attacks.uap.cache import precompute_uaps, uap_key  # noqa: E402
from medadv_lib.metrics.universal import evaluate_grid, evaluate_uap_cached  # noqa: E402
from medadv_lib.widgets.uap_widget import uap_view, uap_widget  # noqa: E402

ZETAS = (0.02, 0.04)
KW = {"epochs": 1, "batch_size": 8}


@pytest.fixture(scope="module")
def data(real_batch):
    x, y = real_batch
    return x[:8], y[:8], x[8:24], y[8:24]          # build on 8 images, evaluate on 16 others


@pytest.fixture(scope="module")
def grid(small_model, data):
    xb, _, _, _ = data
    uaps = precompute_uaps(small_model, xb, zetas=ZETAS, norms=("inf",), targets=(None,), **KW)
    uaps = precompute_uaps(small_model, xb, zetas=(0.02,), norms=("2",), uaps=uaps, **KW)
    return precompute_uaps(small_model, xb, zetas=(0.02,), norms=("inf",), targets=("COVID-19",), uaps=uaps, **KW)


def test_grid_has_every_key_and_respects_each_budget(grid, data):
    xb = data[0]
    assert set(grid) == {(0.02, "inf", None), (0.04, "inf", None), (0.02, "2", None), (0.02, "inf", 2)}
    for (zeta, norm, target), res in grid.items():
        eps = uap_budget(zeta, norm, xb)                   # default stats: the build images
        assert res.eps == pytest.approx(eps)
        assert res.norm == norm and res.target == target and res.v.shape == (1, 1, *xb.shape[-2:])
        assert float(lp_norm(res.v, norm)[0]) <= eps * (1 + 1e-5)
    # the L2 ball at the same ζ is much wider per image than L∞ (different units, same ratio)
    assert grid[(0.02, "2", None)].eps > grid[(0.02, "inf", None)].eps


@pytest.mark.parametrize("key", [(0.02, "inf", None), (0.02, "2", None), (0.02, "inf", 2)])
def test_view_metrics_equal_evaluate_uap(small_model, grid, data, key):
    import matplotlib.pyplot as plt
    _, _, x, y = data
    cache = {}
    m, fig = uap_view(small_model, x, y, grid, *key, n_show=2 if key[2] is None else 0, cache=cache,
                      show=key == (0.02, "inf", None))
    ref = evaluate_uap(small_model, x, y, grid[key].v, target=key[2])
    for k, v in ref.items():
        assert m[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert m["zeta"] == key[0] and m["norm"] == key[1] and m["eps"] == pytest.approx(grid[key].eps)
    assert 0.0 <= m["random_fooling_rate"] <= 1.0
    if fig is not None:
        assert len(fig.axes) == 12                                  # 2 rows: clean / v / perturbed / v at ×1 / 2 crops
        plt.close(fig)
    m2, fig2 = uap_view(small_model, x, y, grid, *key, cache=cache, show=False)     # from the cache
    assert fig2 is None and m2 == m


def test_cache_keeps_different_perturbations_apart(small_model, grid, data):
    _, _, x, y = data
    cache = {}
    v_other = grid[(0.04, "inf", None)].v
    a, _ = uap_view(small_model, x, y, grid, 0.02, cache=cache, show=False)
    b, _ = uap_view(small_model, x, y, {(0.02, "inf", None): grid[(0.04, "inf", None)]}, 0.02, cache=cache,
                    show=False)                                     # another v under the same key
    ref = evaluate_uap(small_model, x, y, v_other)
    assert b["v_norm_inf"] == pytest.approx(ref["v_norm_inf"]) and b["v_norm_inf"] != pytest.approx(a["v_norm_inf"])
    assert b["confusion_clean_to_adv"] == ref["confusion_clean_to_adv"]
    n_entries = len(cache)
    c = evaluate_uap_cached(small_model, x, y, v_other, cache=cache)
    assert len(cache) == n_entries and c == ref                     # served from the cache, same dict


def test_view_accepts_names_and_evaluate_grid_agrees(small_model, grid, data):
    _, _, x, y = data
    m, _ = uap_view(small_model, x, y, grid, "0.02", "linf", "COVID-19", show=False)
    assert m["target"] == 2 and m["target_name"] == "COVID-19"
    table = evaluate_grid(small_model, x, y, grid)
    assert len(table) == 2 * len(grid) and set(table["kind"]) == {"UAP", "random"}
    row = table[(table.zeta == 0.02) & (table.norm == "inf") & (table.target == "COVID-19") & (table.kind == "UAP")]
    assert float(row["target_success_rate"].iloc[0]) == pytest.approx(m["target_success_rate"])
    assert float(row["fooling_rate_balanced"].iloc[0]) == pytest.approx(m["fooling_rate_balanced"])


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.02, float("nan"), "two", None])
def test_bad_zeta_raises(small_model, grid, data, bad):
    _, _, x, y = data
    with pytest.raises(ValueError, match="zeta"):
        uap_view(small_model, x, y, grid, bad, "inf", show=False)


@pytest.mark.parametrize("bad", ["cat", 3, -1, 1.5, True])
def test_unknown_target_raises(small_model, grid, data, bad):
    _, _, x, y = data
    with pytest.raises(ValueError, match="target"):
        uap_view(small_model, x, y, grid, 0.02, "inf", bad, show=False)


def test_point_not_on_the_grid_and_bad_arguments_raise(small_model, grid, data):
    xb, _, x, y = data
    with pytest.raises(ValueError, match="no UAP precomputed.*the grid has"):
        uap_view(small_model, x, y, grid, 0.03, "inf", show=False)
    with pytest.raises(ValueError, match="no UAP precomputed"):
        uap_view(small_model, x, y, grid, 0.04, "inf", "normal", show=False)
    with pytest.raises(ValueError, match="norm"):
        uap_key(0.02, "l7")
    with pytest.raises(ValueError, match="method"):
        precompute_uaps(small_model, xb, method="deepfool")
    with pytest.raises(ValueError, match="empty"):
        precompute_uaps(small_model, xb, zetas=())
    with pytest.raises(ValueError, match="mismatch"):
        uap_view(small_model, x, y[:-1], grid, 0.02, show=False)


def test_file_cache_round_trips(small_model, data, tmp_path):
    xb = data[0][:4]
    a = precompute_uaps(small_model, xb, zetas=(0.02,), norms=("inf",), cache_dir=tmp_path, **KW)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")   # no temp files left
    b = precompute_uaps(small_model, xb, zetas=(0.02,), norms=("inf",), cache_dir=tmp_path, **KW)
    (key,) = a
    assert "loaded_from" in b[key].params and "loaded_from" not in a[key].params
    assert torch.equal(a[key].v, b[key].v) and b[key].eps == a[key].eps
    assert b[key].fooling_rate == a[key].fooling_rate and b[key].seconds == a[key].seconds
    c = precompute_uaps(small_model, xb, zetas=(0.02,), norms=("inf",), cache_dir=tmp_path, epochs=1, batch_size=2)
    assert "loaded_from" not in c[key].params                  # other settings, other file
    assert len(list(tmp_path.iterdir())) == 4


def test_cache_file_names_spell_the_norm_kind_as_the_library_does(small_model):
    from medadv_lib.attacks.uap.cache import cache_path
    arch = getattr(small_model, "arch", type(small_model).__name__)
    assert cache_path("c", small_model, "sgd", uap_key(0.02, "linf"), 0.0176, "abc").name == \
        f"{arch}-sgd-norminf-z2pct-none-eps0.0176-abc.npy"
    assert cache_path("c", small_model, "sgd", uap_key(0.02, "l2", "COVID-19"), 1.3, "abc").name == \
        f"{arch}-sgd-norm2-z2pct-covid19-eps1.3-abc.npy"


def test_the_widget_s_pieces_live_in_the_library(small_model, grid, data):
    """grid_axes (keys), uap_contrast and uap_summary_html (viz): what the widget shows, computed outside it."""
    from medadv_lib.attacks.uap.cache import grid_axes
    from medadv_lib.viz.uap import uap_contrast, uap_summary_html
    assert grid_axes(grid) == (list(ZETAS), ["inf", "2"], 0.02)
    assert grid_axes({k: r for k, r in grid.items() if k[0] == 0.04})[2] == 0.04        # the middle ζ
    with pytest.raises(ValueError, match="not on the ζ grid"):
        grid_axes(grid, 0.03)
    amp = uap_contrast(grid)
    assert set(amp) == {"inf", "2"}
    assert amp["inf"] == pytest.approx(0.5 / max(float(r.v.abs().max()) for k, r in grid.items() if k[1] == "inf"))
    _, _, x, y = data
    m, _ = uap_view(small_model, x, y, grid, 0.02, "inf", "COVID-19", show=False)
    line = uap_summary_html(m)
    assert line.startswith("<b>ζ = 2%</b> (L∞") and f"random control {m['random_fooling_rate']:.2f}" in line
    assert "target success rate (COVID-19)" in line


def test_widget_builds_and_reacts(small_model, grid, data):
    pytest.importorskip("ipywidgets")
    _, _, x, y = data
    box = uap_widget(small_model, x, y, grid, n_show=1)
    (slider, toggle, drop), info, _ = box.children[0].children, box.children[1], box.children[2]
    assert [v for _, v in slider.options] == list(ZETAS) and slider.value == 0.02
    assert [v for _, v in toggle.options] == ["inf", "2"] and [v for _, v in drop.options] == [None, 0, 1, 2]
    assert "fooling rate" in info.value and not math.isnan(float(info.value.split("fooling rate ")[1][:4]))
    drop.value = 2
    assert "target success rate (COVID-19)" in info.value
    slider.value = 0.04                      # targeted at 4% was not precomputed: a message, no attack
    assert "not precomputed" in info.value
    drop.value, toggle.value = None, "2"
    assert "not precomputed" in info.value   # L2 only at 2%
    slider.value = 0.02
    assert "L2" in info.value and "fooling rate" in info.value
    with pytest.raises(ValueError, match="not on the ζ grid"):
        uap_widget(small_model, x, y, grid, value=0.03)
    with pytest.raises(ValueError, match="empty"):
        uap_widget(small_model, x, y, {})


def test_uap_table_and_headline_rates_read_the_same_metrics(small_model, grid, data):
    from medadv_lib import LABELS
    from medadv_lib.metrics.universal import compare_uap_builds, headline_rates, uap_table
    _, _, x, y = data
    cache = {}
    table, full = uap_table({"victim": (small_model, grid, None), "transfer": (small_model, grid, None),
                             "own": (small_model, grid, None)}, x, y, 0.02, cache=cache)
    assert list(table.index) == ["victim", "transfer", "own"]
    assert table.loc["victim", "fooling_rate"] == pytest.approx(evaluate_uap(small_model, x, y, grid[(0.02, "inf", None)].v)["fooling_rate"])
    targeted, _ = uap_table({lab: (small_model, grid, 2 if lab == "COVID-19" else None) for lab in LABELS}, x, y, 0.02,
                            columns=("target_success_rate", "fooling_rate"), cache=cache)
    rates = headline_rates(full["victim"], targeted, table)
    assert rates["fooling_rate"] == table.loc["victim", "fooling_rate"]
    assert rates["target_success_rate[COVID-19]"] == targeted.loc["COVID-19", "target_success_rate"]
    cmp = compare_uap_builds(small_model, x, y, {"sgd": grid[(0.02, "inf", None)]}, cache=cache)
    assert 0 < cmp.loc["sgd", "v_norm_inf_share"] <= 1 + 1e-5
    assert cmp.loc["sgd", "fooling_rate"] == round(float(rates["fooling_rate"]), 3)


def test_under_the_runner_the_uap_widget_shows_its_default_figure_too(small_model, grid, data, monkeypatch):
    import IPython.display
    import matplotlib.figure
    pytest.importorskip("ipywidgets")
    from medadv_lib.runtime import HEADLESS_ENV
    seen = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: seen.extend(objs))
    monkeypatch.setenv(HEADLESS_ENV, "1")
    _, _, x, y = data
    uap_widget(small_model, x, y, grid, n_show=1)
    assert sum(isinstance(o, matplotlib.figure.Figure) for o in seen) == 2     # in its Output, and below it
    assert any("ζ = 2%, L∞, non-targeted" in getattr(o, "data", "") for o in seen)
