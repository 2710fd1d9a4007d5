"""The precision policy: detection and fallback, overrides, fp32 weights and logits, one `predict`,
seed reproducibility, and attack/UAP results that agree between bf16 and fp32 on a course checkpoint."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from medadv_lib import runtime
from medadv_lib.attacks import apply_uap, deepfool, pgd, sgd_uap, uap_budget
from medadv_lib.data import load_split
from medadv_lib.metrics import median_rho_adv
from medadv_lib.models import build_model, load_checkpoint, predict, save_checkpoint
from medadv_lib.runtime import Precision, resolve_precision
from medadv_lib.train import TrainConfig, fit

from conftest import SMALL_SIZE


@pytest.fixture
def fake_cpu(monkeypatch):
    """Pretend the CPU has (or lacks) native bf16: set its flags and torch's capability string."""
    def fake(flags, capability="AVX512"):
        monkeypatch.setattr(runtime, "_cpu_flags", lambda: set(flags))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        runtime._BF16_NATIVE.clear()
    yield fake
    runtime._BF16_NATIVE.clear()


def test_auto_falls_back_to_fp32_without_native_bf16(fake_cpu, monkeypatch):
    monkeypatch.delenv(runtime.PRECISION_ENV, raising=False)
    fake_cpu({"avx512f", "avx512_vnni"}, "AVX512")
    p = resolve_precision("auto", "cpu")
    assert p.name == "fp32" and p.dtype is None
    assert "no AMX-BF16/AVX512-BF16" in p.reason


def test_auto_picks_bf16_channels_last_with_amx(fake_cpu, monkeypatch):
    monkeypatch.delenv(runtime.PRECISION_ENV, raising=False)
    fake_cpu({"avx512f", "avx512_bf16", "amx_bf16"})
    p = resolve_precision(None, "cpu")
    assert (p.name, p.channels_last, p.dtype) == ("bf16", True, torch.bfloat16)
    assert "amx_bf16" in p.reason


def test_auto_stays_in_fp32_with_avx512_bf16_but_no_amx(fake_cpu, monkeypatch):
    """Native but slower (bench/bench_precision.py on such a CPU): auto keeps fp32 + channels_last and says why;
    an explicit bf16 runs natively, not emulated."""
    monkeypatch.delenv(runtime.PRECISION_ENV, raising=False)
    fake_cpu({"avx512f", "avx512_bf16"})
    p = resolve_precision(None, "cpu")
    assert (p.name, p.channels_last, p.dtype) == ("fp32", True, None)
    assert "avx512_bf16" in p.reason and "no AMX" in p.reason and "slower than fp32" in p.reason
    b = resolve_precision("bf16", "cpu")
    assert b.name == "bf16" and "emulated" not in b.reason


def test_overrides_and_bad_values(fake_cpu, monkeypatch):
    fake_cpu({"amx_bf16"})
    monkeypatch.setenv(runtime.PRECISION_ENV, "fp32")
    assert resolve_precision(None, "cpu").name == "fp32"
    assert resolve_precision("bf16", "cpu").name == "bf16"          # an argument beats the environment
    monkeypatch.setenv(runtime.PRECISION_ENV, "half")
    with pytest.raises(ValueError, match="MEDADV_PRECISION"):
        resolve_precision(None, "cpu")
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        resolve_precision("fp16", "cpu")


def test_explicit_bf16_without_native_support_is_honoured_and_says_so(fake_cpu):
    fake_cpu(set())
    p = resolve_precision("bf16", "cpu")
    assert p.name == "bf16" and "emulated" in p.reason


def test_setup_run_prints_device_precision_and_threads_once(capsys):
    dev, prec = runtime.setup_run("cpu", "fp32", seed=0)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "device: cpu" in out[0] and "precision: fp32" in out[0] and "threads" in out[0]
    assert dev.type == "cpu" and prec.name == "fp32"


