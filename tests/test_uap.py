"""Universal adversarial perturbations (attacks/uap.py) and their metrics (metrics/universal.py)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from medadv_lib import LABELS
from medadv_lib.attacks import (UAPResult, apply_uap, iterative_uap, lp_norm, random_uap, sgd_uap,
                                uap_budget)
from medadv_lib.attacks.uap import load_uap, save_uap
from medadv_lib.models import predict
from medadv_lib.metrics import evaluate_uap, fooling_rate, target_success_rate, uap_metrics_from_predictions

TOL = 1e-5  # relative slack on ‖v‖ ≤ eps (float32 rounding of the projection)


class TinyNet(nn.Module):
    """A seeded 3-class CNN small enough for exhaustive checks (passes in milliseconds)."""

    num_classes = 3

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        h = torch.relu(self.conv((x - 0.5) / 0.25))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 4).flatten(1))


class MeanThreshold(nn.Module):
    """Hand-written classifier: class 0 if mean pixel < 1/3, 1 if < 2/3, else 2."""

    num_classes = 3

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-(m - 1 / 6).abs(), -(m - 0.5).abs(), -(m - 5 / 6).abs()], 1) * 10


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 1, 16, 16, generator=g)
    y = torch.randint(0, 3, (24,), generator=g)
    return TinyNet(0).eval(), x, y


def _in_ball(v, eps, norm):
    return float(lp_norm(v, norm)[0]) <= eps * (1 + TOL)


# ----------------------------------------------------------------------------- budget, random, apply

def test_budget_values():
    stats = {"mean_norm_2": 20.0, "mean_norm_inf": 0.9, "n": 10}
    assert uap_budget(0.02, "inf", stats) == pytest.approx(0.018)
    assert uap_budget(0.02, "linf", stats) == pytest.approx(0.018)
    assert uap_budget(0.04, 2, stats) == pytest.approx(0.8)
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, 0], x[1, 0, :2, :2] = 0.5, 1.0       # L∞ 0.5 and 1; L2 0.5 and 2
    assert uap_budget(0.1, "inf", stats=x) == pytest.approx(0.1 * 0.75)
    assert uap_budget(0.1, "2", stats=x) == pytest.approx(0.1 * 1.25)


@pytest.mark.parametrize("zeta", [0, -0.02, 1, 1.5, float("nan")])
def test_budget_rejects_zeta_outside_0_1(zeta):
    with pytest.raises(ValueError, match="0 < zeta < 1"):
        uap_budget(zeta, "inf", {"mean_norm_2": 1.0, "mean_norm_inf": 1.0})


def test_budget_errors():
    with pytest.raises(ValueError, match="unknown norm"):
        uap_budget(0.02, "l1", {"mean_norm_2": 1.0, "mean_norm_inf": 1.0})
    with pytest.raises(ValueError, match="no 'mean_norm_2' entry"):
        uap_budget(0.02, "2", {"mean_norm_inf": 1.0})
    with pytest.raises(ValueError, match="needs stats="):
        uap_budget(0.02, "2")


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("kind", ["uniform", "sign", "gaussian"])
def test_random_uap_has_exact_norm(norm, kind):
    eps = 0.037 if norm == "inf" else 1.3
    v = random_uap((32, 24), eps, norm, kind=kind, seed=3)
    assert v.shape == (1, 1, 32, 24) and v.dtype == torch.float32
    assert float(lp_norm(v, norm)[0]) == pytest.approx(eps, rel=1e-6)
    assert torch.equal(v, random_uap((1, 1, 32, 24), eps, norm, kind=kind, seed=3))
    assert not torch.equal(v, random_uap((32, 24), eps, norm, kind=kind, seed=4))
    if kind == "sign" and norm == "inf":
        assert torch.allclose(v.abs(), torch.full_like(v, eps))


def test_random_uap_like_and_errors():
    x = torch.rand(5, 1, 8, 9, dtype=torch.float64)
    v = random_uap(x, 0.1, "inf")
    assert v.shape == (1, 1, 8, 9) and v.dtype == torch.float64
    with pytest.raises(ValueError, match="kind"):
        random_uap((8, 8), 0.1, kind="pink")
    with pytest.raises(ValueError, match="unknown norm"):
        random_uap((8, 8), 0.1, norm="l0")


def test_the_shuffled_control_matches_the_uaps_l2_linf_and_values():
    """kind='shuffle': the UAP's pixels in another order, so both norms and the value histogram match,
    where rescaled uniform noise at the UAP's L∞ carries only part of its L2 energy."""
    g = torch.Generator().manual_seed(0)
    v = (torch.rand(1, 1, 16, 16, generator=g) * 2 - 1).sign() * 0.02
    v[..., :4, :] *= 0.3                                       # not every pixel at the bound
    c = random_uap(v, 0.02, "inf", kind="shuffle", seed=1)
    for norm in ("inf", "2"):
        assert float(lp_norm(c, norm)[0]) == pytest.approx(float(lp_norm(v, norm)[0]), rel=1e-6)
    assert torch.equal(c.flatten().sort().values, v.flatten().sort().values) and not torch.equal(c, v)
    assert not torch.equal(c, random_uap(v, 0.02, "inf", kind="shuffle", seed=2))
    uniform = random_uap(v, 0.02, "inf", kind="uniform", seed=1)
    assert float(lp_norm(uniform, "2")[0]) < 0.8 * float(lp_norm(v, "2")[0])
    with pytest.raises(ValueError, match="pass the UAP"):
        random_uap((16, 16), 0.02, kind="shuffle")
    with pytest.raises(ValueError, match="exceeds eps"):
        random_uap(v, 0.01, "inf", kind="shuffle")


