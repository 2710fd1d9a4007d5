"""Benchmark medadv's PGD and DeepFool against torchattacks and foolbox on one model and batch.

Prints seconds, success rate and median ρ_adv side by side, the speed ratios, and how close
each of our attacks comes to its cost floor: attack time divided by (the forward/backward
passes the algorithm needs × one measured pass on the same batch).

Same work: our attacks also return the predictions on ``x_adv``, so torchattacks' PGD time includes
the one forward pass that gets them.

Goals (issue #3): PGD within 1.1× of torchattacks.PGD; DeepFool ≥ 20× faster than
torchattacks.DeepFool at the same success rate.

Examples::

    python bench/bench_attacks.py --batch-size 16 --image-size 64 --device cpu
    python bench/bench_attacks.py --checkpoint runs/resnet18/model.pt --batch-size 128 --image-size 224
"""
from __future__ import annotations

import argparse
import time

import torch

from medadv_lib.attacks import deepfool, pgd
from medadv_lib.metrics import rho_adv
from medadv_lib.models import build_model, load_checkpoint
from medadv_lib.runtime import get_device, seed_everything


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats=1):
    """Best wall time of ``repeats`` runs of ``fn()`` and its last output."""
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def pass_times(model, x, device, repeats=3):
    """Measured seconds of one forward and of one forward+backward (input gradient) on ``x``."""
    def fwd():
        with torch.no_grad():
            model(x)

    def fwd_bwd():
        xa = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xa).sum(), xa)

    fwd(), fwd_bwd()                                 # warm-up
    return timed(fwd, device, repeats)[0], timed(fwd_bwd, device, repeats)[0]


def batching_gain(model, x, device, backward_passes, repeats=3):
    """How much faster one batched DeepFool step is than the same step looped over single images.

    A step is one forward and ``backward_passes`` input-gradient backward passes.  This ratio is
    the most that batching alone can buy over a per-image loop (torchattacks' DeepFool) on this
    device and model; the rest of any speed-up must come from doing fewer passes.
    """
    def step(xb):
        xa = xb.clone().requires_grad_(True)
        out = model(xa)
        for j in range(backward_passes):
            torch.autograd.grad(out[:, j].sum(), xa, retain_graph=j < backward_passes - 1)

    step(x), step(x[:1])                              # warm-up
    t_batch = timed(lambda: step(x), device, repeats)[0]
    t_loop = timed(lambda: [step(x[i:i + 1]) for i in range(len(x))], device, repeats)[0]
    return t_loop / t_batch


