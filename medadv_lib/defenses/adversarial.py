"""Training-side defenses (notebook 05): the per-batch ``perturb`` hooks of :func:`medadv_lib.train.fit`.

One training loop serves all three (Kolter & Madry's ``epoch_adversarial``): ``fit`` calls
``perturb(model, x, y) -> x'`` on every augmented training batch before the forward pass.

* :class:`UAPPerturb` — **UAP fine-tuning** (Hirano et al. 2020): a *fixed* UAP, built against the
  current model, is added to a share of every batch (true labels kept).  Repeating "build a UAP
  against the model, fine-tune on it" for a few rounds is their iterative defense
  (:func:`medadv_lib.course.course_uap_finetune` runs the rounds and caches each one).
* :class:`UATPerturb` — **universal adversarial training** (Shafahi et al. 2020, Algorithm 2):
  one UAP ``v`` is updated with every mini-batch (one signed-gradient ascent step on the batch
  loss, projected into the ball) while the model descends on ``x + v``: a min–max game in the
  same loop, at the price of one extra forward/backward per batch.
* :class:`PGDPerturb` — **per-image adversarial training** (Madry et al. 2018), the standard
  reference: every image of the batch is replaced by its PGD example.  ``steps=1`` is "FGSM with
  a random start" (Wong, Rice & Kolter 2020, *Fast is better than free*: uniform start in the
  ε-ball, one step of ``1.25 ε``), which the FAST course uses: it costs one extra
  forward/backward per batch instead of ``steps``.

Every hook's :meth:`describe` returns the JSON description that goes into
``TrainConfig.perturbation`` — and so into the checkpoint's cache key: two models fine-tuned
against different UAPs, shares or budgets never share a file.

Adversarial examples are crafted with the model in eval mode (BatchNorm statistics frozen, so the
attack's extra passes do not shift the running means), then the model trains on them in train
mode, as :func:`medadv_lib.attacks.pgd` and the UAP builders do.
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from ..attacks import check_eps, parse_norm, project
from ..attacks.pgd import pgd_run, random_start_noise
from ..runtime import eval_mode


def _share_mask(n: int, share: float, gen: torch.Generator, device) -> torch.Tensor:
    """A boolean mask choosing ``round(share × n)`` images of a batch of ``n`` at random."""
    k = int(round(share * n))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=gen)[:k]] = True
    return mask.to(device).view(n, 1, 1, 1)


def _check_share(share: float) -> float:
    share = float(share)
    if not 0 < share <= 1:
        raise ValueError(f"share (the part of each batch that is perturbed) must be in (0, 1]; got {share}")
    return share


def tensor_fingerprint(t: torch.Tensor) -> str:
    """Short sha1 of a tensor's values (float32 bytes): which UAP a model was fine-tuned against."""
    return hashlib.sha1(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:10]


class UAPPerturb:
    """Add a fixed UAP to a random share of every batch (Hirano et al.'s fine-tuning step).

    ``v`` may hold a *pool* of UAPs (``K×1×H×W``): each perturbed image then gets one of them, drawn
    uniformly.  :func:`medadv_lib.course.uap_finetune_rounds` passes every UAP of the earlier rounds,
    so that a round does not forget the UAPs it was hardened against before (fine-tuning on the
    latest UAP alone let the FAST model become as vulnerable to a fresh UAP after three rounds as
    before the first: the attacker's pattern changes from round to round, and so must the training).

    Arguments:
        v (Tensor): the perturbation (``1×1×H×W``), or a pool ``K×1×H×W``, pixel units.
        share (float): part of each batch that gets a UAP, in (0, 1]; the rest stays clean, so the
            model keeps seeing clean images. (Default: 0.5)
        seed (int): seeds which images are chosen (and which UAP of the pool). (Default: 0)
    Example::
        >>> hook = UAPPerturb(uap.v, share=0.5)
        >>> fit(model, train, val, cfg, perturb=hook)      # cfg.perturbation = hook.describe()
    """

    kind = "uap"

    def __init__(self, v: torch.Tensor, share: float = 0.5, seed: int = 0, **describe_extra):
        v = v.detach()
        if v.ndim != 4:
            raise ValueError(f"v must be 1×C×H×W (or a pool K×C×H×W); got shape {tuple(v.shape)}")
        self.v, self.share = v, _check_share(share)
        self.seed, self.extra = int(seed), describe_extra
        self.gen = torch.Generator().manual_seed(self.seed)

    def __call__(self, model, x, y):
        mask = _share_mask(len(x), self.share, self.gen, x.device)
        v = self.v.to(x.device, x.dtype)
        if len(v) > 1:
            v = v[torch.randint(len(v), (len(x),), generator=self.gen).to(x.device)]
        return torch.where(mask, (x + v).clamp(0, 1), x)

    def describe(self) -> dict:
        return {"kind": self.kind, "share": self.share, "seed": self.seed, "uap": tensor_fingerprint(self.v),
                **({"pool": len(self.v)} if len(self.v) > 1 else {}), **self.extra}