def test_apply_uap_clamps():
    x = torch.rand(4, 1, 8, 8)
    v = torch.full((1, 1, 8, 8), 0.7)
    out = apply_uap(x, v)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(apply_uap(x, -v), (x - 0.7).clamp(0, 1))
    assert torch.equal(apply_uap(x, v[0, 0]), out)         # an H×W noise works too


# ----------------------------------------------------------------------------- the attacks (tiny model)

@pytest.mark.parametrize("norm,zeta", [("inf", 0.05), ("2", 0.05)])
@pytest.mark.parametrize("method", ["iterative", "iterative-mean", "iterative-all", "deepfool", "sgd"])
def test_ball_and_range_tiny(tiny, method, norm, zeta):
    model, x, y = tiny
    eps = uap_budget(zeta, norm, stats=x)
    if method == "sgd":
        res = sgd_uap(model, x, eps=eps, norm=norm, epochs=3, batch_size=8, lr=eps)
    else:
        kw = {"iterative": {}, "iterative-mean": {"aggregate": "mean"}, "iterative-all": {"accept": "all"},
              "deepfool": {"inner": "deepfool"}}[method]
        res = iterative_uap(model, x, eps=eps, norm=norm, step=0.01, max_iter=3, batch_size=8, **kw)
    assert isinstance(res, UAPResult) and res.v.shape == (1, 1, 16, 16)
    assert _in_ball(res.v, eps, norm)
    assert res.eps == eps and res.norm == norm and 1 <= res.passes == len(res.history) <= 3
    xa = apply_uap(x, res.v)
    assert xa.min() >= 0 and xa.max() <= 1
    json.dumps(res.summary())
    # the history's last fooling rate is the fooling rate of the returned v
    assert res.fooling_rate == pytest.approx(fooling_rate(model, x, res.v))


def test_ball_is_reached_when_unconstrained_steps_are_large(tiny):
    """Big steps must hit the L∞ ball's faces and be clipped there, not escape."""
    model, x, _ = tiny
    res = iterative_uap(model, x, eps=0.02, norm="inf", step=0.5, accept="all", max_iter=1, batch_size=4)
    assert float(res.v.abs().max()) == pytest.approx(0.02)


def test_seeded_determinism(tiny):
    model, x, _ = tiny
    eps = uap_budget(0.05, "inf", stats=x)
    a = iterative_uap(model, x, eps=eps, step=0.01, max_iter=3, batch_size=8, seed=5)
    b = iterative_uap(model, x, eps=eps, step=0.01, max_iter=3, batch_size=8, seed=5)
    assert torch.equal(a.v, b.v) and [h["fooling_rate"] for h in a.history] == [h["fooling_rate"] for h in b.history]
    c = sgd_uap(model, x, eps=eps, epochs=2, batch_size=8, seed=5)
    d = sgd_uap(model, x, eps=eps, epochs=2, batch_size=8, seed=5)
    assert torch.equal(c.v, d.v)


def test_stalled_stop_returns_the_max_iter_uap(tiny):
    """Stopping after a pass without update gives the same v as running all max_iter passes."""
    model, x, _ = tiny
    eps = uap_budget(0.02, "inf", stats=x)
    fast = iterative_uap(model, x, eps=eps, max_iter=8, batch_size=8)
    full = iterative_uap(model, x, eps=eps, max_iter=8, batch_size=8, stop_stalled=False)
    assert full.passes == 8 and full.stop_reason == "max_iter"
    if fast.stop_reason == "stalled":
        assert fast.passes < 8
    assert torch.equal(fast.v, full.v)


def test_batch_size_one_is_the_sequential_update(tiny):
    """With batch_size=1 each accepted FGSM step is added and projected at once, as in ART."""
    model, x, _ = tiny
    x = x[:6]
    eps, step = 0.03, 0.01
    res = iterative_uap(model, x, eps=eps, step=step, max_iter=1, batch_size=1, seed=2, stop_stalled=False)
    ref = predict(model, x)
    v = torch.zeros(1, 1, 16, 16)
    for i in torch.randperm(6, generator=torch.Generator().manual_seed(2)).tolist():
        xi = apply_uap(x[i:i + 1], v)
        if model(xi).argmax(1) != ref[i]:
            continue
        xg = xi.clone().requires_grad_(True)
        g, = torch.autograd.grad(nn.functional.cross_entropy(model(xg), ref[i:i + 1]), xg)
        u = step * g.sign()
        if model(apply_uap(x[i:i + 1], v + u)).argmax(1) != ref[i]:
            v = (v + u).clamp(-eps, eps)
    assert torch.allclose(res.v, v)


