"""The PGD ε-slider: its plain view function agrees with a direct `pgd` call; the widget builds."""
from __future__ import annotations

import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from medadv_lib.attacks import eps_from_255, pgd  # noqa: E402
from medadv_lib.metrics import predict  # noqa: E402
from medadv_lib.widgets.attack_widget import pgd_view, pgd_widget  # noqa: E402


@pytest.fixture(scope="module")
def batch(real_batch):
    x, y = real_batch
    return x[:8], y[:8]


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_view_summary_matches_a_direct_pgd_call(small_model, batch, norm):
    import matplotlib.pyplot as plt
    x, y = batch
    cache = {}
    s, fig = pgd_view(small_model, x, y, eps_255=2, norm=norm, n_show=3, cache=cache, steps=3, seed=0)
    eps = 2 / 255 if norm == "inf" else 2 / 255 * math.sqrt(x[0].numel())
    assert s["eps"] == pytest.approx(eps)
    ref = pgd(small_model, x, y, eps, steps=3, norm=norm, seed=0)
    still = ref.pred.cpu() == y
    correct = predict(small_model, x) == y
    assert s["robust_accuracy"] == pytest.approx(float(still.float().mean()))
    assert s["clean_accuracy"] == pytest.approx(float(correct.float().mean()))
    assert s["n_clean_correct"] == int(correct.sum())
    assert s["defense_rate"] == pytest.approx(float(still[correct].float().mean()))
    assert s["defense_rate"] + s["attack_success_rate"] == pytest.approx(1.0)
    assert sum(s["adv_pred_counts"].values()) == len(y)
    assert len(fig.axes) == 12                                  # 4 rows (the last at ×1, true scale) × n_show columns
    plt.close(fig)
    # a second call is served from the cache (same numbers, no new entries)
    n_entries = len(cache)
    s2, _ = pgd_view(small_model, x, y, eps_255=2, norm=norm, cache=cache, steps=3, seed=0, show=False)
    assert s2 == s and len(cache) == n_entries


def test_eps_zero_is_the_clean_model(small_model, batch):
    x, y = batch
    s, fig = pgd_view(small_model, x, y, eps_255=0, show=False)
    assert fig is None and s["steps"] == 0
    assert s["robust_accuracy"] == pytest.approx(s["clean_accuracy"]) and s["defense_rate"] == 1.0


@pytest.mark.parametrize("bad", [-1, 256, float("nan"), float("inf"), "two"])
def test_bad_eps_raises(small_model, batch, bad):
    x, y = batch
    with pytest.raises(ValueError, match="eps_255"):
        pgd_view(small_model, x, y, eps_255=bad, show=False)
    with pytest.raises(ValueError, match="eps_255"):
        pgd_widget(small_model, x, y, eps_grid=(0, 1, bad))


def test_bad_norm_and_shapes_raise(small_model, batch):
    x, y = batch
    with pytest.raises(ValueError, match="norm"):
        pgd_view(small_model, x, y, 1, norm="l7", show=False)
    with pytest.raises(ValueError, match="mismatch"):
        pgd_view(small_model, x, y[:-1], 1, show=False)


def test_figure_takes_the_classes_in_turn():
    from medadv_lib.viz import classes_in_turn
    assert classes_in_turn(torch.tensor([2, 2, 2, 0, 1, 2, 0]), 5) == [3, 4, 0, 6, 1]
    assert classes_in_turn(torch.tensor([1, 1]), 4) == [0, 1]
    assert classes_in_turn(torch.tensor([0, 1, 1]), 0) == [] and classes_in_turn(torch.tensor([], dtype=torch.long), 3) == []


