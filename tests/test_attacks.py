"""Per-image attacks (FGSM, PGD, DeepFool): budgets, ranges, success flags, edge cases, peers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medadv_lib.attacks import AttackResult, deepfool, fgsm, lp_norm, pgd

N = 8    # images per test: keeps the CPU suite fast


@pytest.fixture(scope="module")
def batch(real_batch):
    x, y = real_batch
    return x[::4][:N].clone(), y[::4][:N].clone()     # every 4th image: all three classes


@pytest.fixture(scope="module")
def model(small_model):
    return small_model


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def _check_result(res: AttackResult, model, x, y, eps=None, norm="inf"):
    assert isinstance(res, AttackResult) and len(res) == len(x)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert torch.allclose(res.delta, res.x_adv - x)
    assert torch.allclose(res.delta_norm, lp_norm(res.x_adv - x, norm), atol=1e-6)
    if eps is not None:
        assert (res.delta_norm <= eps + 1e-5).all(), (res.delta_norm.max(), eps)
    pred = _pred(model, res.x_adv)
    assert torch.equal(res.pred, pred)
    assert torch.equal(res.success, pred == y if res.targeted else pred != y)
    assert torch.equal(res.y, y)


# ---------------------------------------------------------------- FGSM
@pytest.mark.parametrize("norm,eps", [("inf", 2 / 255), ("2", 0.5)])
def test_fgsm_budget_range_and_flags(model, batch, norm, eps):
    x, y = batch
    res = fgsm(model, x, y, eps, norm=norm)
    _check_result(res, model, x, y, eps, norm)
    assert res.norm == norm and res.iterations is None


def test_fgsm_linf_uses_the_whole_budget_off_the_borders(model, batch):
    x, y = batch
    res = fgsm(model, x, y, 1 / 255)
    inside = (x > 1 / 255) & (x < 1 - 1 / 255)
    assert torch.allclose(res.delta.abs()[inside], torch.tensor(1 / 255), atol=1e-6)


def test_fgsm_eps_zero_changes_nothing(model, batch):
    x, y = batch
    res = fgsm(model, x, y, 0.0)
    assert torch.equal(res.x_adv, x) and (res.delta_norm == 0).all()


# ---------------------------------------------------------------- PGD
@pytest.mark.parametrize("norm,eps", [("inf", 2 / 255), ("2", 0.5)])
def test_pgd_budget_range_and_flags(model, batch, norm, eps):
    x, y = batch
    res = pgd(model, x, y, eps, steps=3, norm=norm, seed=0)
    _check_result(res, model, x, y, eps, norm)
    assert (res.iterations == 3).all() and res.loss.shape == (len(x),)


def test_pgd_targeted_hits_the_target(model, batch):
    x, y = batch
    target = (_pred(model, x) + 1) % model.num_classes
    res = pgd(model, x, target, 8 / 255, steps=5, targeted=True, seed=0)
    _check_result(res, model, x, target, 8 / 255)
    assert res.targeted and res.success_rate >= 0.75, res.success_rate
    untargeted = pgd(model, x, target, 8 / 255, steps=5, seed=0)   # maximising the target's loss
    assert (untargeted.pred == target).sum() < res.success.sum()


def test_pgd_seed_reproducible(model, batch):
    x, y = batch
    a = pgd(model, x, y, 1 / 255, steps=2, seed=3)
    b = pgd(model, x, y, 1 / 255, steps=2, seed=3)
    assert torch.equal(a.x_adv, b.x_adv)


def test_pgd_restarts_never_worse(model, batch):
    x, y = batch
    eps = 0.5 / 255                                     # small budget: some samples survive
    one = pgd(model, x, y, eps, steps=2, restarts=1, seed=0)
    many = pgd(model, x, y, eps, steps=2, restarts=3, seed=0)
    assert one.success.any() and (~one.success).any(), "budget should fool some images, not all"
    _check_result(many, model, x, y, eps)
    assert not (one.success & ~many.success).any()      # every success of restart 0 is kept
    assert torch.equal(many.x_adv[one.success], one.x_adv[one.success])
    fail = ~many.success
    assert (many.loss[fail] >= one.loss[fail] - 1e-5).all()   # failures keep the highest loss
    assert (many.iterations[one.success] == 2).all()    # fooled samples were not attacked again
    assert (many.iterations[~one.success] > 2).all()


def test_pgd_without_random_start_is_deterministic_and_ignores_restarts(model, batch):
    x, y = batch
    a = pgd(model, x, y, 1 / 255, steps=2, random_start=False, restarts=4)
    b = pgd(model, x, y, 1 / 255, steps=2, random_start=False)
    assert torch.equal(a.x_adv, b.x_adv) and (a.iterations == 2).all()


# ---------------------------------------------------------------- DeepFool
class LinearModel(nn.Module):
    """An affine classifier: DeepFool's linearisation is exact, so one step must suffice."""

    def __init__(self, num_classes=3, side=8, seed=0):
        super().__init__()
        self.num_classes = num_classes
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(num_classes, side * side, generator=g) * 0.1)
        self.b = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b


