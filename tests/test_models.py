"""Model construction, pixel normalisation inside the model, checkpoints."""
from __future__ import annotations

import pytest
import torch

from medadv_lib.models import ARCHITECTURES, build_model, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16", "densenet121", "mobilenet_v3_small"])
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
