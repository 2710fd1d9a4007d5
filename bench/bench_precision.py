"""Benchmark the precision policy: fp32 (the old default) against fp32 + channels_last and bf16 +
channels_last, side by side in one run, on the course's FAST models at the FAST image size.

For each model and each policy it times, on real training/test X-rays:

* a training epoch over ``--n`` images (AdamW step, augmentation, batch ``--batch-size``),
* one input-gradient pass (forward + backward to the input, eval mode: what every attack does),
* PGD-10 (L∞, 2/255), DeepFool (L2, 50 steps cap),
* one epoch of the SGD UAP (Shafahi et al.) and one evaluation of ``x + v`` (the path that was many
  times slower when its inputs' memory format did not match the model's),

and prints the seconds, the ratio to plain fp32 and which policy ``auto`` picks on this machine
(:func:`medadv_lib.runtime.resolve_precision`).  A policy the CPU cannot run natively (bf16 without
AMX/AVX512-BF16) is still measured, so the table shows why ``auto`` avoided it.

Examples::

    python bench/bench_precision.py                       # FAST models and size on this machine
    python bench/bench_precision.py --models resnet18 --n 64 --image-size 64 --repeats 1
"""
from __future__ import annotations

import argparse
import time

import torch

from medadv_lib import course
from medadv_lib.attacks import deepfool, pgd
from medadv_lib.attacks.uap import sgd_uap, uap_budget
from medadv_lib.data import load_split
from medadv_lib.models import build_model, predict
from medadv_lib.runtime import Precision, get_device, resolve_precision, seed_everything
from medadv_lib.train import TrainConfig, fit


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


def policies(device: torch.device) -> dict[str, Precision]:
    """The policies compared: plain fp32 (NCHW), fp32 + channels_last, and bf16 + channels_last."""
    t = device.type
    out = {"fp32": Precision("fp32", t, False, "baseline"),
           "fp32+cl": Precision("fp32", t, True, "channels_last only")}
    if t == "cuda":
        out["auto"] = resolve_precision("auto", device)
    elif t == "cpu":
        out["bf16+cl"] = Precision("bf16", t, True, "bf16 autocast + channels_last")
    return out


TASKS = ("train", "grad", "pgd", "deepfool", "uap")


def bench_model(name, args, device, data):
    (x_tr, y_tr), (x_te, y_te) = data
    eps = 2 / 255
    uap_eps = uap_budget(0.02, "inf", stats=x_tr)
    rows = {}
    pols = policies(device)
    if args.policies:
        pols = {k: v for k, v in pols.items() if k in args.policies}
    nan = float("nan")
    for label, prec in pols.items():
        seed_everything(0)
        model = build_model(name).to(device).set_precision(prec)
        cfg = TrainConfig(model=name, image_size=args.image_size, epochs=1, batch_size=args.batch_size)
        row = dict.fromkeys(["train epoch", "grad pass", "PGD-10", "DeepFool", "SGD-UAP epoch", "UAP eval",
                             "_pgd_success", "_df_success", "_df_iters"], nan)
        if "train" in args.tasks:
            row["train epoch"], _ = timed(lambda: fit(model, (x_tr, y_tr), None, cfg, device, progress=False,
                                                      precision=prec), device, args.repeats)
        model.eval()
        xb, yb = x_te[:args.batch_size].to(device), y_te[:args.batch_size].to(device)

        def grad_pass():
            xa = xb.clone().requires_grad_(True)
            torch.autograd.grad(torch.nn.functional.cross_entropy(model(xa), yb), xa)
        if "grad" in args.tasks:
            grad_pass()
            row["grad pass"], _ = timed(grad_pass, device, max(3, args.repeats))
        xt, yt = x_te.to(device), y_te.to(device)
        if "pgd" in args.tasks:
            row["PGD-10"], r = timed(lambda: pgd(model, xt, yt, eps, steps=10, seed=0), device, args.repeats)
            row["_pgd_success"] = r.success_rate
        if "deepfool" in args.tasks:
            row["DeepFool"], r = timed(lambda: deepfool(model, xt, yt, steps=50), device, args.repeats)
            row["_df_success"], row["_df_iters"] = r.success_rate, float(r.iterations.float().mean())
        if "uap" in args.tasks:
            row["SGD-UAP epoch"], r = timed(lambda: sgd_uap(model, x_tr.to(device), eps=uap_eps, epochs=1,
                                                            batch_size=16), device, args.repeats)
            row["UAP eval"], _ = timed(lambda: predict(model, x_te, perturbation=r.v), device, max(3, args.repeats))
        rows[label] = row
    return rows


def main(argv=None):
    fast = course.settings(True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(fast.models))
    ap.add_argument("--image-size", type=int, default=fast.image_size)
    ap.add_argument("--n", type=int, default=256, help="training images for the epoch and the UAP epoch")
    ap.add_argument("--n-test", type=int, default=64, help="test images attacked by PGD and DeepFool")
    ap.add_argument("--batch-size", type=int, default=fast.batch_size)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", default=None)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--policies", nargs="+", default=None, help="subset of fp32, fp32+cl, bf16+cl (CPU) / auto (CUDA)")
    ap.add_argument("--epoch-images", type=int, default=None,
                    help="also print the training epoch extrapolated to this many images (e.g. 1628, the "
                         "training split) — for full-mode estimates measured on --n images")
    args = ap.parse_args(argv)
    device = get_device(args.device)
    auto = resolve_precision("auto", device)
    print(f"device={device} threads={torch.get_num_threads()} torch {torch.__version__}; "
          f"auto policy here: {auto} ({auto.reason})")
    data = (load_split("train", args.image_size, args.data, limit=args.n, seed=0),
            load_split("test", args.image_size, args.data, limit=args.n_test, seed=0))
    print(f"{args.n} training / {args.n_test} test images at {args.image_size}px, batch {args.batch_size}")
    for name in args.models:
        rows = bench_model(name, args, device, data)
        first = next(iter(rows.values()))
        tasks = [k for k in first if not k.startswith("_") and first[k] == first[k]]
        print(f"\n{name}: seconds (ratio = fp32 time / this policy's time; > 1 is faster)")
        print(f"{'task':<15}" + "".join(f"{p:>20}" for p in rows))
        for t in tasks:
            base = rows.get("fp32", first)[t]
            print(f"{t:<15}" + "".join(f"{r[t]:>10.2f} s {base / r[t]:>5.2f}×" for r in rows.values()))
        print(f"{'PGD success':<15}" + "".join(f"{r['_pgd_success']:>20.3f}" for r in rows.values()))
        print(f"{'DeepFool succ.':<15}" + "".join(f"{r['_df_success']:>20.3f}" for r in rows.values()))
        print(f"{'DeepFool iters':<15}" + "".join(f"{r['_df_iters']:>20.2f}" for r in rows.values()))
        if args.epoch_images:
            for p, r in rows.items():
                print(f"{name} {p}: training epoch of {args.epoch_images} images ≈ "
                      f"{r['train epoch'] * args.epoch_images / args.n:.0f} s (measured on {args.n})")
        for p, r in rows.items():
            if p != "fp32" and "fp32" in rows:
                print(f"{name} {p} / fp32 speed-up: training epoch {rows['fp32']['train epoch'] / r['train epoch']:.2f}×, "
                      f"attack passes (PGD-10) {rows['fp32']['PGD-10'] / r['PGD-10']:.2f}×")


if __name__ == "__main__":
    main()
