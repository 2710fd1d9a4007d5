"""Benchmark medadv's UAPs (iterative and SGD) against ART's UniversalPerturbation.

Same model, same images, same budget ``eps = zeta · mean training-image norm``, same FGSM
inner step and number of passes.  Prints seconds, passes, fooling rates (vs clean predictions,
on the images the UAP was built on and on held-out test images) and the time ratio
ART / ours side by side, plus a random control of the same norm.

Goal (issue #4): the iterative UAP ≥ 20× faster than ART at an equal or better fooling rate.

Two rows for our iterative UAP: the default stops after a pass that changed nothing (all later
passes would repeat it, see ``iterative_uap``'s docstring), "all passes" runs every pass, as ART
does, so its ratio is the per-pass speed-up of batching alone.

Examples::

    python bench/bench_uap.py --n 16 --max-iter 3 --image-size 64 --device cpu        # quick, CPU
    python bench/bench_uap.py --checkpoint runs/resnet18/model.pt --image-size 224 --n 256 --max-iter 15
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

from medadv_lib.attacks.uap import iterative_uap, random_uap, sgd_uap, uap_budget
from medadv_lib.models import predict
from medadv_lib.metrics.universal import fooling_rate
from medadv_lib.models import build_model, load_checkpoint
from medadv_lib.runtime import get_device, seed_everything


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_model(args, device):
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint, device=device)
        return model, f"checkpoint {args.checkpoint}"
    if args.train_small:
        from medadv_lib.train import TrainConfig, load_or_train
        cfg = TrainConfig(model=args.model, image_size=args.image_size, epochs=3, train_limit=480,
                          batch_size=32, seed=0)
        model, info = load_or_train(cfg, out_dir=args.cache_dir, data_dir=args.data_dir, device=device,
                                    progress=False)
        how = "cached" if info.get("cached") else "trained"
        return model.eval(), f"small {args.model} ({how}: {info['checkpoint']})"
    print("note: random weights (pass --checkpoint or --train-small for a trained course model)")
    return build_model(args.model).to(device).eval(), "random weights"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18", help="architecture (with --train-small or random weights)")
    p.add_argument("--checkpoint", default=None, help="a medadv checkpoint to attack")
    p.add_argument("--train-small", action="store_true",
                   help="train (or load from --cache-dir) the tests' small model: 3 epochs on 480 images")
    p.add_argument("--cache-dir", default=".pytest_cache/d/medadv-models",
                   help="where --train-small caches its model (default: the test suite's cache)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--n", type=int, default=32, help="training images the UAP is built on")
    p.add_argument("--n-test", type=int, default=64, help="held-out test images to evaluate on (0: none)")
    p.add_argument("--zeta", type=float, default=0.02, help="norm ratio ζ (Hirano et al.: 0.02)")
    p.add_argument("--norm", default="inf", choices=["inf", "2"])
    p.add_argument("--step", type=float, default=0.001, help="FGSM inner step (Hirano et al.: 0.001)")
    p.add_argument("--max-iter", type=int, default=15, help="passes over the images (Hirano et al.: 15)")
    p.add_argument("--batch-size", type=int, default=64, help="our iterative UAP's mini-batch")
    p.add_argument("--epochs", type=int, default=10, help="SGD UAP epochs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default=None, help="precision policy of the model: auto, fp32, bf16 (default "
                   "$MEDADV_PRECISION or auto); the peers call the same model, so they run under it too")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], choices=["art", "sgd", "full"],
                   help="rows to leave out (art: ART's per-sample loop, the slow one)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    device = get_device(args.device)
    model, source = load_model(args, device)
    model.set_precision(args.precision)
    print(f"precision policy: {model.precision} ({model.precision.reason})")
    from medadv_lib.data import image_norm_stats, load_split
    x, y = load_split("train", args.image_size, args.data_dir, limit=args.n, seed=args.seed)
    x, y = x.to(device), y.to(device)
    xt = yt = None
    if args.n_test:
        xt, yt = load_split("test", args.image_size, args.data_dir, limit=args.n_test, seed=args.seed)
        xt, yt = xt.to(device), yt.to(device)
    stats = image_norm_stats(args.image_size, args.data_dir)
    eps = uap_budget(args.zeta, args.norm, stats)
    clean = predict(model, x)
    print(f"device={device} model={getattr(model, 'arch', args.model)} ({source}) threads={torch.get_num_threads()}")
    nl = "L∞" if args.norm == "inf" else "L2"
    print(f"images={len(x)} train (+{0 if xt is None else len(xt)} test) at {args.image_size}px, "
          f"clean acc={float((clean == y.cpu()).float().mean()):.3f}; zeta={args.zeta} norm={nl} → eps={eps:.5g} "
          f"(mean {nl} norm {eps / args.zeta:.4g} over {stats['n']} training images); "
          f"FGSM step={args.step}, max_iter={args.max_iter}")

    rows = []

    def add(name, secs, passes, v, cpu=float("nan")):
        fr = fooling_rate(model, x, v)
        fr_lab = fooling_rate(model, x, v, reference="labels", y=y)
        fr_test = fooling_rate(model, xt, v) if xt is not None else float("nan")
        vn = float(v.abs().max()) if args.norm == "inf" else float(v.norm())
        rows.append(dict(name=name, secs=secs, cpu=cpu, passes=passes, fr=fr, fr_lab=fr_lab, fr_test=fr_test, vn=vn))

    def clock():
        _sync(device)
        return time.perf_counter(), time.process_time()

    def since(t):
        _sync(device)
        return time.perf_counter() - t[0], time.process_time() - t[1]

    # warm-up (first-call allocations, lazy init) on a few images
    iterative_uap(model, x[:4], eps=eps, norm=args.norm, step=args.step, max_iter=1)

    def run_ours(**kw):
        t = clock()
        res = iterative_uap(model, x, eps=eps, norm=args.norm, step=args.step, max_iter=args.max_iter,
                            batch_size=args.batch_size, seed=args.seed, **kw)
        return since(t), res

    (secs, cpu), res = run_ours()
    add(f"ours iterative (stop: {res.stop_reason})", secs, res.passes, res.v, cpu)
    if "full" not in args.skip:
        (secs, cpu), res = run_ours(stop_stalled=False)
        add("ours iterative (all passes)", secs, res.passes, res.v, cpu)
    if "sgd" not in args.skip:
        t = clock()
        res = sgd_uap(model, x, eps=eps, norm=args.norm, epochs=args.epochs, seed=args.seed)
        secs, cpu = since(t)
        add(f"ours SGD ({args.epochs} epochs)", secs, res.passes, res.v, cpu)
    add("random control (uniform, on the sphere)", 0.0, 0, random_uap(x, eps, args.norm, seed=args.seed))

    if "art" not in args.skip:
        from art.attacks.evasion import UniversalPerturbation
        from art.estimators.classification import PyTorchClassifier
        clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=model.num_classes, clip_values=(0.0, 1.0),
                                device_type="gpu" if device.type == "cuda" else "cpu")
        random.seed(args.seed)
        np.random.seed(args.seed)
        art = UniversalPerturbation(clf, attacker="fgsm",
                                    attacker_params={"eps": args.step, "eps_step": args.step, "targeted": False},
                                    delta=1e-6, max_iter=args.max_iter, eps=eps,
                                    norm=np.inf if args.norm == "inf" else 2, batch_size=args.batch_size,
                                    verbose=False)
        t = clock()
        art.generate(x.cpu().numpy())
        secs, cpu = since(t)
        v_art = torch.from_numpy(art.noise).float().to(device)
        add("ART UniversalPerturbation (fgsm)", secs, args.max_iter if not art.converged else -1, v_art, cpu)

    art_row = next((r for r in rows if r["name"].startswith("ART")), None)
    if art_row and "sgd" not in args.skip and art_row["fr"] > 0:
        # the same stopping rule as ART's `delta`: stop once the build images' fooling rate reaches ART's
        t = clock()
        res = sgd_uap(model, x, eps=eps, norm=args.norm, epochs=args.epochs, seed=args.seed,
                      delta=1.0 - art_row["fr"] + 1e-9)
        secs, cpu = since(t)
        add(f"ours SGD, stop at ART's rate ({res.passes} ep.)", secs, res.passes, res.v, cpu)

    # what batching alone can buy here: one FGSM-step pass (forward + input gradient) over the
    # images, batched as ours vs one image at a time as ART's per-sample loop
    def fb(xb):
        xa = xb.clone().requires_grad_(True)
        torch.autograd.grad(model(xa).logsumexp(1).sum(), xa)

    fb(x[:1])
    t = clock()
    for i in range(0, len(x), args.batch_size):
        fb(x[i:i + args.batch_size])
    t_batched = since(t)[0]
    t = clock()
    for i in range(len(x)):
        fb(x[i:i + 1])
    t_single = since(t)[0]
    print(f"\n{'method':<42} {'wall s':>8} {'CPU s':>8} {'passes':>6} {'FR clean':>9} {'FR labels':>9} "
          f"{'FR test':>8} {'‖v‖' + nl:>8} {'ART/ours wall':>14} {'CPU':>7}")
    for r in rows:
        if art_row and r is not art_row and r["secs"] > 0:
            ratio = f"{art_row['secs'] / r['secs']:13.1f}× {art_row['cpu'] / r['cpu']:6.1f}×"
        else:
            ratio = f"{'-':>14} {'-':>7}"
        passes = "-" if r["passes"] <= 0 else str(r["passes"])
        print(f"{r['name']:<42} {r['secs']:8.2f} {r['cpu']:8.2f} {passes:>6} {r['fr']:9.3f} {r['fr_lab']:9.3f} "
              f"{r['fr_test']:8.3f} {r['vn']:8.4f} {ratio}")
    if art_row:
        ours = rows[0]
        print(f"\niterative UAP: ART / ours time = {art_row['secs'] / ours['secs']:.1f}× wall, "
              f"{art_row['cpu'] / ours['cpu']:.1f}× CPU (goal ≥ 20×); fooling rate "
              f"{ours['fr']:.3f} vs ART {art_row['fr']:.3f} "
              f"({'equal or better' if ours['fr'] >= art_row['fr'] else 'WORSE'})")
    print(f"batching gain on this device: a forward+backward over the {len(x)} images one at a time takes "
          f"{t_single / t_batched:.1f}× as long as in batches of {args.batch_size} (the most batching alone buys)")
    print("CPU s: process CPU time (all threads); on a shared machine it tracks the work better than wall time.")
    print("FR clean: fooling rate vs the clean predictions (ART's definition) on the UAP's own images; "
          "FR labels: vs the true labels (Hirano et al.'s scripts); FR test: vs clean predictions, held-out images.")


if __name__ == "__main__":
    main()
