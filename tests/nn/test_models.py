import pytest
import torch
from torch import nn

import babysit as bs
from babysit.errors import ConfigError
from babysit.nn.activations import ACTIVATIONS
from babysit.nn.regularize import VanillaDropout


@pytest.mark.parametrize("shape", [(1, 40), (1, 8, 8), (3, 32, 32)])
def test_convnet_handles_1d_and_2d_inputs(shape):
    net = bs.blocks.convnet(shape, 10)
    assert net(torch.randn(4, *shape)).shape == (4, 10)


def test_mlp_flattens_any_input():
    assert bs.blocks.mlp((1, 8, 8), 10, hidden=(32,))(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_batchnorm_sits_after_the_affine_layer_before_the_activation_and_drops_its_bias():
    net = bs.blocks.mlp((20,), 3, hidden=(16,), batchnorm=True, dropout=0.5)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]
    assert net[1].bias is None  # BN's beta makes the preceding bias redundant


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_builds_into_a_model(name):
    net = bs.blocks.mlp((10,), 2, hidden=(8,), activation=name)
    assert isinstance(net[2], type(ACTIVATIONS.get(name)()))


def test_maxout_affine_layers_output_pieces_times_width_and_double_the_parameters():
    relu_net = bs.blocks.mlp((10,), 3, hidden=(8, 6))
    maxout_net = bs.blocks.mlp((10,), 3, hidden=(8, 6), activation="maxout", pieces=2, batchnorm=True)
    linears = [m for m in maxout_net if isinstance(m, nn.Linear)]
    assert [l.out_features for l in linears] == [16, 12, 3]  # hidden sizes count units after the max
    assert [l.in_features for l in linears] == [10, 8, 6]
    hidden = lambda net: sum(l.weight.numel() for l in net if isinstance(l, nn.Linear) and l.out_features != 3)
    assert hidden(maxout_net) == 2 * hidden(relu_net)
    conv = bs.blocks.convnet((3, 16, 16), 4, channels=(8,), activation="maxout", pieces=3)
    assert conv[0].out_channels == 24 and conv(torch.randn(2, 3, 16, 16)).shape == (2, 4)


def test_activation_options_reach_the_activation_that_takes_them():
    net = bs.blocks.mlp((4,), 2, hidden=(3,), activation="leaky_relu", slope=0.2, alpha=3.0)
    assert net[2].negative_slope == 0.2
    assert bs.blocks.mlp((4,), 2, hidden=(3,), activation="elu", alpha=0.5)[2].alpha == 0.5


@pytest.mark.parametrize("kind, module", [("inverted", nn.Dropout), ("vanilla", VanillaDropout)])
def test_model_dropout_is_a_drop_probability_converted_to_the_keep_probability(kind, module):
    net = bs.blocks.mlp((4,), 2, hidden=(3,), dropout=0.2, dropout_kind=kind)
    layer = net[3]
    assert isinstance(layer, module)
    keep = layer.keep if kind == "vanilla" else 1 - layer.p
    assert keep == pytest.approx(0.8)
    # In a convnet, dropout drops whole channels of the 2-d feature maps.
    conv_drop = bs.blocks.convnet((2, 8, 8), 2, channels=(4,), dropout=0.5, dropout_kind=kind)[2]
    assert conv_drop.spatial == 2 if kind == "vanilla" else isinstance(conv_drop, nn.Dropout2d)


def test_unknown_names_are_config_errors_with_suggestions():
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        bs.blocks.mlp((4,), 2, activation="rellu")
    with pytest.raises(ConfigError, match="did you mean 'xavier'"):
        bs.blocks.mlp((4,), 2, init="xavir")
    with pytest.raises(ConfigError, match="no option"):
        bs.build_model("mlp", (4,), 2, channels=(3,))
    with pytest.raises(ConfigError, match="flat features"):
        bs.blocks.convnet((10,), 2)
    with pytest.raises(ConfigError, match="did you mean 'vanilla'"):
        bs.blocks.mlp((4,), 2, dropout=0.5, dropout_kind="vanila")


def test_convnet_depth_adds_stride_1_layers_between_the_downsampling_ones():
    net = bs.build_model("convnet", (1, 40), 10, channels=(8, 16), depth=3)
    strides = [m.stride[0] for m in net.modules() if isinstance(m, nn.Conv1d)]
    assert strides == [2, 1, 1, 2, 1, 1]
    assert net(torch.randn(2, 1, 40)).shape == (2, 10)


def test_global_average_pooling_feeds_one_value_per_channel_and_is_shift_invariant():
    flat = bs.build_model("convnet", (1, 40), 10, channels=(8, 16))
    gap = bs.build_model("convnet", (1, 40), 10, channels=(8, 16), pool="gap")
    assert gap[-1].in_features == 16 and flat[-1].in_features == 16 * 10
    gap.eval()
    # A circular shift by the network's total stride (4) moves features without changing their mean much.
    x = torch.zeros(1, 1, 40)
    x[0, 0, 8:12] = 1.0
    assert torch.allclose(gap(x), gap(torch.roll(x, 8, -1)), atol=1e-5)


@pytest.mark.parametrize("norm", ["bn", "ln"])
@pytest.mark.parametrize("shape", [(1, 40), (1, 8, 8)])
def test_resnet_builds_for_1d_and_2d_inputs_with_either_norm(norm, shape):
    net = bs.build_model("resnet", shape, 10, channels=(8, 16), depth=2, norm=norm)
    kinds = {type(m) for m in net.modules()}
    assert (nn.GroupNorm in kinds) == (norm == "ln") and (any("BatchNorm" in k.__name__ for k in kinds)) == (norm == "bn")
    assert net(torch.randn(3, *shape)).shape == (3, 10)


def test_resnet_stochastic_depth_rises_to_drop_path_and_is_off_at_test():
    from babysit.nn.regularize import DropPath

    torch.manual_seed(0)
    net = bs.build_model("resnet", (1, 40), 10, channels=(8, 16), depth=2, drop_path=0.4)
    rates = [m.drop for m in net.modules() if isinstance(m, DropPath)]
    assert rates == pytest.approx([0.0, 0.4 / 3, 0.8 / 3, 0.4])
    x = torch.randn(4, 1, 40)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    net.apply(lambda m: m.eval() if isinstance(m, nn.BatchNorm1d) else None)  # isolate the drop-path noise
    assert not torch.allclose(net(x), net(x))


def test_dropconnect_and_fmp_are_model_options():
    from babysit.nn.regularize import DropConnect, FractionalMaxPool

    mlp = bs.build_model("mlp", (1, 40), 10, hidden=(32, 32), dropconnect=0.3)
    assert sum(isinstance(m, DropConnect) for m in mlp.modules()) == 2
    conv = bs.build_model("convnet", (1, 40), 10, channels=(8, 8), downsample="fmp")
    assert sum(isinstance(m, FractionalMaxPool) for m in conv.modules()) == 2
    assert conv(torch.randn(2, 1, 40)).shape == (2, 10)