class UATPerturb:
    """Universal adversarial training (Shafahi et al. 2020): one UAP, updated on every batch.

    For each batch: ``g = ∇_v mean CE(model(clamp(x + v)), y)`` (model in eval mode),
    ``v ← project(v + lr · sign(g))`` (L2: ``g/‖g‖``), then the batch is returned with the new ``v``
    added to a ``share`` of its images.  ``v`` starts at zero and is kept in :attr:`v` (the
    attacker's UAP at the end of training); :attr:`history` holds its norm after every update.

    Arguments:
        eps (float): budget in pixel units (``uap_budget(zeta, norm, stats)``).
        norm (str): ``"inf"`` or ``"2"``. (Default: "inf")
        lr (float): step of ``v`` per batch. (Default: ``eps/10``: about ten batches cross the ball)
        share (float): part of each batch perturbed, in (0, 1]. (Default: 1.0, as Shafahi et al.)
        seed (int): seeds the choice of images when ``share < 1``. (Default: 0)
    """

    kind = "uat"

    def __init__(self, eps: float, norm="inf", lr: float | None = None, share: float = 1.0, seed: int = 0,
                 **describe_extra):
        self.norm, self.eps = parse_norm(norm), check_eps(eps)
        if self.eps == 0:
            raise ValueError("eps must be > 0 for universal adversarial training")
        self.lr = self.eps / 10 if lr is None else check_eps(lr, "lr")
        self.share, self.seed, self.extra = _check_share(share), int(seed), describe_extra
        self.gen = torch.Generator().manual_seed(self.seed)
        self.v: torch.Tensor | None = None
        self.history: list[float] = []

    def __call__(self, model, x, y):
        if self.v is None:
            self.v = torch.zeros(1, 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
        vv = self.v.detach().requires_grad_(True)
        with eval_mode(model):
            loss = F.cross_entropy(model((x + vv).clamp(0, 1)), y)
            g, = torch.autograd.grad(loss, vv)
        step = g.sign() if self.norm == "inf" else g / (g.norm() + 1e-12)
        self.v = project(self.v + self.lr * step, self.eps, self.norm).detach()
        self.history.append(float(self.v.abs().max() if self.norm == "inf" else self.v.norm()))
        if self.share >= 1:
            return (x + self.v).clamp(0, 1)
        mask = _share_mask(len(x), self.share, self.gen, x.device)
        return torch.where(mask, (x + self.v).clamp(0, 1), x)

    def describe(self) -> dict:
        return {"kind": self.kind, "eps": self.eps, "norm": self.norm, "lr": self.lr, "share": self.share,
                "seed": self.seed, **self.extra}


class _NoBar:
    @staticmethod
    def update(*_):
        pass


class PGDPerturb:
    """Per-image adversarial training (Madry et al. 2018): every image of the batch (or a ``share``)
    is replaced by its PGD-L∞/L2 example against the current model (true labels).

    Arguments:
        eps (float): budget in pixel units (e.g. ``2/255``).
        steps (int): PGD steps; ``1`` = FGSM with a random start and step ``1.25·eps`` (Wong et al.
            2020), the cheap variant the FAST course uses. (Default: 1)
        alpha (float): step size. (Default: ``1.25·eps`` for one step, else ``2.5·eps/steps``)
        norm (str): ``"inf"`` or ``"2"``. (Default: "inf")
        share (float): part of each batch replaced, in (0, 1]. (Default: 1.0)
        seed (int): seeds the random starts (a new stream per batch). (Default: 0)
    """

    kind = "pgd"

    def __init__(self, eps: float, steps: int = 1, alpha: float | None = None, norm="inf", share: float = 1.0,
                 seed: int = 0, **describe_extra):
        self.norm = parse_norm(norm)
        self.eps = check_eps(eps, norm=self.norm)
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be a positive integer; got {steps}")
        self.steps = int(steps)
        self.alpha = (1.25 * self.eps if self.steps == 1 else 2.5 * self.eps / self.steps) if alpha is None \
            else check_eps(alpha, "alpha")
        self.share, self.seed, self.extra = _check_share(share), int(seed), describe_extra
        self.gen = torch.Generator().manual_seed(self.seed)

    def __call__(self, model, x, y):
        # the inner loop of medadv_lib.attacks.pgd (same steps and projection), without the final
        # bookkeeping forward pass that an evaluation needs and training does not
        with eval_mode(model):
            start = x + random_start_noise(x, self.eps, self.norm, self.gen)
            x_adv = pgd_run(model, x, y, self.eps, self.alpha, self.steps, self.norm, start, False, _NoBar)
        if self.share >= 1:
            return x_adv
        return torch.where(_share_mask(len(x), self.share, self.gen, x.device), x_adv, x)

    def describe(self) -> dict:
        return {"kind": self.kind, "eps": self.eps, "steps": self.steps, "alpha": self.alpha, "norm": self.norm,
                "share": self.share, "seed": self.seed, **self.extra}
