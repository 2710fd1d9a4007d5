"""Grad-CAM (captum) on the course models: shapes, range, the precision policy, and a model built to look
at one region only, whose maps must put their mass there (so a flipped, transposed or target-blind map
fails)."""
from __future__ import annotations

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from medadv_lib import LABELS  # noqa: E402
from medadv_lib.data.explore import region_mask  # noqa: E402
from medadv_lib.models import MedModel, build_model  # noqa: E402
from medadv_lib.viz.explain import (default_gradcam_layer, gradcam, gradcam_by_region, gradcam_table,  # noqa: E402
                                   mean_abs_by_class, perturbation_by_region, plot_gradcam, plot_mean_abs)

SIZE = 64


def _quadrant(where: str, size: int = SIZE) -> torch.Tensor:
    m = torch.zeros(size, size, dtype=torch.bool)
    h = size // 2
    rows, cols = {"top-left": (slice(0, h), slice(0, h)), "bottom-right": (slice(h, None), slice(h, None))}[where]
    m[rows, cols] = True
    return m


class _RegionNet(nn.Module):
    """Class c's score is the mean of the image inside ``masks[c]`` (one channel per class), read through
    a strided ``layer4`` so that Grad-CAM's map is coarser than the image and must be upsampled."""

    def __init__(self, masks):
        super().__init__()
        self.register_buffer("masks", torch.stack([m.float() for m in masks])[None])   # 1×K×H×W
        k = len(masks)
        self.layer4 = nn.Conv2d(k, k, 2, stride=2, groups=k, bias=False)
        self.fc = nn.Linear(k, k, bias=False)
        with torch.no_grad():
            self.layer4.weight.fill_(0.25)
            self.fc.weight.copy_(torch.eye(k))

    def forward(self, x):
        a = self.layer4(x * self.masks)
        return self.fc(a.mean((2, 3)))


def _region_model(masks) -> MedModel:
    return MedModel("region-probe", _RegionNet(masks), len(masks), 1, [0.0], [1.0]).eval()


def _corner_masks():
    """normal ← a top-left 8×8 corner (inside the border frame); pneumonia ← bottom-right 8×8;
    COVID-19 ← the central 16×16 square."""
    tl, br, c = (torch.zeros(SIZE, SIZE, dtype=torch.bool) for _ in range(3))
    tl[:8, :8] = True
    br[-8:, -8:] = True
    c[24:40, 24:40] = True
    return [tl, br, c]


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.2


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_maps_have_the_image_size_and_lie_in_0_1(name, images):
    torch.manual_seed(0)
    model = build_model(name).train()            # train mode on purpose: gradcam must not leave it in eval
    maps = gradcam(model, images)
    assert maps.shape == (len(images), SIZE, SIZE) and maps.dtype == torch.float32 and maps.device.type == "cpu"
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    peaks = maps.flatten(1).amax(1)
    assert all(p == pytest.approx(1.0) or p == 0 for p in peaks.tolist())     # each map scaled by its own max
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(maps, gradcam(model, images))                          # deterministic


def test_default_layer_is_the_last_convolutional_block():
    r = build_model("resnet18")
    assert default_gradcam_layer(r) is r.net.layer4
    m = build_model("mobilenet_v3_small")
    assert default_gradcam_layer(m) is m.net.features[-1]
    with pytest.raises(ValueError, match="no convolutional layer"):
        default_gradcam_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))


def test_bf16_policy_gives_the_fp32_map_and_is_restored(images):
    torch.manual_seed(0)
    model = build_model("resnet18").eval()
    ref = gradcam(model, images)
    model.set_precision("bf16")                  # emulated where the CPU lacks native bf16: slow but honoured
    policy = model.precision
    maps = gradcam(model, images, target=ref.new_zeros(len(images), dtype=torch.long) + 1)
    assert model.precision is policy
    assert torch.allclose(maps, gradcam(model.set_precision("fp32"), images, target=1), atol=1e-4)
    model.set_precision("bf16")
    native = gradcam(model, images, target=1, fp32=False)                     # under autocast: close, not equal
    assert native.dtype == torch.float32 and float(native.min()) >= 0 and float(native.max()) <= 1
    assert float((native - maps).abs().mean()) < 0.05