def test_argument_errors(tiny):
    model, x, y = tiny
    for bad in (3, -1, 1.5, "lung"):
        with pytest.raises(ValueError, match="target"):
            iterative_uap(model, x, eps=0.02, target=bad)
        with pytest.raises(ValueError, match="target"):
            sgd_uap(model, x, eps=0.02, target=bad)
    with pytest.raises(ValueError, match="eps is required"):
        iterative_uap(model, x)
    with pytest.raises(ValueError, match="unknown norm"):
        sgd_uap(model, x, eps=0.02, norm="l1")
    with pytest.raises(ValueError, match="aggregate"):
        iterative_uap(model, x, eps=0.02, aggregate="median")
    with pytest.raises(ValueError, match="non-targeted"):
        iterative_uap(model, x, eps=0.02, inner="deepfool", target=1)
    with pytest.raises(ValueError, match="needs the true labels"):
        iterative_uap(model, x, eps=0.02, reference="labels")
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        sgd_uap(model, x * 2, eps=0.02)
    # a class name is accepted as target
    assert sgd_uap(model, x, eps=0.02, target="COVID-19", epochs=1).target == LABELS.index("COVID-19")


def test_save_load_roundtrip(tmp_path, tiny):
    model, x, _ = tiny
    res = iterative_uap(model, x, eps=0.05, step=0.01, max_iter=1, batch_size=8)
    path = res.save(tmp_path / "uap.npy")
    assert path.suffix == ".npy" and path.with_suffix(".json").is_file()
    assert torch.equal(load_uap(path), res.v.float().cpu())
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["method"] == "iterative" and meta["eps"] == pytest.approx(0.05)
    # Hirano et al.'s files: H×W×3 copies of a grey noise
    np.save(tmp_path / "rgb.npy", np.repeat(res.v[0, 0].numpy()[..., None], 3, axis=-1))
    assert torch.equal(load_uap(tmp_path / "rgb.npy"), res.v.float())
    p2 = save_uap(res.v[0, 0], tmp_path / "plain")
    assert p2.name == "plain.npy" and np.load(p2).shape == (1, 1, 16, 16)


# ----------------------------------------------------------------------------- real X-rays, small model

@pytest.mark.parametrize("norm", ["inf", "2"])
def test_ball_and_range_real(small_model, real_batch, norm):
    x, y = real_batch
    eps = uap_budget(0.02, norm, stats=x)
    for res in (iterative_uap(small_model, x, eps=eps, norm=norm, step=0.01, max_iter=1, batch_size=32),
                sgd_uap(small_model, x, eps=eps, norm=norm, epochs=1)):
        assert _in_ball(res.v, eps, norm)
        xa = apply_uap(x, res.v)
        assert xa.min() >= 0 and xa.max() <= 1


def test_targeted_success_increases(small_model, real_batch):
    """A targeted UAP raises the share of images classified as the target above the clean share."""
    x, y = real_batch
    clean = predict(small_model, x)
    target = int(torch.bincount(clean, minlength=3).argmin())        # the rarest clean prediction
    clean_rate = float((clean == target).float().mean())
    eps = uap_budget(0.1, "inf", stats=x)
    res = sgd_uap(small_model, x, eps=eps, target=target, epochs=3, seed=0)
    assert res.target_success_rate > clean_rate + 0.1
    assert target_success_rate(small_model, x, res.v, target) == pytest.approx(res.target_success_rate)
    it = iterative_uap(small_model, x, eps=eps, target=target, step=0.01, max_iter=2, batch_size=32)
    assert it.target_success_rate > clean_rate
    m = evaluate_uap(small_model, x, y, res.v, target=target)
    assert m["target_success_rate"] == pytest.approx(res.target_success_rate)
    assert m["target_rate_clean"] == pytest.approx(clean_rate)


# ----------------------------------------------------------------------------- metrics, by hand

