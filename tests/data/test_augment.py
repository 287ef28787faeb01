"""Batched augmentation: flips, crops and colour jitter, on the batch's device, for training batches; fixed views averaged at test."""

import itertools

import pytest
import torch

import babysit as bs
from babysit.data.augment import AUGMENTATIONS, MAX_VIEWS, Augment, crop_offsets, fixed_views, with_augmentation
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


@pytest.mark.parametrize(("padding", "dims", "count"), [(3, 1, 7), (1, 2, 9), (0, 2, 1), (4, 2, 5), (10, 1, 9)])
def test_a_crop_is_averaged_over_every_training_window_while_few_else_over_fixed_ones(padding, dims, count):
    offsets = crop_offsets(padding, dims)
    assert len(offsets) == len(set(offsets)) == count <= MAX_VIEWS
    assert (0,) * dims in offsets and all(abs(o) <= padding for offset in offsets for o in offset)
    assert set(offsets) == {tuple(-o for o in offset) for offset in offsets}  # symmetric about the centre
    if (2 * padding + 1) ** dims <= MAX_VIEWS:
        assert set(offsets) == set(itertools.product(range(-padding, padding + 1), repeat=dims))  # the training distribution exactly
    elif dims == 2:
        assert set(offsets) == {(0, 0), (-4, -4), (-4, 4), (4, -4), (4, 4)}  # the lectures' centre and four corners
    else:
        assert {(-10,), (10,)} <= set(offsets)  # evenly spaced, ends included


@pytest.mark.parametrize("shape", [(3, 6, 5), (2, 9)], ids=["2d", "1d"])
def test_every_test_view_is_a_window_the_training_crop_draws(shape):
    p, spatial = 2, shape[1:]
    x = (torch.arange(torch.Size(shape).numel()) + 1.0).reshape(shape).expand(4, *shape)
    padded = torch.nn.functional.pad(x, [p] * 2 * len(spatial))
    views = fixed_views(["crop"], p, len(spatial))
    for view, offset in zip(views, crop_offsets(p, len(spatial)), strict=True):
        expected = padded[(..., *[slice(p + o, p + o + k) for o, k in zip(offset, spatial)])]
        assert torch.equal(view(x), expected)


def test_flips_and_crops_of_an_image_make_the_lectures_ten_crops_and_jitter_has_no_fixed_view():
    x = _coords(n=2, h=8, w=8)
    views = fixed_views(["flip", "crop", "jitter"], 4, 2)
    assert len(views) == 10
    outs = [v(x) for v in views]
    assert sum(torch.equal(o, x) for o in outs) == 1 and sum(torch.equal(o, x.flip(-1)) for o in outs) == 1  # the centre, as is and mirrored
    assert len({o.numpy().tobytes() for o in outs}) == 10
    assert fixed_views(["jitter", "affine"], 4, 2) == () and fixed_views(["crop"], 0, 1) == ()


def test_evaluate_averages_class_probabilities_over_the_views_and_one_identity_view_is_the_plain_evaluation():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(50, 1, 12), torch.randint(0, 3, (50,))
    views = fixed_views(["crop"], 1, 1)
    loss, acc = bs.train.evaluate(model, x, y, views=views)
    with torch.no_grad():
        probs = torch.stack([torch.softmax(model(v(x)), 1) for v in views]).mean(0)
    assert acc == pytest.approx((probs.argmax(1) == y).float().mean().item())
    assert loss == pytest.approx(torch.nn.functional.nll_loss(probs.log(), y).item(), rel=1e-5)
    plain = bs.train.evaluate(model, x, y)
    assert bs.train.evaluate(model, x, y, views=[lambda t: t]) == pytest.approx(plain, rel=1e-5)


def test_fit_reports_the_averaged_test_accuracy_beside_the_single_view_one_and_the_config_turns_it_off():
    from babysit.build import load_data, run

    raw = {"data": {"name": "digits"}, "model": {"name": "convnet"}, "train": {"epochs": 2}}
    on = run(bs.build_config(raw), progress=False).result
    assert on.test_views == 9  # the digits profile's crop of 1 pixel: all nine windows
    summary = on.summary()
    assert summary["test_views"] == 9 and 0 <= summary["test_accuracy_single"] <= 1
    off_cfg = bs.build_config({**raw, "data": {"name": "digits", "test_augment": False}})
    assert load_data(off_cfg.data).test_views == ()
    off = run(off_cfg, progress=False).result
    assert off.test_views == 1 and off.test_accuracy_single is None and "test_views" not in off.summary()
    assert off.test_accuracy == pytest.approx(summary["test_accuracy_single"])  # same seed, same weights: the single view


def test_search_trials_test_on_one_view(tmp_path, digits, monkeypatch):
    import babysit.train.trainer as trainer

    seen = []
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda *a, views=(), **k: seen.append(len(views)) or real(*a, views=views, **k))
    data = with_augmentation(digits, ["crop"], padding=1)
    assert len(data.test_views) == 9
    settings = bs.tune.TuneSettings(trials=2, epochs=1, seed=0)
    bs.search({"data": {"name": "digits"}, "model": {"name": "convnet", "channels": [4]}}, {"train.lr": "log_uniform(1e-3, 1e-2)"}, settings,
              root=tmp_path, progress=False, data=data)  # fmt: skip
    assert seen and set(seen) == {0}  # validation every epoch and the test once, each on one view


def test_augmented_data_pickles_with_the_same_transforms_and_views(digits):
    import pickle

    data = with_augmentation(digits, ["flip", "crop"], padding=1)
    again = pickle.loads(pickle.dumps(data))  # as tune's caviar mode sends it to a spawned worker
    assert again.augment.names == ("flip", "crop") and again.augment.options == {"padding": 1} and len(again.test_views) == 18
    x = digits.test.x[:8]
    assert all(torch.equal(a(x), b(x)) for a, b in zip(data.test_views, again.test_views, strict=True))
    torch.manual_seed(3)
    first = data.augment(x)
    torch.manual_seed(3)
    assert torch.equal(again.augment(x), first)
