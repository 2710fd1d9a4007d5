"""The transferability matrix (metrics/transfer.py) and its heat map (viz/uap.py): the diagonal is each
model's white-box fooling rate, off-diagonal cells the transferred rate, the last row the random control
of the column's budget — each checked against metrics.universal computed independently."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from medadv_lib.attacks.uap import UAPResult, random_uap, sgd_uap  # noqa: E402
from medadv_lib.metrics.transfer import RANDOM_ROW, transfer_matrix  # noqa: E402
from medadv_lib.metrics.universal import evaluate_uap, fooling_rate  # noqa: E402
from medadv_lib.models import build_model  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def zoo():
    """Two tiny untrained course models (one of them COVID-Net), 12 images with labels of every class,
    an SGD UAP per model (L∞ ε = 0.2: big enough to change predictions of untrained nets), and their
    matrix (computed once: the CPU is shared)."""
    torch.manual_seed(0)
    models = {name: build_model(name).eval() for name in ("resnet18", "covidnet_small_w0.125")}
    for m in models.values():
        m.set_precision("fp32")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(12, 1, SIZE, SIZE, generator=gen)
    y = torch.arange(12) % 3
    uaps = {name: sgd_uap(m, x, eps=0.2, norm="inf", epochs=1, batch_size=12, seed=0) for name, m in models.items()}
    return models, uaps, x, y, transfer_matrix(models, uaps, x, y, seed=3)


def test_diagonal_is_the_white_box_rate_and_cells_are_transfer_rates(zoo):
    models, uaps, x, y, m = zoo
    assert list(m.index) == [*uaps, RANDOM_ROW] and list(m.columns) == list(models)
    for src in uaps:
        for tgt, model in models.items():          # the diagonal (src == tgt) is the white-box rate
            assert m.loc[src, tgt] == pytest.approx(fooling_rate(model, x, uaps[src].v)), (src, tgt)
    cells = m.drop(RANDOM_ROW).to_numpy()
    assert cells.max() > 0 and cells.min() < 1                  # not trivially 0 or 1 everywhere
    assert m.attrs["n"] == 12 and m.attrs["metric"] == "fooling_rate"


def test_random_row_is_noise_of_the_columns_own_budget(zoo):
    models, uaps, x, y, m = zoo
    for name, model in models.items():
        u = uaps[name]
        rnd = random_uap(u.v, u.eps, u.norm, seed=3)
        assert m.loc[RANDOM_ROW, name] == pytest.approx(fooling_rate(model, x, rnd))
        assert m.attrs["random_eps"][name] == pytest.approx(u.eps)


def test_reweighted_metric_matches_evaluate_uap(zoo):
    models, uaps, x, y, _ = zoo
    one = {"resnet18": models["resnet18"]}
    m = transfer_matrix(one, {"covidnet_small_w0.125": uaps["covidnet_small_w0.125"]}, x, y,
                        metric="fooling_rate_reweighted")
    expected = evaluate_uap(models["resnet18"], x, y, uaps["covidnet_small_w0.125"].v)["fooling_rate_reweighted"]
    assert m.loc["covidnet_small_w0.125", "resnet18"] == pytest.approx(expected)
    # a source that is not a target, and a target without its own UAP: the control takes the shared budget
    assert list(m.index) == ["covidnet_small_w0.125", RANDOM_ROW] and list(m.columns) == ["resnet18"]
    assert m.attrs["random_eps"]["resnet18"] == pytest.approx(uaps["covidnet_small_w0.125"].eps)


def test_bad_inputs(zoo):
    models, uaps, x, y, _ = zoo
    with pytest.raises(ValueError, match="images are"):
        transfer_matrix(models, uaps, torch.rand(4, 1, SIZE * 2, SIZE * 2))
    with pytest.raises(ValueError, match="needs the true labels"):
        transfer_matrix(models, uaps, x, metric="fooling_rate_balanced")
    with pytest.raises(ValueError, match="metric must be one of"):
        transfer_matrix(models, uaps, x, y, metric="accuracy")
    with pytest.raises(ValueError, match="at least one model"):
        transfer_matrix({}, uaps, x)
    other = UAPResult(v=uaps["resnet18"].v * 0.5, eps=0.1, norm="inf", method="sgd")
    with pytest.raises(ValueError, match="different budgets"):
        transfer_matrix({"resnet18": models["resnet18"]}, {"a": uaps["resnet18"], "b": other}, x)


def test_heat_map(zoo):
    from medadv_lib.viz.uap import plot_transfer_matrix
    models, uaps, x, y, m = zoo
    ax = plot_transfer_matrix(m)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == m.size and f"{m.loc[RANDOM_ROW, 'resnet18']:.2f}" in [t.split("\n")[0] for t in texts]
    assert all(t.count("\n") == 1 and t.split("\n")[1].startswith("[") for t in texts)   # each rate over its interval
    outlined = [p for p in ax.patches if not p.get_fill()]
    assert len(outlined) == len(models)                         # the white-box cells
    assert ax.get_ylabel().startswith("UAP built on")
    with pytest.raises(ValueError, match="empty"):
        plot_transfer_matrix(m.iloc[:0])
    matplotlib.pyplot.close("all")


def test_transfer_summary_compares_every_cell_with_its_columns_noise():
    import pandas as pd

    from medadv_lib.metrics.transfer import RANDOM_ROW, transfer_summary
    m = pd.DataFrame({"a": [0.30, 0.06, 0.05], "b": [0.20, 0.40, 0.02]}, index=["a", "b", RANDOM_ROW])
    m.attrs["n"] = 348
    s = transfer_summary(m).set_index(["source", "target"])
    assert len(s) == 4 and s.white_box.sum() == 2
    assert s.loc[("a", "a"), "beats_random"] and s.loc[("a", "b"), "beats_random"]    # 20 % vs 2 % noise
    assert not s.loc[("b", "a"), "beats_random"]                                        # 6 % vs 5 %: noise
    assert s.loc[("a", "a"), "rate_lo"] < 0.30 < s.loc[("a", "a"), "rate_hi"]