def test_metrics_from_hand_made_predictions():
    #            0  1  2  3  4  5  6  7
    y = [0, 0, 1, 1, 2, 2, 2, 2]
    clean = [0, 1, 1, 1, 2, 2, 2, 0]
    adv = [2, 1, 2, 1, 2, 2, 0, 2]
    m = uap_metrics_from_predictions(clean, adv, y, target=2)
    assert m["n"] == 8 and m["labels"] == list(LABELS)
    # vs clean: images 0, 2, 6, 7 changed → 4/8; vs labels: 0, 1, 2, 6 → 4/8
    assert m["fooling_rate"] == pytest.approx(4 / 8)
    assert m["fooling_rate_vs_labels"] == pytest.approx(4 / 8)
    # per true class, vs clean: class 0 {0 yes, 1 no} = 1/2; class 1 {2 yes, 3 no} = 1/2; class 2 {6, 7} = 2/4
    assert m["fooling_rate_per_class"] == pytest.approx([0.5, 0.5, 0.5])
    assert m["fooling_rate_vs_labels_per_class"] == pytest.approx([1.0, 0.5, 0.25])
    assert m["fooling_rate_balanced"] == pytest.approx(0.5)
    assert m["clean_accuracy"] == pytest.approx(6 / 8) and m["robust_accuracy"] == pytest.approx(4 / 8)
    assert m["confusion_clean_to_adv"] == [[0, 0, 2], [0, 2, 1], [1, 0, 2]]
    assert m["confusion_labels_to_adv"] == [[0, 1, 1], [0, 1, 1], [1, 0, 3]]
    # under the UAP: sensitivity = diag / row sums; PPV = diag / column sums
    assert m["sensitivity_adv"] == pytest.approx([0, 1 / 2, 3 / 4])
    assert m["ppv_adv"] == pytest.approx([0, 1 / 2, 3 / 5])
    assert m["sensitivity_clean"] == pytest.approx([1 / 2, 1, 3 / 4])
    assert m["adv_prediction_share"] == pytest.approx([1 / 8, 2 / 8, 5 / 8])
    assert m["target"] == 2 and m["target_success_rate"] == pytest.approx(5 / 8)
    assert m["target_rate_clean"] == pytest.approx(3 / 8)
    # clean prediction not 2: images 0, 1, 2, 3, 7 → adv 2 for 0, 2, 7 → 3/5
    assert m["target_success_rate_non_target"] == pytest.approx(3 / 5)
    json.dumps(m)


