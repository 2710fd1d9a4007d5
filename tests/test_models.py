"""Model construction, pixel normalisation inside the model, checkpoints."""
from __future__ import annotations

import pytest
import torch

from medadv_lib.models import ARCHITECTURES, build_model, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("name", ["resnet18", "resnet18_w0.5", "resnet50", "vgg16", "densenet121", "mobilenet_v3_small"])
def test_every_course_model_takes_one_channel_unit_range(name):
    m = build_model(name).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 3)
    assert m.arch == name and m.num_classes == 3
    assert type(m.net.modules().__next__()) is not None
    first_conv = next(mod for mod in m.net.modules() if isinstance(mod, torch.nn.Conv2d))
    assert first_conv.in_channels == 1


def test_normalisation_is_the_first_layer():
    m = build_model("resnet18", mean=0.4, std=0.2).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m(x), m.net((x - 0.4) / 0.2))


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'alexnet'.*resnet18"):
        build_model("alexnet")


def test_checkpoint_round_trip_and_architecture_mismatch(tmp_path):
    m = build_model("resnet18")
    p = save_checkpoint(m, tmp_path / "m.pt", note="hi")
    assert not list(tmp_path.glob(".*tmp"))           # nothing half-written left
    loaded, meta = load_checkpoint(p)
    assert meta == {"note": "hi"} and loaded.arch == "resnet18"
    for a, b in zip(m.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="holds a resnet18.*model is a mobilenet_v3_small"):
        load_checkpoint(p, build_model("mobilenet_v3_small"))


def test_bad_checkpoints_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found.*medadv train"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(junk)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a medadv checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_known_architectures_cover_the_issue_list():
    assert {"resnet18", "resnet50", "vgg16", "densenet121", "mobilenet_v3_small"} <= set(ARCHITECTURES)


def test_a_modified_spec_round_trips_with_weights_only(tmp_path):
    """A checkpoint records the model spec (architecture + modifications) and load_checkpoint
    rebuilds the exact module from it, never from a pickled module."""
    from torch import nn

    from medadv_lib.models import MODIFICATIONS, apply_modification, register_modification

    class Scale(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(1, c, 1, 1))

        def forward(self, x):
            return x * self.gain

    @register_modification("test_scale_after_layer1")
    def _scale(model, channels):
        model.net.layer1 = nn.Sequential(model.net.layer1, Scale(channels))

    try:
        torch.manual_seed(0)
        model = apply_modification(build_model("resnet18"), "test_scale_after_layer1", channels=64)
        with torch.no_grad():
            model.net.layer1[1].gain.fill_(1.5)
        path = save_checkpoint(model, tmp_path / "mod.pt")
        loaded, _ = load_checkpoint(path, precision="fp32")
        assert loaded.spec()["modifications"] == [{"name": "test_scale_after_layer1", "params": {"channels": 64}}]
        x = torch.rand(2, 1, 32, 32)
        model.set_precision("fp32").eval()
        assert torch.equal(loaded(x), model(x))
        assert float(loaded.net.layer1[1].gain.detach().mean()) == 1.5
    finally:
        MODIFICATIONS.pop("test_scale_after_layer1", None)


def test_the_half_width_resnet18_is_torchvisions_resnet18_with_half_the_channels():
    from torchvision.models.resnet import BasicBlock
    full, half = build_model("resnet18"), build_model("resnet18_w0.5")
    blocks = [m for m in half.net.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8 == len([m for m in full.net.modules() if isinstance(m, BasicBlock)])
    assert [b.conv2.out_channels for b in blocks] == [32, 32, 64, 64, 128, 128, 256, 256]
    assert half.net.conv1.in_channels == 1 and half.net.conv1.out_channels == 32 and half.net.fc.in_features == 256
    n_full, n_half = (sum(p.numel() for p in m.parameters()) for m in (full, half))
    assert 0.2 < n_half / n_full < 0.3                     # channels halved: about a quarter of the weights
    with torch.no_grad():
        assert half.eval()(torch.rand(2, 1, 64, 64)).shape == (2, 3)


def test_narrow_resnet_names_are_checked():
    from medadv_lib.models.narrow import narrow_resnet_name, parse_narrow_resnet_name
    assert parse_narrow_resnet_name("resnet18_w0.5") == 0.5 and parse_narrow_resnet_name("resnet18") is None
    assert narrow_resnet_name(0.5) == "resnet18_w0.5" and narrow_resnet_name(1) == "resnet18"
    with pytest.raises(ValueError, match=r"width of resnet18_w<width> must be in \(0, 1\)"):
        build_model("resnet18_w1.5")
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("resnet18_w0.5", weights="DEFAULT")


def test_the_half_width_resnet18_takes_attention_and_channel_pruning():
    from medadv_lib.defenses import add_attention, prune_structured
    m = add_attention(prune_structured(build_model("resnet18_w0.5"), 0.3, 64), "cbam").eval()
    with torch.no_grad():
        assert m(torch.rand(2, 1, 64, 64)).shape == (2, 3)
    assert [s["name"] for s in m.modifications][-1] == "attention"