def test_bf16_model_keeps_fp32_weights_and_returns_fp32_logits(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18").set_precision("bf16")
    x = torch.rand(2, 1, 32, 32)
    out = model(x)
    assert out.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    path = save_checkpoint(model, tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    assert all(t.dtype != torch.bfloat16 and t.is_contiguous() for t in ckpt["state_dict"].values())
    fp32, _ = load_checkpoint(path, precision="fp32")
    assert fp32.precision.name == "fp32" and all(p.dtype == torch.float32 for p in fp32.parameters())


def test_the_head_is_fp32_under_autocast():
    """The classifier head computes in fp32: the logits are not rounded to bf16's 8-bit mantissa."""
    model = build_model("resnet18").eval().set_precision("bf16")
    feats = {}
    model.net.fc.register_forward_hook(lambda m, i, o: feats.update(inp=i[0], out=o))
    model(torch.rand(4, 1, 32, 32))
    assert feats["out"].dtype == torch.float32
    ref = feats["inp"].float() @ model.net.fc.weight.t() + model.net.fc.bias
    assert torch.allclose(feats["out"], ref, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_predict_for_clean_and_uap_images_under_the_policy(small_model, real_batch, precision):
    model = small_model.set_precision(precision)
    try:
        x, _ = real_batch
        v = 0.05 * torch.randn(1, 1, SMALL_SIZE, SMALL_SIZE)
        with torch.no_grad():
            direct = model(apply_uap(x, v)).argmax(1)
        assert torch.equal(predict(model, x, batch_size=7, perturbation=v), direct)
        assert torch.equal(predict(model, x), model(x).argmax(1))
    finally:
        small_model.set_precision("fp32")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_training_is_seed_reproducible_under_both_policies(precision):
    x, y = load_split("train", 32, limit=48, seed=0)
    cfg = TrainConfig(model="resnet18", image_size=32, epochs=1, batch_size=16, seed=3)
    states = []
    for _ in range(2):
        torch.manual_seed(cfg.seed)
        model = build_model("resnet18")
        fit(model, (x, y), None, cfg, "cpu", progress=False, precision=precision)
        assert model.precision.name == precision
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


# Where the CPU has no native bf16, oneDNN emulates it ~20x slower than fp32 (measured on a 2-core AVX2
# EPYC: PGD-10 on 160 images at 64 px 202 s vs 11 s), so the agreement check runs on fewer images there.
AGREEMENT_IMAGES = {True: 160, False: 48}


@pytest.fixture(scope="module")
def agreement_set():
    """Class-stratified test X-rays at the small size: 160 where bf16 is native (±2 points is ~3 images),
    48 where it is emulated (the tolerance is then one image, see :func:`_images_apart`)."""
    return load_split("test", SMALL_SIZE, limit=AGREEMENT_IMAGES[runtime.cpu_bf16_native()[0]], seed=1)


def _images_apart(a: float, b: float, n: int) -> bool:
    """Do two rates over ``n`` images differ by at most 2 points (rounded down to whole images), or by one
    image where 2 points is less than one?"""
    return round(abs(a - b) * n) <= max(int(0.02 * n), 1)


def _under(model, precision, fn):
    model.set_precision(precision)
    try:
        return fn(model)
    finally:
        model.set_precision("fp32")


def test_pgd_deepfool_and_uap_agree_between_bf16_and_fp32(small_model, agreement_set):
    """The issue's tolerance: rates within ±2 points (one image on the emulated subset), DeepFool's median
    ρ_adv within ±10%."""
    x, y = agreement_set
    eps = uap_budget(0.02, "inf", stats=x)

    def measure(model):
        r_pgd = pgd(model, x, y, eps=1 / 255, steps=10, seed=0)
        r_df = deepfool(model, x, y, steps=50)
        ok = r_df.success & (r_df.iterations > 0)
        v = sgd_uap(model, x, eps=eps, epochs=3, batch_size=16, seed=0).v
        fooled = predict(model, x, perturbation=v) != predict(model, x)
        return {"pgd_robust_accuracy": float((r_pgd.pred == y).float().mean()),
                "deepfool_success": r_df.success_rate,
                "median_rho_adv": median_rho_adv(r_df.r, x, mask=ok)["overall"],
                "uap_fooling_rate": float(fooled.float().mean())}

    fp32 = _under(small_model, "fp32", measure)
    bf16 = _under(small_model, "bf16", measure)
    print(f"fp32 {fp32}\nbf16 {bf16}")
    for k in ("pgd_robust_accuracy", "deepfool_success", "uap_fooling_rate"):
        assert _images_apart(fp32[k], bf16[k], len(y)), (k, fp32, bf16)
    assert abs(bf16["median_rho_adv"] / fp32["median_rho_adv"] - 1) <= 0.10, (fp32, bf16)
    assert 0.0 < fp32["pgd_robust_accuracy"] < 1.0 or fp32["uap_fooling_rate"] > 0, fp32  # not a vacuous check


def test_policy_is_a_frozen_value():
    p = Precision("bf16", "cpu", True, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "fp32"
    assert str(p) == "bf16 + channels_last"


def test_precision_agreement_recomputes_the_worst_case_and_flags_a_disagreement(small_model, small_checkpoint,
                                                                                 tmp_path, monkeypatch):
    """Issue 22, item 7: notebook 04's worst case recomputed under another precision.  Recomputed under the
    precision it was recorded in, every image keeps its outcome (it is the same computation); a recorded row
    that the recomputation contradicts (outcomes flipped, an interval elsewhere) is flagged, not waved through."""
    import medadv_lib.course.pipelines as P
    from medadv_lib.metrics.defense import RobustnessSettings
    from medadv_lib.models import read_checkpoint
    info = {"checkpoint": small_checkpoint, "config": read_checkpoint(small_checkpoint)["meta"]["config"]}
    monkeypatch.setattr(P.config, "robustness_settings",
                        lambda fast: RobustnessSettings(eps=(1 / 255, 2 / 255), suite_eps=(1 / 255, 2 / 255), strong_steps=0,
                                                        apgd_steps=2, square_queries=0, deepfool_steps=0, l2_steps=0,
                                                        large_eps=None))
    study = {"baseline": (small_model, info)}
    before = small_model.precision
    same = P.precision_agreement(study, ["baseline"], True, before.name, output_dir=tmp_path)
    assert list(same.eps) == [1 / 255, 2 / 255] and same.agree.all()
    assert (same.flipped_up == 0).all() and (same.flipped_down == 0).all()
    assert (same.robust_accuracy == same.robust_accuracy_new).all()
    assert small_model.precision == before                    # switched back

    recorded = P.course_robustness(small_model, info, "baseline", True, small_model, info, tmp_path)   # the cached rows
    flip = {"0": "1", "1": "0"}
    wrong = recorded.assign(outcome_attacked=["".join(flip[c] for c in b) for b in recorded.outcome_attacked],
                            defense_rate_lo=1.5, defense_rate_hi=2.0)
    monkeypatch.setattr(P, "course_robustness", lambda *a, **k: wrong)
    bad = P.precision_agreement(study, ["baseline"], True, before.name, output_dir=tmp_path)
    n = len(wrong.outcome_attacked.iloc[0])
    assert not bad.agree.any() and ((bad.flipped_up + bad.flipped_down) == n).all()