def test_the_view_is_the_metric_function_plus_the_figure_function(small_model, batch):
    """pgd_view only joins library pieces: metrics.pgd_at_grey_levels (numbers) and viz.attacks.pgd_strip."""
    import matplotlib.pyplot as plt
    from medadv_lib.metrics.robustness import pgd_at_grey_levels
    from medadv_lib.viz.attacks import pgd_strip, pgd_summary_html
    x, y = batch
    cache = {}
    s, res, pred_clean = pgd_at_grey_levels(small_model, x, y, 1, "2", steps=2, cache=cache)
    assert s["eps"] == pytest.approx(eps_from_255(1, "2", tuple(x.shape[1:]))) and s["steps"] == 2
    assert s == pgd_view(small_model, x, y, 1, "2", steps=2, cache=cache, show=False)[0]
    fig = pgd_strip(x, y, res, pred_clean, s, n_show=2)
    assert len(fig.axes) == 8 and "L2 ε = 1/255 RMS" in fig._suptitle.get_text()      # 4 rows × 2
    plt.close(fig)
    line = pgd_summary_html(s)
    assert "<b>ε = 1/255</b> (L2" in line and f"robust accuracy {s['robust_accuracy']:.2f}" in line


def test_eps_units():
    from medadv_lib.attacks import check_eps_255
    assert eps_from_255(255, "inf") == pytest.approx(1.0)
    assert eps_from_255(1, "2", (1, 10, 10)) == pytest.approx(10 / 255)
    assert check_eps_255("2") == 2.0
    with pytest.raises(ValueError, match="eps_255"):
        check_eps_255(-0.5)


def test_widget_builds_and_reuses_the_view_cache(small_model, batch):
    import ipywidgets as w
    x, y = batch
    cache = {}
    pgd_view(small_model, x, y, eps_255=1, cache=cache, steps=2, show=False)
    n_entries = len(cache)
    box = pgd_widget(small_model, x, y, eps_grid=(0, 1, 2), value=1, cache=cache, steps=2, n_show=2)
    assert isinstance(box, w.VBox) and box.cache is cache
    assert len(cache) == n_entries                  # the initial view came from the cache
    slider, toggle = box.children[0].children
    assert slider.value == 1.0 and toggle.value == "inf"
    assert "robust accuracy" in box.children[1].value
    slider.value = 2.0                              # the callback runs PGD at the new ε and caches it
    assert len(cache) == n_entries + 1 and "ε = 2/255" in box.children[1].value
    with pytest.raises(ValueError, match="grid"):
        pgd_widget(small_model, x, y, eps_grid=(0, 1), value=3, cache=cache)
    with pytest.raises(ValueError, match="empty"):
        pgd_widget(small_model, x, y, eps_grid=())


def _shown(monkeypatch):
    """Record what the widgets hand to IPython's display() outside their Output widget."""
    import IPython.display
    seen = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: seen.extend(objs))
    return seen


def test_under_the_runner_a_widget_also_shows_its_default_figure_outside_itself(small_model, batch, monkeypatch):
    """Issue 25, item 4: an executed copy shows VBox(...) for a widget; under $MEDADV_HEADLESS (set by the course
    runner for its kernels) the widget displays its default setting's figure in its cell too, with a caption."""
    import matplotlib.figure
    pytest.importorskip("ipywidgets")
    from medadv_lib.runtime import HEADLESS_ENV
    x, y = batch
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    seen = _shown(monkeypatch)
    pgd_widget(small_model, x, y, eps_grid=(0, 1), value=1, steps=2, n_show=2)
    figs = [o for o in seen if isinstance(o, matplotlib.figure.Figure)]
    assert len(figs) == 1 and not any(type(o).__name__ == "Markdown" for o in seen)   # live: into its Output only
    monkeypatch.setenv(HEADLESS_ENV, "1")
    seen.clear()
    pgd_widget(small_model, x, y, eps_grid=(0, 1), value=1, steps=2, n_show=2)
    figs = [o for o in seen if isinstance(o, matplotlib.figure.Figure)]
    captions = [o.data for o in seen if type(o).__name__ == "Markdown"]
    assert len(figs) == 2 and figs[0] is figs[1]                  # its Output's figure, and the same one in the cell
    assert len(captions) == 1 and "default setting (ε = 1/255, L∞)" in captions[0]


def test_the_static_copy_is_shown_only_headless_and_only_with_a_figure(monkeypatch):
    from medadv_lib.runtime import HEADLESS_ENV
    from medadv_lib.widgets.static import show_static_copy
    seen = _shown(monkeypatch)
    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert not show_static_copy(None, "x") and not seen
    monkeypatch.delenv(HEADLESS_ENV)
    assert not show_static_copy(object(), "x") and not seen