def deepfool_floor(iterations, n, candidates, t_f, t_fb):
    """Cost of our DeepFool's work if passes scaled linearly with the number of samples in them.

    The clean forward (all n images) doubles as iteration 0; iteration j ≥ 1 forwards the
    images that took ≥ j steps.  Every iteration that still has an unfooled image back-propagates
    ``candidates - 1`` times through the rows it forwarded (t_b = t_fb - t_f).
    """
    it = iterations.cpu()
    last = int(it.max())
    fwd_rows = n + sum(int((it >= j).sum()) for j in range(1, last + 1))
    bwd_rows = (n if last > 0 else 0) + sum(int((it >= j).sum()) for j in range(1, last))
    return (fwd_rows * t_f + bwd_rows * (candidates - 1) * (t_fb - t_f)) / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18", help="architecture (random weights unless --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="a medadv checkpoint to attack (recommended)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default=None, help="precision policy of the model: auto, fp32, bf16 (default "
                   "$MEDADV_PRECISION or auto); the peers call the same model, so they run under it too")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--pgd-norm", default="inf", choices=["inf", "2"])
    p.add_argument("--eps", type=float, default=None, help="PGD budget (default 2/255 for L∞, 0.5 for L2)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps")
    p.add_argument("--df-steps", type=int, default=50)
    p.add_argument("--overshoot", type=float, default=0.02)
    p.add_argument("--candidates", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1, help="timing repeats (best of)")
    p.add_argument("--skip", nargs="*", default=[], choices=["torchattacks-deepfool", "foolbox"],
                   help="peers to leave out (torchattacks' DeepFool loops over images: slow)")
    args = p.parse_args(argv)

    seed_everything(0)
    device = get_device(args.device)
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint, device=device)
    else:
        model = build_model(args.model).to(device).eval()
        print("note: random weights (pass --checkpoint for a trained course model)")
    model.set_precision(args.precision)
    print(f"precision policy: {model.precision} ({model.precision.reason})")
    from medadv_lib.data import load_split
    x, y = load_split("test", image_size=args.image_size, data_dir=args.data_dir, limit=args.batch_size, seed=0)
    x, y = x.to(device), y.to(device)
    n, k = len(x), min(args.candidates, model.num_classes)
    eps = args.eps if args.eps is not None else (2 / 255 if args.pgd_norm == "inf" else 0.5)
    alpha = 2.5 * eps / args.steps
    with torch.no_grad():
        clean_acc = float((model(x).argmax(1) == y).float().mean())
    t_f, t_fb = pass_times(model, x, device)
    print(f"device={device} model={getattr(model, 'arch', args.model)} batch={n} image={args.image_size}px "
          f"clean_acc={clean_acc:.3f} threads={torch.get_num_threads()}")
    print(f"one forward {t_f * 1e3:.1f} ms, one forward+backward {t_fb * 1e3:.1f} ms (whole batch)")

    rows = []

    def add(attack, impl, secs, x_adv, floor=None):
        with torch.no_grad():
            success = float((model(x_adv).argmax(1) != y).float().mean())
        rho = float(rho_adv(x_adv - x, x).quantile(0.5))
        rows.append((attack, impl, secs, success, rho, floor))

    # ---- PGD (random_start=False so that both do exactly the same arithmetic)
    import torchattacks
    name = f"PGD L{'∞' if args.pgd_norm == 'inf' else '2'} eps={eps:.4g} steps={args.steps}"
    pgd(model, x[:2], y[:2], eps, alpha=alpha, steps=1, norm=args.pgd_norm)   # warm-up
    secs, res = timed(lambda: pgd(model, x, y, eps, alpha=alpha, steps=args.steps, norm=args.pgd_norm,
                                  random_start=False), device, args.repeats)
    add(name, "medadv", secs, res.x_adv, args.steps * t_fb + t_f)
    cls = torchattacks.PGD if args.pgd_norm == "inf" else torchattacks.PGDL2
    ta = cls(model, eps=eps, alpha=alpha, steps=args.steps, random_start=False)

    def ta_with_predictions():                       # the same work as ours: ours also returns the
        adv = ta(x, y)                               # predictions on x_adv (one more forward pass)
        with torch.no_grad():
            model(adv).argmax(1)
        return adv

    secs, adv = timed(ta_with_predictions, device, args.repeats)
    add(name, "torchattacks", secs, adv, args.steps * t_fb + t_f)

    # ---- DeepFool L2
    name = f"DeepFool L2 steps={args.df_steps} k={k}"
    secs, res = timed(lambda: deepfool(model, x, y, steps=args.df_steps, overshoot=args.overshoot,
                                       candidates=k), device, args.repeats)
    add(name, "medadv", secs, res.x_adv, deepfool_floor(res.iterations, n, k, t_f, t_fb))
    print(f"our DeepFool iterations per image: mean {res.iterations.float().mean():.2f}, max {int(res.iterations.max())}")
    gain = batching_gain(model, x, device, k - 1, args.repeats)
    n_cls, t_b = model.num_classes, t_fb - t_f
    more = (t_f + n_cls * t_b) / (t_f + (k - 1) * t_b)
    print(f"batching gain on this device (one batched step vs the same step per image): {gain:.1f}×; "
          f"torchattacks' per-image step back-propagates all {n_cls} logits, ours {k - 1} gaps, so its step "
          f"costs ≈ {more:.2f}× ours → expected DeepFool speed-up ≈ {gain * more:.1f}× at equal iterations")
    if "torchattacks-deepfool" not in args.skip:
        ta = torchattacks.DeepFool(model, steps=args.df_steps, overshoot=args.overshoot)
        secs, adv = timed(lambda: ta(x, y), device, 1)
        add(name + " (all classes)", "torchattacks", secs, adv)
    if "foolbox" not in args.skip:
        import foolbox as fb
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)
        attack = fb.attacks.L2DeepFoolAttack(steps=args.df_steps, candidates=k, overshoot=args.overshoot)
        secs, out = timed(lambda: attack(fmodel, x, y, epsilons=None), device, args.repeats)
        add(name, "foolbox", secs, out[0])

    # ---- report
    print(f"\n{'attack':<38} {'impl':<13} {'seconds':>8} {'success':>8} {'med ρ_adv':>10} {'×floor':>7}")
    for attack, impl, secs, success, rho, floor in rows:
        fl = f"{secs / floor:7.2f}" if floor else f"{'-':>7}"
        print(f"{attack:<38} {impl:<13} {secs:8.2f} {success:8.3f} {rho:10.4f} {fl}")
    t = {(a.split(" (")[0], i): (s, su) for a, i, s, su, _, _ in rows}
    pgd_key = next(a for a, *_ in rows if a.startswith("PGD"))
    df_key = next(a for a, *_ in rows if a.startswith("DeepFool"))
    ours, theirs = t[(pgd_key, "medadv")], t[(pgd_key, "torchattacks")]
    print(f"\nPGD: medadv / torchattacks time = {ours[0] / theirs[0]:.2f}× (goal ≤ 1.10×); "
          f"success {ours[1]:.3f} vs {theirs[1]:.3f}")
    ours = t[(df_key, "medadv")]
    for impl in ("torchattacks", "foolbox"):
        if (df_key, impl) in t:
            theirs = t[(df_key, impl)]
            goal = " (goal ≥ 20×)" if impl == "torchattacks" else ""
            print(f"DeepFool: {impl} / medadv time = {theirs[0] / ours[0]:.1f}× faster{goal}; "
                  f"success {ours[1]:.3f} vs {theirs[1]:.3f}")
    print("×floor = attack time / (passes the algorithm needs × one measured pass); 1.00 is the floor.")


if __name__ == "__main__":
    main()
