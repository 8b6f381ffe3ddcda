"""convert_to_fdconv: plain PyTorch models to FDConv, the pretrained function kept at step 0."""

import copy
import logging
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fdconv_mm import convert_to_fdconv
from fdconv_mm.layers import FDConv, FDConvLinear, is_fdconv_active

LOGGER = 'fdconv_mm.layers.convert'


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def layer_types(model: nn.Module) -> dict:
    return {name: type(module) for name, module in model.named_modules()}


def fdconv_names(model: nn.Module) -> set:
    return {name for name, module in model.named_modules() if isinstance(module, FDConv)}


def snapshot(model: nn.Module) -> tuple:
    """Every module (identity and type) and every tensor of ``model``."""
    modules = [(name, id(module), type(module)) for name, module in model.named_modules()]
    return modules, {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: tuple) -> None:
    modules, state = snapshot(model)
    assert modules == before[0]
    assert state.keys() == before[1].keys()
    for key, value in state.items():
        assert torch.equal(value, before[1][key]), key


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block, with its attribute names (no torchvision needed)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    """torchvision's ``resnet50`` layout: conv1/bn1/maxpool, layer1..4, avgpool, fc."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        generator = torch.Generator().manual_seed(0)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # torchvision's init keeps activations O(1)
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                with torch.no_grad():
                    module.weight.normal_(0, (2 / fan_out) ** 0.5, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):  # not the identity, as trained BNs
                with torch.no_grad():
                    module.weight.uniform_(0.5, 1.5, generator=generator)
                    module.bias.uniform_(-0.2, 0.2, generator=generator)
                    module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                    module.running_var.uniform_(0.5, 2.0, generator=generator)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def toy_net() -> nn.Sequential:
    """A stem too narrow for FDConv, then two stages with a 1x1 shortcut each."""

    def stage():
        return nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(32, 32, 3, padding=1),
                downsample=nn.Sequential(nn.Conv2d(32, 32, 1)),
            )
        )

    return nn.Sequential(
        OrderedDict(stem=nn.Conv2d(3, 32, 3, padding=1), layer1=stage(), layer2=stage())
    )


ALL_TOY = {'layer1.conv1', 'layer1.downsample.0', 'layer2.conv1', 'layer2.downsample.0'}


@pytest.fixture(scope='module')
def resnet50():
    """A random ResNet-50 with activations of a trained one's scale, its conversion, an
    input and the original's output.

    Its BatchNorm running statistics are those of its own features (one batch), as a
    trained network's are, so that every stage sees normalized, O(1) activations.
    """
    torch.manual_seed(0)
    original = ResNet50()
    for module in original.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        original.train()(torch.randn(8, 3, 64, 64))
    original.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = original(x)
    return original, convert_to_fdconv(copy.deepcopy(original), kernel_num=4), x, expected


@pytest.mark.slow
def test_torchvision_resnet50_converts_exactly_and_trains(resnet50):
    original, converted, x, expected = resnet50
    active = {
        name
        for name, m in original.named_modules()
        if type(m) is nn.Conv2d
        and m.groups == 1
        and is_fdconv_active(m.in_channels, m.out_channels, m.kernel_size)
    }
    assert fdconv_names(converted) == active
    assert len(active) == 16 * 3 + 4  # every block conv and shortcut; not the 7x7 stem
    assert type(converted.conv1) is nn.Conv2d and type(converted.fc) is nn.Linear
    assert all(converted.get_submodule(name).kernel_num == 4 for name in active)

    model = copy.deepcopy(converted)
    with torch.no_grad():  # step 0, the layers' own (exactly neutral) attention heads
        assert relative_error(model(x), expected) < 1e-4

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.layer1[0].conv2.dft_weight.detach().clone()
    # One sample: the KSM BatchNorm then uses its running statistics (SPEC section 3).
    loss = F.cross_entropy(model(torch.randn(1, 3, 64, 64)), torch.tensor([7]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(model.layer1[0].conv2.dft_weight, before)
    assert all(model.get_submodule(name).dft_weight.grad is not None for name in active)


def test_mmdet_resnet_converts_only_the_included_stages():
    from mmdet.models.backbones import ResNet

    torch.manual_seed(0)
    original = ResNet(depth=18, out_indices=(0, 1, 2, 3), init_cfg=None)
    original.eval()  # mmdet's ResNet.train returns None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = original(x)

    model = convert_to_fdconv(copy.deepcopy(original), include=('layer3', 'layer4'))

    names = fdconv_names(model)
    assert names and all(name.split('.')[0] in ('layer3', 'layer4') for name in names)
    # Two BasicBlocks of two 3x3 convs per stage, and the first block's 1x1 shortcut.
    assert len(names) == 2 * (2 * 2 + 1)
    assert all(
        type(m) is nn.Conv2d
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and not name.startswith(('layer3', 'layer4'))
    )
    with torch.no_grad():
        outputs = model(x)
    assert len(outputs) == len(expected) == 4
    for out, ref in zip(outputs, expected):
        assert relative_error(out, ref) < 1e-4


def test_grouped_and_depthwise_convs_stay_plain():
    torch.manual_seed(0)
    original = nn.Sequential(
        nn.Conv2d(32, 64, 3, padding=1),
        nn.Conv2d(64, 64, 3, padding=1, groups=64),
        nn.Conv2d(64, 64, 3, padding=1, groups=4),
        nn.Conv2d(64, 32, 1),
    ).eval()
    x = torch.randn(2, 32, 12, 12)
    with torch.no_grad():
        expected = original(x)

    model = convert_to_fdconv(copy.deepcopy(original), kernel_num=8)

    assert [type(layer) for layer in model] == [FDConv, nn.Conv2d, nn.Conv2d, FDConv]
    assert torch.equal(model[1].weight, original[1].weight)
    with torch.no_grad():
        assert relative_error(model(x), expected) < 1e-4


@pytest.mark.parametrize(
    'include, exclude, expected',
    [
        (None, None, ALL_TOY),
        ('layer2', None, {'layer2.conv1', 'layer2.downsample.0'}),
        (('layer1', 'layer2.conv1'), None, ALL_TOY - {'layer2.downsample.0'}),
        (None, '*.downsample.*', {'layer1.conv1', 'layer2.conv1'}),
        ('layer*', 'layer1', {'layer2.conv1', 'layer2.downsample.0'}),
        ('layer1.downsample', None, {'layer1.downsample.0'}),
        (['*.conv1'], None, {'layer1.conv1', 'layer2.conv1'}),
        ('layer', None, set()),  # a prefix of a name is not its parent
    ],
)
def test_include_and_exclude_patterns(include, exclude, expected):
    model = convert_to_fdconv(toy_net(), include=include, exclude=exclude)
    assert fdconv_names(model) == expected
    assert type(model.stem) is nn.Conv2d


def test_a_pattern_that_matches_nothing_is_reported(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    model = convert_to_fdconv(toy_net(), include=('layer1', 'layer3'), exclude='*.down')
    assert fdconv_names(model) == {'layer1.conv1', 'layer1.downsample.0'}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("include pattern(s) 'layer3' match no" in w for w in warnings)
    assert any("exclude pattern(s) '*.down' match no" in w for w in warnings)


@pytest.mark.parametrize(
    'options, error, match',
    [
        (dict(include=3), TypeError, 'include'),
        (dict(include=b'layer1'), TypeError, 'include'),
        (dict(exclude=['layer1', 2]), TypeError, 'exclude'),
        (dict(include=()), ValueError, 'include'),
        (dict(exclude=''), ValueError, 'exclude'),
        (dict(convert_linear='yes'), ValueError, 'convert_linear'),
        (dict(kernl_num=4), TypeError, "unknown option.*'kernl_num'.*did you mean 'kernel_num'"),
        (dict(kernel_num=0), ValueError, 'kernel_num'),
        (dict(use_fdconv_if_k_in=3), ValueError, 'use_fdconv_if_k_in'),
        (dict(stride=2), TypeError, 'stride'),
        # Checked per layer: the first ones (Cin 32) pass, the last (Cin 48) fails.
        (dict(fbm_cfg=dict(spatial_group=32)), ValueError, 'spatial_group'),
    ],
)
def test_bad_options_raise_before_anything_is_swapped(options, error, match):
    model = toy_net()
    if 'fbm_cfg' in options:
        model.layer2.downsample[0] = nn.Conv2d(32, 48, 1)
        model.add_module('head', nn.Conv2d(48, 48, 1))  # 48 channels: 32 groups do not divide
    before = snapshot(model)
    with pytest.raises(error, match=match):
        convert_to_fdconv(model, **options)
    assert_unchanged(model, before)


def test_shape_dependent_options_do_not_fail_on_layers_that_stay_plain():
    """FBM's spatial_group must divide Cin of the converted layers only, not the stem's 3."""
    model = convert_to_fdconv(toy_net(), fbm_cfg=dict(spatial_group=2))
    assert fdconv_names(model) == ALL_TOY
    assert model.layer1.conv1.FBM is not None


def test_linear_layers_over_tokens(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    torch.manual_seed(0)
    original = nn.Sequential(
        nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32), nn.Linear(32, 8)
    ).eval()
    tokens = torch.randn(2, 10, 32)
    with torch.no_grad():
        expected = original(tokens)

    unchanged = convert_to_fdconv(copy.deepcopy(original))
    assert layer_types(unchanged) == layer_types(original)

    model = convert_to_fdconv(copy.deepcopy(original), convert_linear=True, kernel_num=8)
    assert [type(layer) for layer in model] == [FDConvLinear, nn.GELU, FDConvLinear, nn.Linear]
    with torch.no_grad():
        assert relative_error(model(tokens), expected) < 1e-4
    assert caplog.records[-1].getMessage() == (
        'convert_to_fdconv: converted 0 Conv2d and 2 Linear to FDConv; left plain: '
        '1 too few channels (min(Cin, Cout) <= use_fdconv_if_c_gt=16)'
    )

    fbm_on_tokens = copy.deepcopy(original)
    before = snapshot(fbm_on_tokens)
    with pytest.raises(ValueError, match='FBM'):
        convert_to_fdconv(fbm_on_tokens, convert_linear=True, use_fbm_if_k_in=(1, 3))
    assert_unchanged(fbm_on_tokens, before)


def test_linear_subclasses_stay_plain():
    """nn.MultiheadAttention reads its out_proj (an nn.Linear subclass) weight directly."""
    model = nn.Sequential(nn.MultiheadAttention(32, 4, batch_first=True))
    convert_to_fdconv(model, convert_linear=True)
    assert type(model[0].out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_the_module_itself_may_be_a_conv(dtype):
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 48, 3, stride=2, padding=2, dilation=2, padding_mode='reflect')
    conv = conv.to(dtype).eval()
    x = torch.randn(2, 32, 11, 11, dtype=dtype)
    with torch.no_grad():
        expected = conv(x)

    new = convert_to_fdconv(conv, kernel_num=8)

    assert isinstance(new, FDConv) and new is not conv
    assert (new.stride, new.padding, new.dilation, new.padding_mode) == (
        (2, 2),
        (2, 2),
        (2, 2),
        'reflect',
    )
    assert new.dft_weight.dtype == dtype and new.KSM_Global.fc.weight.dtype == dtype
    assert not new.training
    with torch.no_grad():
        assert relative_error(new(x), expected) < 1e-4
    narrow = nn.Conv2d(3, 8, 3)
    assert convert_to_fdconv(narrow) is narrow


def test_frozen_weights_stay_frozen_and_the_heads_train():
    model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.Conv2d(32, 32, 1)).train()
    model[0].requires_grad_(False)
    model[0].eval()

    convert_to_fdconv(model)

    frozen, trainable = model
    assert not frozen.dft_weight.requires_grad and not frozen.bias.requires_grad
    assert not frozen.training and trainable.training
    assert trainable.dft_weight.requires_grad and trainable.bias.requires_grad
    heads = [p for n, p in frozen.named_parameters() if 'KSM' in n or 'FBM' in n]
    assert heads and all(p.requires_grad for p in heads)


def test_param_ratio_above_one_scales_the_conv_at_step_zero(caplog):
    """As documented: P copies of the spectrum, each group attention 1/(K*P): P * conv(x)."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, padding=1).eval()
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        bias = conv.bias.view(1, -1, 1, 1)
        expected = 2 * (conv(x) - bias) + bias
        assert relative_error(convert_to_fdconv(conv, param_ratio=2)(x), expected) < 1e-4
    assert any('param_ratio=2' in r.getMessage() for r in caplog.records)


