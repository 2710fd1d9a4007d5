"""Projected Gradient Descent (Madry et al.) in L∞ and L2, with random start and restarts."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from ..runtime import progress_bar as tqdm   # tqdm.auto's, silent under the course runner

from ._common import check_eps, check_inputs, num_classes_of, parse_norm, project
from .result import AttackResult, eval_mode, make_result


def random_start_noise(x, eps, norm, gen):
    """Uniform noise in the L∞ ball, or a uniform direction with radius U(0,1)·eps in L2."""
    noise = torch.rand if norm == "inf" else torch.randn
    d = noise(x.shape, generator=gen, device=gen.device if gen is not None else x.device)
    if norm == "inf":
        d = (2 * d - 1) * eps
    else:
        radius = torch.rand(x.shape[0], generator=gen, device=d.device) * eps
        d = d * (radius / d.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
    return d.to(device=x.device, dtype=x.dtype)


def pgd_run(model, x, y, eps, alpha, steps, norm, x_start, targeted, bar, early_stop=False):
    """The PGD iterations of :func:`pgd` on one batch from ``x_start`` (no checks, no restarts): ``steps``
    signed-gradient (L∞) or normalised-gradient (L2) steps of size ``alpha``, each projected onto the
    ``eps``-ball around ``x`` and [0, 1]; ``bar.update()`` after each step.  With ``early_stop`` an image
    leaves the batch once it is fooled (reached the target).  Returns the adversarial images."""
    x_adv = x_start.clamp(0, 1)
    if not early_stop:
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")  # per-sample grads, batch-size free
            grad, = torch.autograd.grad(-loss if targeted else loss, x_adv)
            x_adv = _step(x, x_adv.detach(), grad, alpha, eps, norm)
            bar.update()
        return x_adv.detach()
    # early stop: the forward pass of every step also tells which iterates already succeed; those
    # are frozen and leave the batch, so later steps cost only what is still to be fooled
    x_adv, active = x_adv.detach().clone(), torch.arange(len(x), device=x.device)
    for _ in range(steps):
        xa = x_adv[active].requires_grad_(True)
        logits = model(xa)
        done = (logits.argmax(1) == y[active]) if targeted else (logits.argmax(1) != y[active])
        loss = F.cross_entropy(logits, y[active], reduction="sum")
        grad, = torch.autograd.grad(-loss if targeted else loss, xa)
        keep = ~done
        x_adv[active[keep]] = _step(x[active[keep]], xa.detach()[keep], grad[keep], alpha, eps, norm)
        active = active[keep]
        bar.update()
        if active.numel() == 0:
            break
    return x_adv


def _step(x, x_adv, grad, alpha, eps, norm):
    """One steepest-ascent step of size ``alpha`` under ``norm``, projected on the ball and [0, 1]."""
    step = grad.sign() if norm == "inf" else grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10)
    return (x + project(x_adv + alpha * step - x, eps, norm)).clamp(0, 1)


def pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float | None = None,
        steps: int = 10, norm="inf", random_start: bool = True, targeted: bool = False,
        restarts: int = 1, seed: int | None = None, progress: bool = False, early_stop: bool = False) -> AttackResult:
    r"""PGD: ``steps`` gradient steps of size ``alpha``, each projected on the ``eps``-ball and [0,1].

    'Towards Deep Learning Models Resistant to Adversarial Attacks' [https://arxiv.org/abs/1706.06083]

    Distance measure: L∞ (sign steps, clamp projection) or L2 (normalised steps, rescaling
    projection).  With ``random_start=False`` it equals ``torchattacks.PGD`` / ``PGDL2``.

    Arguments:
        model (nn.Module): classifier taking [0,1] pixels; run in eval mode.
        x (Tensor): clean images ``N×C×H×W`` in [0, 1].
        y (Tensor): ``N`` labels; the *target* labels when ``targeted=True``.
        eps (float): budget in pixel units, ≥ 0.
        alpha (float): step size. (Default: None → ``2.5·eps/steps``, Madry's rule)
        steps (int): number of steps. (Default: 10)
        norm (str | float): ``"inf"`` or ``"2"``. (Default: "inf")
        random_start (bool): start from a random point of the ball. (Default: True)
        targeted (bool): minimise the cross-entropy of the target ``y``. (Default: False)
        restarts (int): random restarts; each later restart attacks only the samples not yet
            fooled, and every sample keeps its best result (a success, otherwise the highest
            loss). Restart 0 with a given ``seed`` equals a single run. (Default: 1)
        seed (int): seeds the random starts (CPU generator, same noise on every device).
            (Default: None → torch's global RNG)
        progress (bool): tqdm bar over steps. (Default: False)
        early_stop (bool): stop attacking a sample as soon as an iterate succeeds (its forward pass
            of the next step says so) and keep that iterate, so every later step runs only on the
            samples not fooled yet: the same or more successes than the plain run (which keeps the
            last iterate, and can step back out of the adversarial region), for a fraction of its
            cost when most samples fall early.  Robustness evaluations use it; with the default
            (False) the result equals the plain algorithm and its peers. (Default: False)
    Returns:
        :class:`AttackResult`; ``iterations`` = steps spent per sample, ``loss`` = attack loss.
    Examples::
        >>> res = pgd(model, x, y, eps=2/255, steps=20, restarts=3, seed=0)
        >>> res.success_rate, res.delta_norm.max()
    """
    norm = parse_norm(norm)
    eps = check_eps(eps, norm=norm)
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else check_eps(alpha, "alpha")
    if int(steps) != steps or steps < 0 or int(restarts) != restarts or restarts < 1:
        raise ValueError(f"steps must be an int >= 0 and restarts an int >= 1; got {steps}, {restarts}")
    check_inputs(x, y, num_classes_of(model, x))
    x, y = x.detach(), y.to(x.device)
    restarts = restarts if random_start else 1           # without noise every restart is identical
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    best, todo = None, torch.arange(len(x), device=x.device)
    with eval_mode(model), tqdm(total=restarts * steps, disable=not progress, desc="PGD") as bar:
        for _ in range(restarts):
            xs, ys = x[todo], y[todo]
            start = xs + random_start_noise(xs, eps, norm, gen) if random_start else xs.clone()
            x_adv = pgd_run(model, xs, ys, eps, alpha, steps, norm, start, targeted, bar, early_stop)
            with torch.no_grad():
                logits = model(x_adv)
            ce = F.cross_entropy(logits, ys, reduction="none")
            res = make_result(model, xs, x_adv, ys, norm, targeted, loss=-ce if targeted else ce,
                              pred=logits.argmax(1))
            res.iterations = torch.full_like(ys, steps)
            if best is None:
                best = res
            else:
                better = res.success | (res.loss > best.loss[todo])
                for f in ("x_adv", "delta", "success", "delta_norm", "pred", "loss"):
                    getattr(best, f)[todo[better]] = getattr(res, f)[better]
                best.iterations[todo] += steps
            todo = todo[~best.success[todo]]
            if todo.numel() == 0:
                break
    return best
