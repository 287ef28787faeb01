"""Batched augmentation: flips, crops and colour jitter, on the batch's device, for training batches only."""

import itertools

import pytest
import torch

import babysit as bs
from babysit.data.augment import AUGMENTATIONS, Augment, with_augmentation
from babysit.errors import ConfigError


def _coords(n=64, c=3, h=6, w=5) -> torch.Tensor:
    """Images whose pixel values encode (channel, row, column), all nonzero, so any window is identifiable."""
    c_, i, j = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    return (100 * c_ + 10 * i + j + 1).float().expand(n, c, h, w).clone()


def test_flip_mirrors_about_half_the_images_left_right():
    torch.manual_seed(0)
    x = _coords(n=400)
    out = AUGMENTATIONS.get("flip")()(x)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert torch.all(flipped ^ same)  # each image is either mirrored or untouched
    assert 0.4 < flipped.float().mean().item() < 0.6


@pytest.mark.parametrize("shape", [(3, 6, 5), (2, 9)], ids=["2d", "1d"])
def test_crop_cuts_a_random_window_of_the_zero_padded_image(shape):
    torch.manual_seed(0)
    p, spatial = 2, shape[1:]
    x = (torch.arange(torch.Size(shape).numel()) + 1.0).reshape(shape).expand(300, *shape)  # unique nonzero pixels
    out = AUGMENTATIONS.get("crop")(padding=p)(x)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, [p] * 2 * len(spatial))
    offsets = list(itertools.product(range(2 * p + 1), repeat=len(spatial)))
    window = lambda img, start: img[(slice(None), *[slice(s, s + k) for s, k in zip(start, spatial)])]
    seen = set()
    for n in range(len(x)):
        matches = [o for o in offsets if torch.equal(out[n], window(padded[n], o))]
        assert matches, f"sample {n} is not a window of its padded image"
        seen.add(matches[0])
    assert len(seen) == len(offsets)  # every offset occurs


def test_jitter_scales_brightness_contrast_and_saturation_within_the_band():
    torch.manual_seed(0)
    jitter = AUGMENTATIONS.get("jitter")(strength=0.3)
    gray = torch.rand(200, 1, 4, 4).expand(200, 3, 4, 4).contiguous() + 0.5  # grey: saturation has nothing to act on
    constant = torch.full((200, 3, 4, 4), 2.0)
    ratio = jitter(constant) / constant  # flat image: only brightness acts, one factor per image
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio))
    assert ratio.min() >= 0.7 - 1e-6 and ratio.max() <= 1.3 + 1e-6 and ratio.std() > 0.1
    out = jitter(gray)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])  # stays grey
    assert torch.equal(AUGMENTATIONS.get("jitter")(strength=0.0)(gray), gray)
    colour = torch.rand(200, 3, 4, 4)
    spread = lambda t: (t - t.mean(1, keepdim=True)).abs().mean(dim=(1, 2, 3))  # distance from grey per image
    change = spread(jitter(colour)) / spread(colour)
    assert change.min() > 0.7**3 * 0.9 and change.max() < 1.3**3 * 1.1 and change.std() > 0.05


def test_augment_composes_names_checks_options_and_shapes():
    aug = Augment(["flip", "crop", "jitter"], padding=1, strength=0.1)
    assert aug(torch.rand(8, 3, 8, 8)).shape == (8, 3, 8, 8)
    assert "flip" in repr(aug)
    with pytest.raises(ConfigError, match="did you mean 'crop'"):
        Augment(["corp"])
    with pytest.raises(ConfigError, match="crop_padding"):
        Augment(["crop"], padding=-1)
    with pytest.raises(ConfigError, match=r"\(N, C, L\) or \(N, C, H, W\)"):
        aug(torch.rand(8, 64))


def test_fit_augments_training_batches_only(digits):
    class Recorder:
        def __init__(self):
            self.seen = 0

        def __call__(self, x):
            self.seen += len(x)
            return x.flip(-1)

    rec = Recorder()
    data = bs.Dataset(**{**digits.__dict__, "augment": rec})
    bs.train.seed_everything(0)
    result = bs.fit(bs.blocks.mlp(data.input_shape, 10, hidden=(16,)), data, bs.Recipe(epochs=2, device="cpu"), progress=False)
    assert rec.seen == 2 * len(digits.train)  # validation and test never pass through it
    assert result.status == "completed"


def test_with_augmentation_attaches_to_image_data_and_refuses_flat_data(digits):
    data = with_augmentation(digits, ["flip", "crop"], padding=1)
    assert isinstance(data.augment, Augment) and data.train is digits.train
    assert with_augmentation(data, []).augment is None
    flat = bs.prepare(bs.load_dataset("spiral"))
    with pytest.raises(ConfigError, match="remove data.augment"):
        with_augmentation(flat, ["flip"])


def test_augmentation_from_the_config_reaches_training():
    from babysit.config import build_config
    from babysit.build import load_data

    cfg = build_config({"data": {"name": "digits", "augment": ["crop", "jitter"], "crop_padding": 1, "jitter": 0.2}})
    data = load_data(cfg.data)
    assert data.augment.names == ("crop", "jitter") and data.augment.options == {"padding": 1, "strength": 0.2}


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
@pytest.mark.parametrize("shape", [(16, 3, 8, 8), (16, 1, 40)], ids=["images", "signals"])
def test_every_augmentation_keeps_shape_and_dtype_and_is_seeded_randomness(name, shape):
    x = torch.rand(shape, dtype=torch.float64) + 0.1
    transform = AUGMENTATIONS.get(name)()
    torch.manual_seed(3)
    a = transform(x)
    torch.manual_seed(3)
    b = transform(x)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b)  # the run's seed fixes the augmentation
    assert not torch.equal(transform(x), transform(x))  # and it changes from batch to batch


def test_affine_without_rotation_or_stretch_is_the_identity_and_otherwise_moves_pixels():
    torch.manual_seed(0)
    images, signals = torch.randn(8, 1, 8, 8), torch.randn(8, 1, 40)
    for x in (images, signals):
        assert torch.allclose(AUGMENTATIONS.get("affine")(degrees=0.0, stretch=0.0)(x), x, atol=1e-6)
        moved = AUGMENTATIONS.get("affine")(degrees=15.0, stretch=0.2)(x)
        assert moved.shape == x.shape and not torch.allclose(moved, x, atol=1e-3)


def test_affine_rejects_bad_ranges():
    with pytest.raises(ConfigError, match="stretch in"):
        AUGMENTATIONS.get("affine")(stretch=1.5)
