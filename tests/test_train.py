"""Training loop, evaluation and the load-or-train checkpoint cache."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from medadv_lib import course
from medadv_lib.metrics import classification_report
from medadv_lib.models import build_model, load_checkpoint
from medadv_lib.runtime import get_device, seed_everything

from conftest import SMALL_CONFIG
from medadv_lib.models import predict
from medadv_lib.data import load_split
from medadv_lib.train import TrainConfig, checkpoint_path, data_fingerprint, evaluate, fit, load_or_train

TINY = TrainConfig(model="resnet18", image_size=32, epochs=2, train_limit=96, batch_size=32, seed=0)


def test_classification_report_by_hand():
    r = classification_report([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class"]["normal"]["sensitivity"] == pytest.approx(0.5)
    assert r["per_class"]["normal"]["ppv"] == pytest.approx(0.5)
    assert r["per_class"]["pneumonia"]["ppv"] == pytest.approx(0.5)
    assert r["per_class"]["COVID-19"]["sensitivity"] == pytest.approx(2 / 3)
    assert r["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_device_helper_prefers_available_and_rejects_missing():
    assert get_device().type in ("cuda", "mps", "cpu")
    assert get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device("cuda")


def test_fit_learns_and_is_reproducible_on_cpu(real_batch):
    x, y = real_batch
    cfg = dataclasses.replace(TINY, image_size=64, epochs=3, augment=False, batch_size=16, lr=3e-3)
    outs = []
    for _ in range(2):
        seed_everything(0)
        m = build_model("resnet18")
        hist = fit(m, (x, y), (x, y), cfg, device="cpu", progress=False)
        outs.append(predict(m, x, return_logits=True))
    assert len(hist) == 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert torch.equal(outs[0], outs[1])


def test_load_or_train_caches_by_configuration(tmp_path):
    m1, info1 = load_or_train(TINY, out_dir=tmp_path, device="cpu", progress=False)
    assert not info1["cached"] and info1["test"]["n"] == 348
    m2, info2 = load_or_train(TINY, out_dir=tmp_path, device="cpu", progress=False)
    assert info2["cached"] and info2["checkpoint"] == info1["checkpoint"]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    other = dataclasses.replace(TINY, seed=1)
    assert other.filename() != TINY.filename()
    model, meta = load_checkpoint(info1["checkpoint"])
    assert meta["config"] == dataclasses.asdict(TINY)
    assert evaluate(model, *_test32())["accuracy"] == pytest.approx(info1["test"]["accuracy"])


def _test32():
    from medadv_lib.data import load_split
    return load_split("test", 32)


def test_course_uap_settings_defaults_and_overrides():
    s = course.uap_settings(True)
    assert (s.train, s.epochs, s.batch_size, s.holdout) == (course.UAP_FAST.train, course.UAP_FAST.epochs,
                                                            course.UAP_FAST.batch_size, course.UAP_FAST.holdout)
    assert s.sgd == {"method": "sgd", "epochs": s.epochs, "batch_size": s.batch_size, "eval_every": s.eval_every,
                     "patience": s.patience, "lr_ratio": s.lr_ratio}
    assert s.patience >= 1                                            # the course's UAP stops on a plateau
    assert course.uap_settings(False).train is None                  # full study: every image not held out
    o = course.uap_settings(True, train=64, epochs=7, batch_size=8, holdout=16)
    assert (o.train, o.sgd["epochs"], o.sgd["batch_size"], o.holdout) == (64, 7, 8, 16)
    for bad in ({"train": 0}, {"holdout": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            course.uap_settings(True, **bad)


def test_the_uap_build_and_holdout_images_are_disjoint_stratified_training_images():
    x, y = load_split("train", 32)
    xb, yb, xh = course.uap_build_images(True, 32, train=60, holdout=30, seed=3)
    assert (len(xb), len(yb), len(xh)) == (60, 60, 30)
    rows = {t.numpy().tobytes(): i for i, t in enumerate(x)}
    ib, ih = {rows[t.numpy().tobytes()] for t in xb}, {rows[t.numpy().tobytes()] for t in xh}
    assert len(ib) == 60 and len(ih) == 30 and not ib & ih
    assert torch.equal(y[sorted(ib)], yb) and set(yb.tolist()) == set(y.tolist())
    again = course.uap_build_images(True, 32, train=60, holdout=30, seed=3)
    assert torch.equal(again[0], xb) and torch.equal(again[2], xh)
    xa, _, _ = course.uap_build_images(False, 32, holdout=30, seed=3)
    assert len(xa) == len(y) - 30                                     # full mode: every image not held out
    with pytest.raises(ValueError, match="holdout"):
        course.uap_build_images(True, 32, holdout=len(y))


def test_course_settings_are_shared_between_notebooks():
    a = course.model_config("resnet18", fast=True)
    b = course.model_config("resnet18", fast=True)
    assert a == b and a.image_size == course.FAST.image_size
    assert course.model_config("vgg16", fast=False).image_size == 224


def test_unknown_optimizer_is_rejected(real_batch):
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit(build_model("resnet18"), real_batch, None, dataclasses.replace(TINY, optimizer="lion"),
            device="cpu", progress=False)


def test_unreadable_cache_entry_is_retrained_not_fatal(tmp_path):
    path = checkpoint_path(TINY, tmp_path, device="cpu")
    path.write_bytes(b"garbage from an interrupted copy")
    with pytest.warns(UserWarning, match="ignoring cached checkpoint"):
        _, info = load_or_train(TINY, out_dir=tmp_path, device="cpu", progress=False)
    assert not info["cached"] and load_checkpoint(path)[1]["config"]["seed"] == TINY.seed


def test_available_cpus_reads_cgroup_quota(tmp_path):
    from medadv_lib.runtime import available_cpus
    host = available_cpus(tmp_path)                     # no cgroup files: affinity only
    assert 1 <= host <= (os.cpu_count() or 1)
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # cgroup v2: one CPU
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")     # no quota
    assert available_cpus(tmp_path) == host
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")       # cgroup v1: half a CPU rounds up to one
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == 1


def test_limit_cpu_threads_only_lowers():
    from medadv_lib.runtime import limit_cpu_threads
    n = torch.get_num_threads()
    try:
        assert limit_cpu_threads(1) == 1
        assert limit_cpu_threads(64) == 1          # never raises the count
    finally:
        torch.set_num_threads(n)


def test_a_zero_perturbation_hook_gives_the_same_weights(real_batch):
    """One loop for clean training, UAP fine-tuning and adversarial training: a hook that adds
    nothing must leave training bit-identical (seeded, CPU)."""
    x, y = real_batch
    cfg = dataclasses.replace(TINY, image_size=64, epochs=1, batch_size=16)
    calls = []

    def zero(model, xb, yb):
        calls.append(len(xb))
        return xb + torch.zeros_like(xb)
    states = []
    for hook in (None, zero):
        seed_everything(0)
        m = build_model("resnet18")
        fit(m, (x, y), None, cfg, device="cpu", progress=False, perturb=hook)
        states.append(m.state_dict())
    assert sum(calls) == len(x)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_fine_tuning_from_a_checkpoint_has_its_own_key_and_starts_from_its_weights(tmp_path, small_checkpoint):
    cfg = dataclasses.replace(TINY, model=SMALL_CONFIG.model, image_size=64, epochs=1, train_limit=32,
                              init_from=small_checkpoint, perturbation={"kind": "test"})
    assert cfg.key() != dataclasses.replace(cfg, init_from=None).key() != dataclasses.replace(cfg, perturbation=None).key()
    seen = {}

    def spy(model, xb, yb):
        seen.setdefault("fc", model.net.fc.weight.detach().clone())
        return xb
    model, info = load_or_train(cfg, out_dir=tmp_path, device="cpu", progress=False, perturb=spy)
    start, _ = load_checkpoint(small_checkpoint)
    assert torch.equal(seen["fc"], start.net.fc.weight)          # the first batch saw the checkpoint's weights
    assert not info["cached"] and load_or_train(cfg, out_dir=tmp_path, device="cpu", progress=False,
                                                perturb=spy)[1]["cached"]


def test_a_perturbation_hook_without_a_description_is_refused(tmp_path):
    with pytest.raises(ValueError, match="config.perturbation"):
        load_or_train(TINY, out_dir=tmp_path, device="cpu", progress=False, perturb=lambda m, x, y: x)


def test_a_fine_tuned_checkpoint_is_reused_whatever_the_path_spelling_of_init_from(tmp_path, small_checkpoint):
    """Notebooks say ``../runs/x.pt``, the CLI ``runs/x.pt``, a copied runs folder another path: the
    content of ``init_from`` (in the file name's hash) decides, not its spelling."""
    import shutil
    copy = tmp_path / "elsewhere" / Path(small_checkpoint).name
    copy.parent.mkdir()
    shutil.copy(small_checkpoint, copy)
    cfg = dataclasses.replace(TINY, model=SMALL_CONFIG.model, image_size=64, epochs=1, train_limit=32,
                              init_from=str(small_checkpoint))
    _, first = load_or_train(cfg, out_dir=tmp_path, device="cpu", progress=False)
    _, again = load_or_train(dataclasses.replace(cfg, init_from=str(copy)), out_dir=tmp_path, device="cpu",
                             progress=False)
    assert not first["cached"] and again["cached"] and again["checkpoint"] == first["checkpoint"]


def test_history_lr_is_the_mean_learning_rate_of_the_epoch(real_batch):
    """A one-epoch cosine fine-tune used to report lr=0 (the rate after its last step)."""
    x, y = real_batch
    cfg = dataclasses.replace(TINY, image_size=64, epochs=1, batch_size=16, lr=1e-3, warmup_epochs=0)
    hist = fit(build_model("resnet18"), (x, y), None, cfg, device="cpu", progress=False)
    assert hist[0]["lr"] == pytest.approx(1e-3 * (1.0 + 0.5) / 2)      # two steps: cosine at 0 and at 1/2