@pytest.mark.parametrize("target, where", [(0, "top-left"), ("pneumonia", "bottom-right")])
def test_a_model_that_looks_at_one_corner_gets_its_mass_there(images, target, where):
    model = _region_model(_corner_masks())
    maps = gradcam(model, images, target=target)
    inside = _quadrant(where)
    share = maps[:, inside].sum(1) / maps.flatten(1).sum(1)
    assert (share > 0.95).all(), share
    regions = gradcam_by_region(maps)
    assert regions.loc["all", "border"] > 0.95                                # both corners lie in the frame


def test_the_predicted_class_is_explained_by_default(images):
    model = _region_model(_corner_masks())
    x = images.clone()
    x[:2, :, :8, :8] = 1.0                       # images 0, 1: bright top-left → "normal"
    x[:2, :, -8:, -8:] = 0.0
    x[:2, :, 24:40, 24:40] = 0.0
    x[2:, :, :8, :8] = 0.0                       # images 2, 3: bright centre → "COVID-19"
    x[2:, :, -8:, -8:] = 0.0
    x[2:, :, 24:40, 24:40] = 1.0
    assert model(x).argmax(1).tolist() == [0, 0, 2, 2]
    maps = gradcam(model, x)
    tl = _quadrant("top-left")
    assert (maps[:2, tl].sum(1) / maps[:2].flatten(1).sum(1) > 0.95).all()
    table = gradcam_by_region(maps, torch.tensor([0, 0, 2, 2]))
    assert table.loc["normal", "border"] > 0.95 and table.loc["COVID-19", "border"] < 0.05
    assert table.loc["normal", "border_lift"] > 2 and "pneumonia" not in table.index
    assert torch.equal(maps, gradcam(model, x, target=torch.tensor([0, 0, 2, 2])))


def test_targets_are_checked(images):
    model = _region_model(_corner_masks())
    by_name = gradcam(model, images, target="COVID-19")
    assert torch.equal(by_name, gradcam(model, images, target=LABELS.index("COVID-19")))
    with pytest.raises(ValueError, match="target"):
        gradcam(model, images, target=[0, 1])
    with pytest.raises(ValueError, match="unknown target class"):
        gradcam(model, images, target="covid")
    with pytest.raises(ValueError, match="outside"):
        gradcam(model, images, target=3)
    with pytest.raises(ValueError, match="N×C×H×W"):
        gradcam(model, images[0])


def test_region_shares_of_hand_made_maps():
    border = region_mask(SIZE, "border", 0.125)
    uniform = torch.ones(3, SIZE, SIZE)
    t = gradcam_by_region(uniform)
    assert t.loc["all", "border"] == pytest.approx(0.4375) and t.loc["all", "border_area"] == pytest.approx(0.4375)
    assert t.loc["all", "border_lift"] == pytest.approx(1.0) and t.loc["all", "n"] == 3
    maps = torch.stack([border.float(), (~border).float(), torch.zeros(SIZE, SIZE)])
    t = gradcam_by_region(maps, torch.tensor([0, 1, 2]))
    assert t.loc["normal", "border"] == pytest.approx(1.0) and t.loc["pneumonia", "center"] == pytest.approx(1.0)
    assert t.loc["all", "n"] == 2 and "COVID-19" not in t.index              # an all-zero map has no share
    assert (t.border + t.center).tolist() == pytest.approx([1.0] * len(t))
    with pytest.raises(ValueError, match="non-negative"):
        gradcam_by_region(-uniform)


def test_plot_gradcam_one_panel_per_image_and_a_row_per_map_set(images):
    import matplotlib.pyplot as plt
    maps = torch.rand(4, SIZE, SIZE)
    fig = plot_gradcam(images, maps, y=[0, 1, 2, 0], pred=[0, 1, 1, 0], ncols=2)
    panels = [a for a in fig.axes if a.images]
    assert len(panels) == 4 and panels[0].get_title() == "true normal\npred. normal"
    plt.close(fig)
    fig = plot_gradcam({"clean": images, "UAP": images.flip(-1)}, {"clean": maps, "UAP": maps}, y=[0, 1, 2, 0],
                       pred={"clean": [0, 1, 2, 0], "UAP": [2, 2, 2, 2]}, ncols=3)
    panels = [a for a in fig.axes if a.images]
    assert len(panels) == 6 and panels[3].get_title().startswith("UAP\n") and "pred. COVID-19" in panels[3].get_title()
    plt.close(fig)


