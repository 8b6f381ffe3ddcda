import copy

import pytest
import torch
from mmcv.cnn import Conv2d as MMCVConv2d
from mmdet.registry import MODELS as DET_MODELS
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmseg.models.backbones import MixVisionTransformer, mit
from mmseg.registry import MODELS as SEG_MODELS

import fdconv_mm  # noqa: F401  (registers the backbones)
from fdconv_mm import FDConv
from fdconv_mm.layers import kernel_to_spectrum, spectrum_to_kernel
from fdconv_mm.models.backbones import MixVisionTransformerFDConv
from fdconv_testing import relative_error

MIT_B0 = dict(embed_dims=32, num_layers=[2, 2, 2, 2], num_heads=[1, 2, 5, 8])
TINY = dict(
    embed_dims=32,
    num_stages=2,
    num_layers=[1, 2],
    num_heads=[1, 2],
    patch_sizes=[7, 3],
    strides=[4, 2],
    sr_ratios=[2, 1],
    out_indices=(0, 1),
)
CONV_CFG = dict(type='FDConv', kernel_num=8)


def count(model):
    return sum(p.numel() for p in model.parameters())


def active_fdconvs(model):
    return [n for n, m in model.named_modules() if isinstance(m, FDConv) and m.fdconv_active]


def build(**extra):
    return SEG_MODELS.build(dict(type='MixVisionTransformerFDConv', **dict(TINY, **extra)))


def test_mit_b0_fdconv_replaces_every_ffn_pointwise_conv_and_parameter_delta():
    plain = MixVisionTransformer(**MIT_B0)
    model = SEG_MODELS.build(
        dict(
            type='MixVisionTransformerFDConv', conv_cfg=dict(type='FDConv', kernel_num=64), **MIT_B0
        )
    )
    assert count(model) - count(plain) == 620_352
    assert (count(plain), count(model)) == (3_319_392, 3_939_744)
    expected = [
        f'layers.{i}.1.{j}.ffn.layers.{k}' for i in range(4) for j in range(2) for k in (0, 4)
    ]
    assert active_fdconvs(model) == expected
    # Everything else is the plain MiT's: same keys, except the FFN pointwise weights.
    fdconv_keys, plain_keys = set(model.state_dict()), set(plain.state_dict())
    assert plain_keys - fdconv_keys == {f'{name}.weight' for name in expected}
    for key in fdconv_keys - plain_keys:
        rest = key.partition('.ffn.layers.')[2]
        assert rest[:2] in ('0.', '4.') and rest[2:].startswith(('dft_weight', 'KSM_')), key
    assert not any('FBM' in key for key in fdconv_keys)  # 1x1 convs get no FBM


@pytest.mark.parametrize('scope,registry', [('mmseg', SEG_MODELS), ('mmdet', DET_MODELS)])
def test_builds_under_both_scopes_forward_and_backward(scope, registry):
    cfg = dict(type='MixVisionTransformerFDConv', conv_cfg=CONV_CFG, fdconv_stages=[1], **TINY)
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg)
    assert isinstance(model, MixVisionTransformerFDConv)
    assert active_fdconvs(model) == [
        f'layers.1.1.{j}.ffn.layers.{k}' for j in (0, 1) for k in (0, 4)
    ]
    # Every other conv (patch embeddings, attention reduction, depth-wise positional conv,
    # stage 0's FFN) stays the base's.
    fdconvs = [n for n, m in model.named_modules() if isinstance(m, FDConv)]
    assert fdconvs == active_fdconvs(model)
    block = model.layers[1][1][0]
    assert type(block.ffn.layers[1]) is MMCVConv2d and block.ffn.layers[1].groups == 256
    assert type(model.layers[0][1][0].ffn.layers[0]) is MMCVConv2d
    outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 16), (2, 64, 8, 8)]
    sum(o.square().mean() for o in outs).backward()
    fc2 = block.ffn.layers[4]
    assert fc2.dft_weight.grad is not None and fc2.dft_weight.grad.abs().sum() > 0
    assert fc2.KSM_Global.fc.weight.grad is not None


def test_plain_state_dict_loads_and_reproduces_plain_mit(monkeypatch):
    torch.manual_seed(0)
    plain = MixVisionTransformer(**TINY)
    plain.init_weights()
    model = build(conv_cfg=CONV_CFG)
    model.init_weights()
    messages = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'info', messages.append)
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert all('KSM_' in key for key in result.missing_keys)
    assert messages == [
        'MixVisionTransformerFDConv: converted 6 spatial conv weights to FDConv dft_weight '
        'while loading'
    ]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        errors = [relative_error(o, e) for o, e in zip(model.eval()(x), plain.eval()(x))]
    assert max(errors) < 1e-4, errors


def random_plain_checkpoint(path, wrap):
    """A random plain MiT checkpoint in mmseg's layout (as mit2mmseg writes it)."""
    torch.manual_seed(0)
    plain = MixVisionTransformer(**TINY)
    state = {k: torch.randn_like(v) * 0.1 for k, v in plain.state_dict().items()}
    for key in state:
        if key.endswith('norm.weight') or '.norm1.' in key or '.norm2.' in key:
            state[key] = state[key] + 1
    torch.save(dict(state_dict=state) if wrap else state, path)
    plain.load_state_dict(state)
    return plain, state