def test_shared_layers_and_converting_twice(caplog):
    conv = nn.Conv2d(512, 64, 1)
    model = nn.Sequential(OrderedDict(a=conv, b=nn.Conv2d(64, 512, 1), c=conv))
    convert_to_fdconv(model)
    assert isinstance(model.a, FDConv) and model.c is model.a

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    before = snapshot(model)
    convert_to_fdconv(model)  # its KSM heads (a 512 -> 32 1x1 conv among them) stay
    assert_unchanged(model, before)
    assert caplog.records[-1].getMessage() == (
        'convert_to_fdconv: converted 0 Conv2d to FDConv; left plain: none'
    )


def test_the_summary_and_debug_lines(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    model = nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(3, 32, 3),
            body=nn.Conv2d(32, 32, 3),
            dw=nn.Conv2d(32, 32, 3, groups=32),
            big=nn.Conv2d(32, 32, 5),
            skip=nn.Conv2d(32, 32, 1),
        )
    )
    convert_to_fdconv(model, exclude='skip')
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert messages == [
        'convert_to_fdconv: converted 1 Conv2d to FDConv; left plain: '
        '1 outside include/exclude; 1 grouped or depth-wise; '
        '1 too few channels (min(Cin, Cout) <= use_fdconv_if_c_gt=16); '
        '1 kernel size not in use_fdconv_if_k_in=(1, 3)'
    ]
    debug = '\n'.join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert 'converted body' in debug
    for reason, name in (('include/exclude', 'skip'), ('depth-wise', 'dw'), ('channels', 'stem')):
        assert any(reason in line and line.endswith(name) for line in debug.splitlines())
    assert 'use_fdconv_if_k_in=(1, 3): big' in debug