def test_gradcam_table_stacks_each_models_region_shares(images):
    torch.manual_seed(0)
    models = {"a": _region_model(_corner_masks()), "b": build_model("resnet18").eval()}
    y = torch.tensor([0, 1, 2, 0])
    maps, table = gradcam_table(models, images, y)
    assert set(maps) == {"a", "b"} and maps["a"].shape == (4, SIZE, SIZE)
    assert list(table.index.get_level_values("model").unique()) == ["a", "b"]
    assert table.loc[("a", "all"), "n"] == 4 and table.loc[("a", "normal"), "n"] == 2
    assert table.loc["a"].equals(gradcam_by_region(maps["a"], y))


def test_perturbation_by_region_finds_the_corner_that_holds_the_perturbation():
    delta = torch.zeros(6, 1, SIZE, SIZE)
    delta[:3, 0, :4, :4] = 0.01                      # class 0: all of it in the top-left corner (and the frame)
    delta[3:, 0, -16:, -16:] = -0.02                 # class 1: the bottom-right corner square
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    t = perturbation_by_region(delta, y, corner=0.25)
    assert t.loc["normal", "top-left"] == pytest.approx(1.0) and t.loc["normal", "border"] == pytest.approx(1.0)
    assert t.loc["pneumonia", "bottom-right"] == pytest.approx(1.0) and t.loc["pneumonia", "largest corner"] == "bottom-right"
    assert t.loc["normal", "top-left lift"] == pytest.approx(16.0) and t.loc["all", "corner_area"] == pytest.approx(1 / 16)
    assert "COVID-19" not in t.index and list(t.n) == [6, 3, 3]
    maps = mean_abs_by_class(delta, y)
    assert maps["pneumonia"][-1, -1] == pytest.approx(0.02) and maps["all"][0, 0] == pytest.approx(0.005)
    uniform = perturbation_by_region(torch.ones(2, SIZE, SIZE))
    assert uniform.loc["all", "top-left"] == pytest.approx(1 / 16) and uniform.loc["all", "top-left lift"] == pytest.approx(1)


def test_plot_mean_abs_one_row_per_perturbation_set():
    import matplotlib.pyplot as plt
    y = torch.tensor([0, 1, 2, 2])
    d = torch.rand(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) - 0.5
    fig = plot_mean_abs({"DeepFool": d, "UAP": d.sign() * 0.01}, y, suptitle="mean |δ|")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * 4                      # 2 rows × (all + 3 classes)
    plt.close(fig)


def test_gradcam_before_after_maps_table_and_figure():
    import matplotlib.pyplot as plt

    from medadv_lib.viz.explain import gradcam_before_after
    model = _region_model(_corner_masks())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, SIZE, SIZE, generator=g)
    x_adv = (x + 0.05 * torch.rand(6, 1, SIZE, SIZE, generator=g)).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    maps, table, fig = gradcam_before_after(model, x, x_adv, y, names=("clean", "attacked"), per_class=1)
    assert set(maps) == {"clean", "attacked"} and maps["clean"].shape == (6, SIZE, SIZE)
    assert torch.allclose(maps["clean"], gradcam(model, x))
    assert list(table.index.get_level_values(0).unique()) == ["clean", "attacked"]
    assert table.loc[("clean", "all"), "n"] == 6
    assert len(fig.axes) == 2 * 3 + 1                           # 2 rows × one image per class, and the colour bar
    plt.close(fig)
    with pytest.raises(ValueError, match="same length"):
        gradcam_before_after(model, x, x_adv[:3], y)


def test_show_probe_regions_on_one_image():
    import matplotlib.pyplot as plt

    from medadv_lib.viz import show_probe_regions
    x = torch.rand(1, 1, 32, 32)
    fig = show_probe_regions(x)
    assert len(fig.axes) == 3
    border = region_mask(32, "border")
    shown = torch.as_tensor(fig.axes[1].images[0].get_array())
    assert torch.allclose(shown[border], x[0, 0][border]) and torch.allclose(shown[~border], x.mean().expand(int((~border).sum())))
    assert "44%" in fig.axes[0].get_title() and len(fig.axes[0].images) == 2     # the image and the tint
    plt.close(fig)
