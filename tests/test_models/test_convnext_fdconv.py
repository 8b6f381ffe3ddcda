import sys
import types
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS
from torch import nn

import fdconv_mm  # noqa: F401  (registers the backbones)
from fdconv_mm.layers import FDConv, FDConvLinear
from fdconv_mm.models.backbones import ConvNeXtFDConv

CONFIG = Path(__file__).parents[2] / 'configs/mask_rcnn/mask-rcnn_convnext-t-fdconv_fpn_1x_coco.py'
CONV_CFG = dict(type='FDConv', kernel_num=64)
SMALL = dict(
    arch=dict(depths=[1, 2], channels=[32, 64]),
    out_indices=[0, 1],
    gap_before_final_norm=False,
    layer_scale_init_value=1.0,
)
DETECTION = dict(arch='tiny', out_indices=[0, 1, 2, 3], gap_before_final_norm=False)


def randomize(model: nn.Module) -> nn.Module:
    """Random parameters of the size ImageNet weights have, so every layer matters (FDConv's
    attention heads start at N(0, 1e-6), not 0: far larger activations would move them)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'KSM' not in name and 'FBM' not in name:
                param.normal_(0, 0.05 if param.dim() > 1 else 0.5)
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def mmpretrain_convnext(monkeypatch):
    """mmpretrain 1.2's ConvNeXt, imported beside a stand-in for torchvision (not installable
    on the pinned stack; mmpretrain imports ``torchvision.ops.boxes`` where it is not used)."""
    vision, ops, boxes = (types.ModuleType(n) for n in ('tv', 'tv.ops', 'tv.ops.boxes'))
    vision.ops, ops.boxes = ops, boxes
    for name, module in (
        ('torchvision', vision),
        ('torchvision.ops', ops),
        ('torchvision.ops.boxes', boxes),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    try:
        from mmpretrain.models.backbones.convnext import ConvNeXt
    except Exception as error:  # noqa: BLE001  (any import failure means: not available)
        pytest.skip(f'mmpretrain cannot be imported: {error}')
    return ConvNeXt


@pytest.mark.parametrize('linear_pw_conv,gap', [(True, False), (False, True)])
def test_plain_backbone_is_mmpretrain_convnext(mmpretrain_convnext, linear_pw_conv, gap):
    options = dict(SMALL, gap_before_final_norm=gap, linear_pw_conv=linear_pw_conv)
    theirs = randomize(mmpretrain_convnext(**options))
    theirs.eval()  # mmpretrain's train() returns None
    ours = ConvNeXtFDConv(**options).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        outs = ours(x)
        assert len(outs) == len(expected) == 2
        for out, target in zip(outs, expected):
            assert out.shape == target.shape
            assert (out - target).abs().max().item() < 1e-6
        randomize(ours)
        ours.stages[1][1].gamma.mul_(-1)
        theirs.load_state_dict(ours.state_dict(), strict=True)
        for out, target in zip(ours(x), theirs(x)):
            assert (out - target).abs().max().item() < 1e-6


def test_convnext_t_has_mmpretrain_keys(mmpretrain_convnext):
    theirs = mmpretrain_convnext(**DETECTION).state_dict()
    ours = ConvNeXtFDConv(**DETECTION).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize('linear_pw_conv', [True, False])
def test_fdconv_at_init_reproduces_plain_backbone(linear_pw_conv):
    plain = randomize(ConvNeXtFDConv(**SMALL, linear_pw_conv=linear_pw_conv)).eval()
    model = ConvNeXtFDConv(**SMALL, linear_pw_conv=linear_pw_conv, conv_cfg=CONV_CFG).eval()
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys == []  # plain conv weights: the heads keep their init
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for out, expected in zip(model(x), plain(x)):
            error = ((out - expected).abs().max() / expected.abs().max()).item()
            assert error < 1e-4


def test_pretrained_mmpretrain_file_converts_on_load(tmp_path, monkeypatch):
    """A plain mmpretrain checkpoint (``backbone.``-prefixed, with a classifier) loads into
    the FDConv backbone with ``prefix='backbone.'``, each pointwise weight converting."""
    plain = randomize(ConvNeXtFDConv(**SMALL)).eval()
    source = {'backbone.' + k: v for k, v in plain.state_dict().items()}
    source['head.fc.weight'] = torch.randn(10, 64)
    path = tmp_path / 'convnext_mmpretrain.pth'
    torch.save(dict(state_dict=source), path)
    init_cfg = ConfigDict(type='Pretrained', checkpoint=str(path), prefix='backbone.')
    model = ConvNeXtFDConv(**SMALL, conv_cfg=CONV_CFG, init_cfg=init_cfg)
    messages = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'info', messages.append)
    model.init_weights()
    assert [m for m in messages if m.startswith('ConvNeXtFDConv:')] == [
        'ConvNeXtFDConv: converted 6 spatial conv weights to FDConv dft_weight while loading'
    ]
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for out, expected in zip(model(x), plain(x)):
            assert ((out - expected).abs().max() / expected.abs().max()).item() < 1e-4


def test_convnext_t_parameter_delta():
    plain = ConvNeXtFDConv(**DETECTION)
    model = ConvNeXtFDConv(**DETECTION, conv_cfg=CONV_CFG)
    active = [m for m in model.modules() if isinstance(m, FDConv) and m.fdconv_active]
    assert len(active) == 2 * (3 + 3 + 9 + 3)
    assert n_params(plain) == 27_821_472
    # The paper says +3 M; the KSM heads of the 4C -> C layers alone hold most of this.
    assert n_params(model) - n_params(plain) == 9_040_104


@pytest.mark.parametrize('linear_pw_conv', [True, False])
def test_which_layers_are_fdconv(linear_pw_conv):
    model = ConvNeXtFDConv(
        **SMALL, linear_pw_conv=linear_pw_conv, conv_cfg=CONV_CFG, fdconv_stages=[-1]
    )
    pointwise = FDConvLinear if linear_pw_conv else FDConv
    plain_pointwise = nn.Linear if linear_pw_conv else nn.Conv2d
    block = model.stages[0][0]
    assert type(block.pointwise_conv1) is plain_pointwise
    assert type(block.pointwise_conv2) is plain_pointwise
    for block in model.stages[1]:
        assert type(block.pointwise_conv1) is pointwise and block.pointwise_conv1.fdconv_active
        assert type(block.pointwise_conv2) is pointwise and block.pointwise_conv2.fdconv_active
        assert block.pointwise_conv1.FBM is None
    for block in (*model.stages[0], *model.stages[1]):
        assert type(block.depthwise_conv) is nn.Conv2d
    for layer in model.downsample_layers:
        assert [type(m) for m in layer if isinstance(m, nn.Conv2d)] == [nn.Conv2d]
    keys = set(model.state_dict())
    assert 'stages.1.1.pointwise_conv2.dft_weight' in keys
    assert 'stages.1.1.pointwise_conv2.weight' not in keys
    assert 'stages.0.0.pointwise_conv2.weight' in keys


def test_frozen_stages_keep_attention_trainable():
    model = ConvNeXtFDConv(**SMALL, frozen_stages=1, conv_cfg=CONV_CFG)
    assert model.train() is model
    for name, param in model.named_parameters():
        frozen = name.startswith(('downsample_layers.0.', 'stages.0.'))
        assert param.requires_grad == (not frozen or 'KSM' in name), name
    assert not model.stages[0].training and not model.downsample_layers[0].training
    assert model.stages[1].training and model.norm0.training
    assert any('KSM' in n and p.requires_grad for n, p in model.stages[0].named_parameters())


def test_with_cp_gives_the_same_gradients(monkeypatch):
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting)
    models = [ConvNeXtFDConv(**SMALL, conv_cfg=CONV_CFG, with_cp=cp) for cp in (False, True)]
    models[1].load_state_dict(randomize(models[0]).state_dict())
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for model in models:
        inputs = x.clone().requires_grad_()
        sum((out**2).mean() for out in model.train()(inputs)).backward()
        grads.append([inputs.grad] + [p.grad for p in model.parameters()])
    assert len(calls) == 3  # one per block, with_cp only
    for grad, grad_cp in zip(*grads):
        torch.testing.assert_close(grad_cp, grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('scope,registry', [('mmdet', DET_MODELS), ('mmseg', SEG_MODELS)])
@pytest.mark.parametrize('name', ['ConvNeXtFDConv', 'ConvNeXt_FDConv'])
def test_builds_under_both_scopes(scope, registry, name):
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type=name, **SMALL, conv_cfg=dict(type='FDConv', kernel_num=8)))
    assert type(model) is ConvNeXtFDConv
    model.init_weights()
    outs = model(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 8, 8), (1, 64, 4, 4)]
    sum(o.mean() for o in outs).backward()
    assert model.stages[1][0].pointwise_conv1.dft_weight.grad is not None


def test_default_init_is_neutral_and_trunc_normal():
    model = ConvNeXtFDConv(**SMALL, conv_cfg=CONV_CFG)
    model.init_weights()
    layer = model.stages[0][0].pointwise_conv1
    assert torch.all(layer.KSM_Global.kernel_fc.weight.abs() < 1e-4)
    kernel = torch.fft.irfft2(torch.view_as_complex(layer.dft_weight[0].contiguous()), s=(128, 32))
    assert 0.015 < (kernel * 16).std().item() < 0.025  # dft_weight divides by min(C) // 2
    spectrum = layer.dft_weight.detach().clone()
    model.init_weights()  # a second call (mmengine warns) changes nothing
    assert torch.equal(layer.dft_weight, spectrum)


def test_config_optimizer_accepts_fdconv_parameters():
    """The config's AdamW + layer-wise lr decay groups every FDConv parameter by its stage."""
    cfg = Config.fromfile(CONFIG)
    assert cfg.custom_imports['imports'] == ['fdconv_mm']
    backbone_cfg = dict(cfg.model.backbone)
    assert backbone_cfg['type'] == 'ConvNeXtFDConv'
    backbone_cfg.update(arch=dict(depths=[1, 1, 3, 1], channels=[32, 32, 32, 32]))
    backbone_cfg.update(conv_cfg=dict(CONV_CFG, kernel_num=8), init_cfg=None)

    class Detector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with DefaultScope.overwrite_default_scope('mmdet'):
                self.backbone = DET_MODELS.build(backbone_cfg)
            self.head = nn.Linear(32, 2)

    model = Detector()
    with DefaultScope.overwrite_default_scope('mmdet'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(wrapper.optimizer).__name__ == 'AdamW'
    groups = {name: g for g in wrapper.optimizer.param_groups for name in g['param_names']}
    assert len(groups) == len(list(model.parameters()))
    # 8 layer ids (num_layers + 2); stage 2's blocks 0-2 are id 3, the head id 7.
    dft = groups['backbone.stages.2.2.pointwise_conv1.dft_weight']
    assert dft['weight_decay'] == 0.05 and dft['lr'] == pytest.approx(1e-4 * 0.95**4)
    ksm = groups['backbone.stages.0.0.pointwise_conv2.KSM_Global.fc.weight']
    assert ksm['lr'] == pytest.approx(1e-4 * 0.95**6)
    assert groups['head.weight']['lr'] == pytest.approx(1e-4)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="arch='tinyy'"):
        ConvNeXtFDConv(arch='tinyy')
    with pytest.raises(ValueError, match="'depths' and 'channels'"):
        ConvNeXtFDConv(arch=dict(depths=[1]))
    with pytest.raises(ValueError, match='out_indices=4'):
        ConvNeXtFDConv(**dict(DETECTION, out_indices=4))
    with pytest.raises(ValueError, match='frozen_stages=5'):
        ConvNeXtFDConv(**DETECTION, frozen_stages=5)
    with pytest.raises(ValueError, match=r'fdconv_stages=\[2\]'):
        ConvNeXtFDConv(**SMALL, fdconv_stages=[2])
    with pytest.raises(ValueError, match="norm_cfg type='BN'"):
        ConvNeXtFDConv(**SMALL, norm_cfg=dict(type='BN'))
    with pytest.raises(ValueError, match="type='Conv2d'"):
        ConvNeXtFDConv(**SMALL, conv_cfg=dict(type='Conv2d'))
    with pytest.raises(TypeError, match='kernel_nums'):
        ConvNeXtFDConv(**SMALL, conv_cfg=dict(type='FDConv', kernel_nums=8))