def test_deepfool_on_a_linear_model_matches_the_closed_form():
    model = LinearModel(num_classes=2)
    x = 0.5 + 0.01 * torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    res = deepfool(model, x, overshoot=0.02)
    w = (model.w[1] - model.w[0]).detach()
    f = (x.flatten(1) @ model.w.T + model.b).detach()
    dist = (f[:, 1] - f[:, 0]).abs() / w.norm()
    assert (res.iterations == 1).all() and res.success.all()
    assert torch.allclose(res.delta_norm, 1.02 * (dist + 1e-4), rtol=1e-4)   # overshoot on the total
    cos = torch.nn.functional.cosine_similarity(res.delta.flatten(1), w.expand(6, -1)).abs()
    assert torch.allclose(cos, torch.ones(6), atol=1e-5)


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_deepfool_result(model, batch, norm):
    x, y = batch
    res = deepfool(model, x, steps=20, norm=norm)
    clean = _pred(model, x)
    _check_result(res, model, x, clean, norm=norm)      # y defaults to the clean prediction
    assert res.success_rate == 1.0 and res.norm == norm
    assert (res.iterations >= 1).all() and (res.iterations <= 20).all()
    assert (res.delta_norm > 0).all() and res.r is res.delta


def test_deepfool_clean_errors_are_untouched_with_zero_iterations(model, batch):
    x, y = batch
    wrong = _pred(model, x) != y
    assert wrong.any() and (~wrong).any(), "fixture should hold both right and wrong predictions"
    res = deepfool(model, x, y, steps=20)
    assert (res.iterations[wrong] == 0).all() and (res.delta_norm[wrong] == 0).all() and res.success[wrong].all()
    assert (res.iterations[~wrong] >= 1).all()


class CountingModel(nn.Module):
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, model):
        super().__init__()
        self.model, self.num_classes, self.sizes = model, model.num_classes, []
        self.eval()

    def forward(self, x):
        self.sizes.append(len(x))
        return self.model(x)


def test_deepfool_early_stop_forwards_only_active_samples(model, batch):
    x, _ = batch
    counting = CountingModel(model)
    res = deepfool(counting, x, steps=50)
    assert not any(m.training for m in model.modules())   # eval_mode restored every flag
    it = res.iterations
    assert it.max() > it.min(), "want samples that finish at different iterations"
    # the clean pass doubles as iteration 0; iteration j ≥ 1 forwards exactly the samples that
    # took ≥ j steps (the last of them finds the sample fooled)
    expected = [len(x)] + [int((it >= j).sum()) for j in range(1, int(it.max()) + 1)]
    assert counting.sizes == expected


def test_deepfool_finished_samples_stay_put_and_cap_is_respected(model, batch):
    x, _ = batch
    full = deepfool(model, x, steps=50)
    k = int(full.iterations.min())                       # every sample needs at least k steps
    capped = deepfool(model, x, steps=k)
    assert (capped.iterations == k).all()
    done = full.iterations == k                           # these finished exactly at the cap
    assert torch.allclose(capped.x_adv[done], full.x_adv[done], atol=1e-5)
    assert full.iterations.max() < 50 and full.success.all()   # stopped by success, not by the cap
    none = deepfool(model, x, steps=0)
    assert (none.iterations == 0).all() and torch.equal(none.x_adv, x) and not none.success.any()


# ---------------------------------------------------------------- bad inputs
ATTACKS = {
    "fgsm": lambda m, x, y, **kw: fgsm(m, x, y, kw.pop("eps", 1 / 255), **kw),
    "pgd": lambda m, x, y, **kw: pgd(m, x, y, kw.pop("eps", 1 / 255), steps=1, **kw),
    "deepfool": lambda m, x, y, **kw: deepfool(m, x, y, steps=1, **{k: v for k, v in kw.items() if k != "eps"}),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_bad_inputs_raise_value_error(name):
    model, attack = LinearModel(), ATTACKS[name]
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="unknown norm"):
        attack(model, x, y, norm="l3")
    with pytest.raises(ValueError, match="labels out of range"):
        attack(model, x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="shape mismatch"):
        attack(model, x, y[:3])
    with pytest.raises(ValueError, match="4-D"):
        attack(model, x[:, 0], y)
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        attack(model, x * 2, y)
    if name != "deepfool":
        with pytest.raises(ValueError, match="eps"):
            attack(model, x, y, eps=-0.1)