def test_metrics_missing_class_and_errors():
    m = uap_metrics_from_predictions([0, 0, 1], [1, 0, 1], [0, 0, 1])
    assert m["fooling_rate_per_class"] == [0.5, 0.0, None]
    assert m["fooling_rate_balanced"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same length"):
        uap_metrics_from_predictions([0], [0, 1], [0])
    with pytest.raises(ValueError, match="outside"):
        uap_metrics_from_predictions([0], [3], [0])
    with pytest.raises(ValueError, match="target"):
        uap_metrics_from_predictions([0], [1], [0], target=5)


def test_evaluate_uap_on_a_hand_written_model():
    model = MeanThreshold()
    x = torch.tensor([0.1, 0.2, 0.4, 0.5, 0.8, 0.9]).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous()
    y = torch.tensor([0, 1, 1, 1, 2, 2])
    v = torch.full((1, 1, 4, 4), 0.3)
    # clean: 0 0 1 1 2 2; under +0.3 (clamped): 0.4→1, 0.5→1, 0.7→2, 0.8→2, 1→2, 1→2
    m = evaluate_uap(model, x, y, v, target=2, batch_size=4)
    assert m["fooling_rate"] == pytest.approx(4 / 6)          # images 0, 1, 2, 3 changed
    assert m["fooling_rate_vs_labels"] == pytest.approx(3 / 6)  # images 0, 2, 3 differ from y
    assert m["target_success_rate"] == pytest.approx(4 / 6)
    assert m["confusion_clean_to_adv"] == [[0, 2, 0], [0, 0, 2], [0, 0, 2]]
    assert m["v_norm_inf"] == pytest.approx(0.3) and m["v_norm_2"] == pytest.approx(0.3 * 4)
    assert fooling_rate(model, x, v) == pytest.approx(4 / 6)
    assert fooling_rate(model, x, v, reference="labels", y=y, batch_size=1) == pytest.approx(3 / 6)
    assert target_success_rate(model, x, v, 2) == pytest.approx(4 / 6)
    json.dumps(m)


# ----------------------------------------------------------------------------- peer: ART

@pytest.fixture
def one_thread():
    """ART runs batch-1 passes: on a shared 2-core machine one thread is faster (no spin-waiting)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.peers
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_matches_art_universal_perturbation(small_model, real_batch, norm, one_thread):
    """Ours vs ART's UniversalPerturbation (FGSM inner attacker) on the same model, images, ζ and step.

    Both run 2 passes over 16 real X-rays with an FGSM step of 0.01 (10× Hirano et al.'s 0.001,
    so that a 2-pass run does something on 16 images).  Tolerance: 2 images (2/16 = 0.125).
    The two algorithms visit the images in different random orders (ART: Python's ``random``;
    ours: a torch generator) and ours tests/steps a mini-batch from the same v (Jacobi) while
    ART updates v after each image (Gauss–Seidel), so which borderline images end up flipped
    can differ by an image or two; a real regression (e.g. a wrong gradient sign or a missing
    accept test) loses far more than that.
    """
    art_up = pytest.importorskip("art.attacks.evasion")
    art_est = pytest.importorskip("art.estimators.classification")
    x, _ = real_batch
    x = x[:16]
    eps, step, passes = uap_budget(0.04, norm, stats=x), 0.01, 2
    clf = art_est.PyTorchClassifier(small_model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                    nb_classes=3, clip_values=(0.0, 1.0), device_type="cpu")
    random.seed(0)
    art = art_up.UniversalPerturbation(clf, attacker="fgsm",
                                       attacker_params={"eps": step, "eps_step": step, "targeted": False},
                                       delta=1e-6, max_iter=passes, eps=eps,
                                       norm=np.inf if norm == "inf" else 2, batch_size=16, verbose=False)
    art.generate(x.numpy())
    v_art = torch.from_numpy(art.noise).float()
    ours = iterative_uap(small_model, x, eps=eps, norm=norm, step=step, max_iter=passes, batch_size=16)
    assert _in_ball(ours.v, eps, norm) and _in_ball(v_art, eps, norm)
    fr_art = fooling_rate(small_model, x, v_art)
    assert fr_art == pytest.approx(art.fooling_rate)             # both evaluate the same way
    assert ours.fooling_rate >= fr_art - 2 / 16 - 1e-9


def test_reweighted_fooling_rates_by_hand():
    """Per-class rates re-weighted to the paper's 100/100/31 test mix, vs clean predictions and vs labels."""
    from medadv_lib.metrics import PAPER_TEST_MIX, reweighted_rate, uap_metrics_from_predictions
    assert PAPER_TEST_MIX == {"normal": 100, "pneumonia": 100, "COVID-19": 31}
    assert reweighted_rate([1.0, 0.5, 0.0]) == pytest.approx((100 + 50) / 231)
    assert reweighted_rate([1.0, None, 0.0]) is None
    # y: 2 normal, 2 pneumonia, 4 COVID-19; clean predictions correct except one COVID-19 image
    y = [0, 0, 1, 1, 2, 2, 2, 2]
    pc = [0, 0, 1, 1, 2, 2, 2, 0]
    pa = [2, 0, 2, 2, 2, 2, 2, 0]          # fooled: one normal, both pneumonia, no COVID-19
    m = uap_metrics_from_predictions(pc, pa, y)
    assert m["fooling_rate_per_class"] == [0.5, 1.0, 0.0]
    assert m["fooling_rate_reweighted"] == pytest.approx((0.5 * 100 + 1.0 * 100) / 231)
    assert m["fooling_rate_vs_labels_per_class"] == [0.5, 1.0, 0.25]
    assert m["fooling_rate_vs_labels_reweighted"] == pytest.approx((50 + 100 + 0.25 * 31) / 231)
    assert m["fooling_rate_reweighted_lo"] < m["fooling_rate_reweighted"] < m["fooling_rate_reweighted_hi"]


def test_the_reweighted_interval_covers_the_rate_and_narrows_with_images():
    """Jeffreys draws per class, weighted by the paper's mix: the interval holds the re-weighted point,
    shrinks with more images, is seeded, and is widest where the mix leans on a small class."""
    from medadv_lib.metrics import reweighted_interval, reweighted_rate
    small = reweighted_interval([(9, 11), (5, 12), (3, 33)])
    big = reweighted_interval([(90, 110), (50, 120), (30, 330)])
    point = reweighted_rate([9 / 11, 5 / 12, 3 / 33])
    assert small[0] < point < small[1] and big[0] < reweighted_rate([90 / 110, 50 / 120, 30 / 330]) < big[1]
    assert big[1] - big[0] < 0.5 * (small[1] - small[0])
    assert small == reweighted_interval([(9, 11), (5, 12), (3, 33)])
    assert 0 < reweighted_interval([(0, 11), (0, 12), (0, 33)])[1] < 0.15          # never a point at 0
    assert reweighted_interval([(1, 2), (0, 0), (3, 4)]) is None


def test_paper_gap_table_judges_each_explanation_from_the_outputs():
    from types import SimpleNamespace

    from medadv_lib.metrics.universal import paper_gap_summary, paper_gap_table
    m = {"fooling_rate": 0.30, "fooling_rate_balanced": 0.45, "fooling_rate_vs_labels": 0.33,
         "fooling_rate_reweighted": 0.42, "random_fooling_rate": 0.05,
         "confusion_clean_to_adv": [[50, 20, 0], [0, 60, 10], [0, 0, 200]]}
    test_rates = {("inf", 0.01): 0.1, ("inf", 0.02): 0.30, ("inf", 0.04): 0.90, ("2", 0.02): 0.3}
    head = SimpleNamespace(history=[{"fooling_rate": 0.2}, {"fooling_rate": 0.41}, {"fooling_rate": 0.42}],
                           fooling_rate=0.42, converged=False, stop_reason="epochs", params={})
    t = paper_gap_table(m, test_rates, {(0.02, "inf", None): head}, head,
                        {"fooling_rate": 0.4, "random_fooling_rate": 0.2}, iterative_rate=0.03)
    v = t["verdict"]
    assert v["which fooling rate"] == "part of it"              # balanced 45 % is 15 points above plain, < 85 %
    # the ceiling that binds is the one of the class the UAP herds into (COVID-19: 210 of 340 predictions), not the highest
    assert ("sends 62% of the images to COVID-19, so its plain rate can reach at most 41.2%; herding into any one class "
            "at most 79.4%") in t.loc["which fooling rate", "what the outputs say"]
    assert v["the budget"] == "part of it" and "ζ = 4% (2.0× the paper's budget)" in t.loc["the budget", "what the outputs say"]
    assert v["iterations"] == "not ruled out"                   # stopped after its epochs, still rising: no verdict
    assert paper_gap_table(m, {("inf", 0.02): 0.3}, {}, head, {"fooling_rate": 0.4, "random_fooling_rate": 0.2},
                           0.03)["verdict"]["the budget"] == "not alone"
    # the budget row reads the re-weighted rate when given (the one the paper's > 85 % is held against)
    rw = paper_gap_table(m, {("inf", 0.02): 0.3}, {}, head, {"fooling_rate": 0.4, "random_fooling_rate": 0.2}, 0.03,
                         reweighted_rates={("inf", 0.02): 0.5, ("inf", 0.03): 0.86})
    assert rw["verdict"]["the budget"] == "part of it" and "re-weighted rate reaches 85% at ζ = 3%" in rw.loc["the budget", "what the outputs say"]
    assert v["training-set size"] == "part of it"               # 42 % on the build images vs 30 % on test
    assert v["the model"] == "not tested here" and v["the algorithm"] == "not it"
    s = paper_gap_summary(t)
    assert s.startswith("**Verdict:**") and "iterations cannot be ruled out" in s and "the algorithm does not account for it" in s
    conv = SimpleNamespace(history=[{"fooling_rate": 0.5, "on": "holdout"}] * 4, fooling_rate=0.31, converged=True,
                           stop_reason="plateau", params={"patience": 3, "eval_every": 8, "steps": 48})
    t2 = paper_gap_table(m, test_rates, {(0.02, "inf", None): conv}, conv, {"fooling_rate": 0.4, "random_fooling_rate": 0.2},
                         iterative_rate=0.03)
    assert t2["verdict"]["iterations"] == "not it" and "24 more steps" in t2.loc["iterations", "what the outputs say"]
    assert t2["verdict"]["training-set size"] == "not tested here"  # held out 31 % ≈ test 30 %: generalises; more images untested
    assert "generalises" in t2.loc["training-set size", "what the outputs say"]
    m2 = {**m, "fooling_rate_balanced": 0.9}
    assert paper_gap_table(m2, test_rates, {}, head, {"fooling_rate": 0.9, "random_fooling_rate": 0.0},
                           0.03)["verdict"]["which fooling rate"] == "explains it"


# ----------------------------------------------------------------------------- SGD UAP: stopping on a plateau

def test_sgd_stops_on_a_plateau_of_the_holdout_rate_and_keeps_the_best_uap(tiny):
    """With patience the builder measures on images it never steps on and stops when they stop improving;
    the UAP it returns is the best measured one, and its record says so."""
    model, x, _ = tiny
    eps = uap_budget(0.05, "inf", stats=x)
    res = sgd_uap(model, x[:16], eps=eps, epochs=200, batch_size=4, holdout=x[16:], eval_every=2, patience=3,
                  seed=0)
    rates = [h["fooling_rate"] for h in res.history]
    assert res.converged and res.stop_reason in ("plateau", "fooling_rate")
    if res.stop_reason == "plateau":
        assert max(rates[-3:]) <= max(rates[:-3]) and res.params["steps"] < 200 * 4
    assert all(h["on"] == "holdout" for h in res.history) and res.params["holdout"] == 8
    held = predict(model, x[16:])
    assert float((predict(model, x[16:], perturbation=res.v) != held).float().mean()) == pytest.approx(max(rates))
    assert res.fooling_rate == max(rates) == res.params["best_rate"]
    assert [h["step"] for h in res.history] == list(range(2, 2 * len(rates) + 1, 2))


def test_sgd_that_runs_out_of_steps_says_it_did_not_converge(tiny):
    model, x, _ = tiny
    eps = uap_budget(0.02, "inf", stats=x)
    res = sgd_uap(model, x, eps=eps, epochs=50, batch_size=4, max_steps=5, patience=100, eval_every=2)
    assert (res.converged, res.stop_reason, res.params["steps"]) == (False, "budget", 5)
    assert [h["step"] for h in res.history] == [2, 4, 5]
    plain = sgd_uap(model, x, eps=eps, epochs=2, batch_size=8)
    assert (plain.converged, plain.stop_reason) == (False, "epochs") and [h["epoch"] for h in plain.history] == [1, 2]


def test_sgd_plateau_argument_errors(tiny):
    model, x, y = tiny
    with pytest.raises(ValueError, match="holdout"):
        sgd_uap(model, x, y, eps=0.02, reference="labels", holdout=x[:4])
    for name in ("patience", "eval_every", "max_steps"):
        with pytest.raises(ValueError, match=name):
            sgd_uap(model, x, eps=0.02, **{name: 0})


def test_the_random_control_is_drawn_several_times_with_its_spread(tiny):
    """draws > 1: the random_* rates are the mean of that many controls (seeds seed, seed+1, …), with their spread."""
    from medadv_lib.metrics.universal import grid_point_metrics
    model, x, y = tiny
    eps = uap_budget(0.05, "inf", stats=x)
    res = sgd_uap(model, x, eps=eps, epochs=2, batch_size=8)
    uaps = {(0.05, "inf", None): res}
    m = grid_point_metrics(model, x, y, uaps, (0.05, "inf", None), random_kind="shuffle", seed=4, draws=3)
    rates = [fooling_rate(model, x, random_uap(res.v, res.eps, "inf", kind="shuffle", seed=s)) for s in (4, 5, 6)]
    assert m["random_fooling_rates"] == pytest.approx(rates) and m["random_draws"] == 3
    assert m["random_fooling_rate"] == pytest.approx(np.mean(rates))
    assert m["random_fooling_rate_min"] == pytest.approx(min(rates)) and m["random_fooling_rate_max"] == pytest.approx(max(rates))
    one = grid_point_metrics(model, x, y, uaps, (0.05, "inf", None), random_kind="shuffle", seed=4)
    assert one["random_fooling_rate"] == pytest.approx(rates[0]) and one["random_draws"] == 1
    with pytest.raises(ValueError, match="draws"):
        grid_point_metrics(model, x, y, uaps, (0.05, "inf", None), draws=0)


# ----------------------------------------------------------------------------- section 8: levers as experiments

def test_paired_difference_interval_by_hand():
    from medadv_lib.stats import paired_difference
    a = np.array([1] * 30 + [0] * 70, dtype=bool)
    b = np.array([1] * 10 + [0] * 90, dtype=bool)        # b ⊂ a: 20 discordant images, all for a
    d = paired_difference(a, b)
    assert d["diff"] == pytest.approx(0.20) and d["a_only"] == 20 and d["b_only"] == 0
    assert 0.1 < d["lo"] < 0.2 < d["hi"] < 0.3 and d["p_value"] < 1e-5
    same = paired_difference(a, a)                      # no discordant image: no difference, no doubt
    assert (same["diff"], same["lo"], same["hi"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    r = paired_difference(b, a)                          # the mirror image
    assert r["diff"] == pytest.approx(-0.20) and r["hi"] == pytest.approx(-d["lo"]) and r["lo"] == pytest.approx(-d["hi"])


def _lever(lo, hi, rw=0.55, head_rw=0.50, p=0.5):
    return {"variant": "4× the steps", "fooling_rate": 0.45, "headline_fooling_rate": 0.40, "diff": 0.05,
            "diff_lo": 0.0, "diff_hi": 0.1, "p_value": p, "fooling_rate_reweighted": rw,
            "headline_fooling_rate_reweighted": head_rw, "rw_diff": rw - head_rw, "rw_diff_lo": lo, "rw_diff_hi": hi}


def test_lever_verdicts_follow_the_paired_interval_of_the_reweighted_rates():
    from medadv_lib.metrics.universal import lever_verdict
    gap = 0.30
    assert lever_verdict(_lever(0.02, 0.08), gap)[1] == "part of it"            # the interval lies above 0
    assert lever_verdict(_lever(-0.02, 0.04), gap)[1] == "not it"               # holds 0, ends 26 points short
    assert lever_verdict(_lever(-0.10, 0.35), gap)[1] == "not ruled out"        # too few images to tell
    assert lever_verdict(_lever(-0.08, -0.02, rw=0.45), gap)[1] == "not it"     # the variant is weaker
    assert lever_verdict(_lever(0.35, 0.45, rw=0.9), gap)[1] == "explains it"
    say = lever_verdict(_lever(-0.02, 0.04), gap)[0]
    assert "re-weighted 55.0% vs 50.0%, difference +5.0 points [-2.0, +4.0]" in say and "McNemar p = 0.5" in say


def test_the_paired_reweighted_difference_by_hand():
    from medadv_lib.metrics.universal import paired_reweighted_difference
    y = np.array([0] * 20 + [1] * 20 + [2] * 20)
    a = np.zeros(60, bool)
    a[:10] = True                                            # half the normal images
    d = paired_reweighted_difference(a, np.zeros(60, bool), y)
    assert d["diff"] == pytest.approx(0.5 * 100 / 231) and d["lo"] > 0 and d["hi"] <= 100 / 231
    same = paired_reweighted_difference(a, a, y)
    assert (same["diff"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)
    assert paired_reweighted_difference(a[:40], a[:40], y[:40]) is None          # no COVID-19 image


def test_paper_gap_table_decides_the_levers_by_their_experiments():
    """A builder whose rate keeps rising: its 4×-steps experiment finds significantly more fooled images, so
    "iterations" is part of the gap; an experiment that cannot tell leaves it "not ruled out"."""
    import pandas as pd
    from types import SimpleNamespace

    from medadv_lib.metrics.universal import paper_gap_table
    m = {"fooling_rate": 0.30, "fooling_rate_balanced": 0.45, "fooling_rate_vs_labels": 0.33,
         "fooling_rate_reweighted": 0.42, "random_fooling_rate": 0.05,
         "confusion_clean_to_adv": [[50, 20, 0], [0, 60, 10], [0, 0, 200]]}
    conv = SimpleNamespace(history=[{"fooling_rate": 0.5, "on": "holdout"}] * 4, fooling_rate=0.31, converged=True,
                           stop_reason="plateau", params={"patience": 3, "eval_every": 8, "steps": 48})
    rising = pd.DataFrame({"iterations": _lever(0.08, 0.16, rw=0.54, head_rw=0.42),
                           "training-set size": _lever(-0.03, 0.03, rw=0.42, head_rw=0.42),
                           "the algorithm": _lever(-0.35, -0.25, rw=0.12, head_rw=0.42)}).T
    t = paper_gap_table(m, {("inf", 0.02): 0.3}, {(0.02, "inf", None): conv}, conv,
                        {"fooling_rate": 0.4, "random_fooling_rate": 0.2}, 0.03, experiments=rising)
    v = t["verdict"]
    assert v["iterations"] == "part of it"          # the plateau said "converged"; the experiment overrules it
    assert v["training-set size"] == "not it" and v["the algorithm"] == "not it"
    assert list(t.index) == ["which fooling rate", "the budget", "iterations", "training-set size", "the model",
                             "the algorithm", "image size"]
    wide = rising.copy()
    wide.loc["iterations", ["rw_diff", "rw_diff_lo", "rw_diff_hi"]] = [0.05, -0.10, 0.50]
    assert paper_gap_table(m, {("inf", 0.02): 0.3}, {}, conv, {"fooling_rate": 0.4, "random_fooling_rate": 0.2}, 0.03,
                           experiments=wide)["verdict"]["iterations"] == "not ruled out"


def test_gap_variants_change_one_lever_each_and_are_measured_on_the_same_images(small_model, tmp_path):
    """notebook 02's section-8 experiments end to end on a small model at 64 px: the 4x-steps variant runs 4x the
    headline's steps on the same images, the training-set variant steps on every training image not held out, the
    iterative variant gets at least the headline's gradient budget; every variant is paired with the headline on the
    same test images (the plain difference is the difference of the two plain rates)."""
    from medadv_lib import course
    from medadv_lib.attacks.uap.cache import precompute_uaps
    from medadv_lib.data import image_norm_stats, load_split
    from conftest import SMALL_SIZE
    xb, _, xh = course.uap_build_images(True, SMALL_SIZE, train=64, holdout=32)
    sgd = {"method": "sgd", "epochs": 2, "batch_size": 16, "eval_every": 2, "patience": 2, "lr_ratio": 0.5}
    stats = image_norm_stats(SMALL_SIZE)
    head = precompute_uaps(small_model, xb, zetas=(0.02,), norms=("inf",), stats=stats, cache_dir=tmp_path, seed=0,
                           holdout=xh, **sgd)[(0.02, "inf", None)]
    v = course.gap_variants(small_model, head, xb, xh, sgd, fast=True, stats=stats, cache_dir=tmp_path, iter_passes=1)
    steps = head.params["steps"]
    it, size, alg = v["iterations"][0], v["training-set size"][0], v["the algorithm"][0]
    assert it.params["steps"] == 4 * steps and it.params["n"] == len(xb)
    n_train = len(load_split("train", SMALL_SIZE)[1])
    assert v["training-set size"][2] == size.params["n"] == n_train - len(xh)
    assert size.params["steps"] * 16 >= size.params["n"]                      # every build image stepped on
    assert alg.method == "iterative" and alg.params["max_iter"] * len(xb) >= steps * 16
    xt, yt = load_split("test", SMALL_SIZE, limit=60, seed=0)
    t = course.gap_experiments(small_model, head, v, xt, yt)
    assert list(t.index) == list(course.LEVERS)
    for r in t.itertuples():
        assert r.diff == pytest.approx(r.fooling_rate - r.headline_fooling_rate)
        assert r.rw_diff_lo <= r.rw_diff <= r.rw_diff_hi and r.diff_lo <= r.diff <= r.diff_hi