@pytest.mark.parametrize('wrap', [True, False], ids=['state_dict', 'flat'])
def test_pretrained_init_cfg_converts_a_plain_checkpoint(tmp_path, monkeypatch, wrap):
    path = tmp_path / 'mit_plain.pth'
    plain, state = random_plain_checkpoint(path, wrap)
    messages = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'info', messages.append)
    model = build(conv_cfg=CONV_CFG, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert [m for m in messages if m.startswith('MixVisionTransformerFDConv:')] == [
        'MixVisionTransformerFDConv: converted 6 spatial conv weights to FDConv dft_weight '
        'while loading'
    ]
    loaded = model.state_dict()
    for name in active_fdconvs(model):
        expected = kernel_to_spectrum(state[f'{name}.weight'])
        torch.testing.assert_close(loaded[f'{name}.dft_weight'], expected, rtol=0, atol=0)
    for key, value in state.items():
        if key in loaded:
            assert torch.equal(loaded[key], value), key
    ksm = model.layers[1][1][0].ffn.layers[0].KSM_Global
    assert ksm.channel_fc.weight.abs().max() < 1e-4  # neutral heads, not MiT's conv init
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        errors = [relative_error(o, e) for o, e in zip(model.eval()(x), plain.eval()(x))]
    assert max(errors) < 1e-4, errors


def test_init_without_init_cfg_keeps_heads_neutral_and_draws_kernels_as_mit():
    torch.manual_seed(0)
    model = build(conv_cfg=CONV_CFG, embed_dims=64)
    model.init_weights()
    conv = model.layers[0][1][0].ffn.layers[0]  # 64 -> 256, 1x1
    for head in ('channel_fc', 'filter_fc', 'kernel_fc'):
        assert getattr(conv.KSM_Global, head).weight.abs().max() < 1e-4, head
    spectrum = torch.view_as_complex(conv.dft_weight.detach())
    kernel = spectrum_to_kernel(spectrum, 256, 64, 1) * (64 // 2)
    # MiT: N(0, 2 / fan_out), fan_out = 256, std 0.0884; nn.Conv2d's default would be 0.072.
    assert abs(kernel.std().item() - (2 / 256) ** 0.5) < 0.003


def test_frozen_stages_keep_only_attention_trainable():
    model = build(conv_cfg=CONV_CFG, frozen_stages=1)
    assert model.train() is model and model.eval() is model
    model.train()
    assert not model.layers[0].training and model.layers[1].training
    for name, param in model.named_parameters():
        frozen = name.startswith('layers.0.')
        assert param.requires_grad == (not frozen or 'KSM' in name), name
    assert any('KSM' in n and n.startswith('layers.0.') for n, _ in model.named_parameters())
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    conv = model.layers[0][1][0].ffn.layers[0]
    assert conv.KSM_Global.channel_fc.weight.grad is not None
    assert conv.dft_weight.grad is None
    all_frozen = build(conv_cfg=CONV_CFG, need_grad_list=(), frozen_stages=2)
    assert not any(p.requires_grad for p in all_frozen.parameters())


def test_with_cp_gives_the_same_gradients(monkeypatch):
    calls = []
    checkpoint = mit.cp.checkpoint
    monkeypatch.setattr(
        mit.cp, 'checkpoint', lambda *a, **k: calls.append(1) or checkpoint(*a, **k)
    )
    torch.manual_seed(0)
    model = build(conv_cfg=CONV_CFG)
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if 'KSM' in name:  # move the attentions away from neutral
            param.data.normal_(0, 0.3)
    checkpointed = build(conv_cfg=CONV_CFG, with_cp=True)
    checkpointed.load_state_dict(model.state_dict())
    assert checkpointed.layers[0][1][0].with_cp
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for module in (model, checkpointed):
        module.train()
        sum(o.square().mean() for o in module(x.clone())).backward()
        grads.append({n: p.grad.clone() for n, p in module.named_parameters()})
    assert len(calls) == 3  # one per block, in the checkpointed model only
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    'options,error,match',
    [
        (dict(fdconv_stages=[2]), ValueError, r'fdconv_stages=\[2\].*\[0, 1\]'),
        (dict(frozen_stages=3), ValueError, 'frozen_stages=3 must be an int from -1'),
        (dict(frozen_stages=True), ValueError, 'frozen_stages=True'),
        (dict(conv_cfg='FDConv'), TypeError, 'conv_cfg must be a dict or None'),
        (dict(conv_cfg=CONV_CFG, need_grad_list='KSM'), TypeError, 'need_grad_list'),
        (dict(conv_cfg=dict(type='FDConv', kernel_nums=8)), TypeError, 'kernel_nums'),
    ],
)
def test_bad_options_give_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        build(**copy.deepcopy(options))