def test_bad_attack_parameters_raise_value_error():
    model, x, y = LinearModel(), torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="restarts"):
        pgd(model, x, y, 0.1, restarts=0)
    with pytest.raises(ValueError, match="alpha"):
        pgd(model, x, y, 0.1, alpha=-1)
    with pytest.raises(ValueError, match="candidates"):
        deepfool(model, x, candidates=1)
    with pytest.raises(ValueError, match="overshoot"):
        deepfool(model, x, overshoot=-0.5)


# ---------------------------------------------------------------- peers (CI installs the `peers` extra)
@pytest.mark.peers
@pytest.mark.parametrize("norm,eps,alpha,targeted", [("inf", 2 / 255, 0.5 / 255, False), ("2", 0.5, 0.1, False),
                                                      ("inf", 2 / 255, 0.5 / 255, True)])
def test_pgd_equals_torchattacks(model, batch, norm, eps, alpha, targeted):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = batch[0][:4], batch[1][:4]
    if targeted:
        y = (y + 1) % model.num_classes
    cls = torchattacks.PGD if norm == "inf" else torchattacks.PGDL2
    peer = cls(model, eps=eps, alpha=alpha, steps=3, random_start=False)
    if targeted:
        peer.set_mode_targeted_by_function(lambda images, labels: labels)   # torchattacks 3.3 and 3.5 alike
    theirs = peer(x, y)
    ours = pgd(model, x, y, eps, alpha=alpha, steps=3, norm=norm, random_start=False, targeted=targeted)
    # same algorithm; only float summation order differs (their loss is a batch mean, ours a sum)
    assert torch.allclose(ours.x_adv, theirs, atol=1e-5), (ours.x_adv - theirs).abs().max()


@pytest.mark.peers
def test_deepfool_agrees_with_foolbox(model, batch):
    fb = pytest.importorskip("foolbox")
    from medadv_lib.metrics import rho_adv

    x, y = batch
    steps, candidates, overshoot = 50, 3, 0.02
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    attack = fb.attacks.L2DeepFoolAttack(steps=steps, candidates=candidates, overshoot=overshoot)
    theirs, _, their_success = attack(fmodel, x, y, epsilons=None)
    ours = deepfool(model, x, y, steps=steps, candidates=candidates, overshoot=overshoot)
    correct = _pred(model, x) == y
    assert correct.any() and (~correct).any()
    # Same algorithm (top-k classes, logit gaps, overshoot on the accumulated perturbation), so
    # tolerances are tight: identical success flags, median ρ_adv over the clean-correct images
    # within 1 % (relative), every adversarial image within 1e-4 per pixel.
    assert torch.equal(ours.success, their_success.bool())
    ours_rho = rho_adv(ours.r, x)[correct].median()
    their_rho = rho_adv(theirs - x, x)[correct].median()
    assert abs(ours_rho - their_rho) <= 0.01 * their_rho, (ours_rho, their_rho)
    assert torch.allclose(ours.x_adv, theirs, atol=1e-4)


def test_pgd_early_stop_keeps_every_success_and_skips_fooled_samples(model, batch):
    x, y = batch
    eps = 1 / 255
    plain = pgd(model, x, y, eps, steps=6, seed=0)
    seen = []
    hook = model.register_forward_pre_hook(lambda m, inp: seen.append(len(inp[0])))
    try:
        early = pgd(model, x, y, eps, steps=6, seed=0, early_stop=True)
    finally:
        hook.remove()
    _check_result(early, model, x, y, eps)
    assert plain.success.any() and (~plain.success).any(), "budget should fool some images, not all"
    assert not (plain.success & ~early.success).any()     # the plain run's successes are kept
    assert torch.equal(early.x_adv[~early.success], plain.x_adv[~early.success])  # never stopped: same path
    assert len(seen) > 2 and seen[0] == len(x) and min(seen[:-1]) < len(x)   # fooled samples left the batch


def test_pgd_early_stop_targeted_stops_on_the_target(model, batch):
    x, _ = batch
    target = torch.full((len(x),), 2)
    res = pgd(model, x, target, 8 / 255, steps=5, targeted=True, seed=0, early_stop=True)
    _check_result(res, model, x, target, 8 / 255)
    assert res.success.any()
