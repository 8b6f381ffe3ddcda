import pytest
import torch
from mmdet.models.backbones import SwinTransformer as DetSwin
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS

import fdconv_mm  # noqa: F401  (registers the backbones)
from fdconv_mm.converters import convert_imagenet_checkpoint
from fdconv_mm.layers import FDConvLinear

CONV_CFG = dict(type='FDConv', kernel_num=64, use_fdconv_if_c_gt=16, use_fdconv_if_k_in=[1, 3])
SWIN_T = dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7)


@pytest.mark.parametrize('scope,registry', [('mmdet', DET_MODELS), ('mmseg', SEG_MODELS)])
def test_swin_builds_under_both_scopes_and_trains(scope, registry):
    cfg = dict(
        type='SwinTransformerFDConv',
        embed_dims=32,
        depths=(1, 1),
        num_heads=(1, 2),
        out_indices=(0, 1),
        strides=(4, 2),
        conv_cfg=dict(type='FDConv', kernel_num=8),
        fdconv_stages=[1],
    )
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg)
    assert not isinstance(model.stages[0].blocks[0].ffn.layers[1], FDConvLinear)
    ffn = model.stages[1].blocks[0].ffn
    assert isinstance(ffn.layers[0][0], FDConvLinear) and isinstance(ffn.layers[1], FDConvLinear)
    keys = set(model.state_dict())
    assert 'stages.1.blocks.0.ffn.layers.0.0.dft_weight' in keys
    assert 'stages.1.blocks.0.ffn.layers.1.KSM_Global.fc.weight' in keys
    outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 16), (2, 64, 8, 8)]
    sum(o.mean() for o in outs).backward()
    assert ffn.layers[1].dft_weight.grad is not None


def test_ffn_kernel_attention_pools_per_image():
    layer = FDConvLinear(32, 64, kernel_num=8)
    for name, param in layer.named_parameters():
        if 'KSM' in name:
            param.data.normal_(0, 0.5)
    layer.eval()
    tokens = torch.randn(3, 20, 32)
    with torch.no_grad():
        batched = layer(tokens)
        single = torch.cat([layer(tokens[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def test_frozen_swin_stages_keep_attention_trainable():
    model = DET_MODELS.build(
        dict(
            type='SwinTransformerFDConv',
            embed_dims=32,
            depths=(1, 1),
            num_heads=(1, 2),
            out_indices=(0, 1),
            frozen_stages=1,
            conv_cfg=dict(type='FDConv', kernel_num=8),
        )
    )
    assert model.train() is model  # the base returns None
    for name, param in model.named_parameters():
        frozen = name.startswith(('patch_embed', 'stages.0', 'norm0'))
        assert param.requires_grad == (not frozen or 'KSM' in name), name


def test_converted_swin_t_reproduces_plain_swin_t(tmp_path):
    torch.manual_seed(0)
    plain = DetSwin(**SWIN_T)
    source = {'backbone.' + k: v for k, v in plain.state_dict().items()}  # mmpretrain layout
    source['head.fc.weight'] = torch.randn(1000, 768)
    converted, summary = convert_imagenet_checkpoint(dict(state_dict=source), 'swin', CONV_CFG)
    assert (len(summary.converted), summary.skipped) == (24, ['head.fc.weight'])
    path = tmp_path / 'swin_t_fdconv.pth'
    torch.save(dict(state_dict=converted), path)
    model = DET_MODELS.build(
        dict(
            type='SwinTransformerFDConv',
            conv_cfg=CONV_CFG,
            init_cfg=ConfigDict(type='Pretrained', checkpoint=str(path)),
            **SWIN_T,
        )
    )
    model.init_weights()
    missing = {'backbone.' + k for k in model.state_dict()} - set(converted)
    assert all('KSM' in k for k in missing)
    model.eval()
    plain.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for out, expected in zip(model(x), plain(x)):
            error = ((out - expected).abs().max() / expected.abs().max()).item()
            assert error < 1e-3


TINY_SWIN = dict(
    type='SwinTransformerFDConv',
    embed_dims=32,
    depths=(1, 1),
    num_heads=(1, 2),
    out_indices=(0, 1),
    window_size=4,
    drop_path_rate=0.0,
    conv_cfg=dict(type='FDConv', kernel_num=8),
)


def swin_gradients(model, x):
    model.train()
    sum(o.square().mean() for o in model(x)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('scope,registry', [('mmdet', DET_MODELS), ('mmseg', SEG_MODELS)])
def test_frozen_swin_stages_train_only_their_attentions(scope, registry, randomize):
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(TINY_SWIN, frozen_stages=1))
    randomize(model)
    grads = swin_gradients(model, torch.randn(2, 3, 32, 32))
    frozen = [n for n in grads if n.startswith(('patch_embed', 'stages.0', 'norm0'))]
    assert frozen and all('KSM' in name for name in frozen), frozen
    assert set(grads) == {n for n, p in model.named_parameters() if p.requires_grad}


def test_swin_with_cp_gives_the_same_gradients(randomize):
    torch.manual_seed(0)
    plain = DET_MODELS.build(TINY_SWIN)
    checkpointed = DET_MODELS.build(dict(TINY_SWIN, with_cp=True))
    randomize(plain)
    checkpointed.load_state_dict(plain.state_dict())
    assert checkpointed.stages[0].blocks[0].with_cp
    x = torch.randn(2, 3, 32, 32)
    grads = [swin_gradients(model, x) for model in (plain, checkpointed)]
    assert grads[0].keys() == grads[1].keys()
    assert any('ffn.layers.1.KSM' in name for name in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
