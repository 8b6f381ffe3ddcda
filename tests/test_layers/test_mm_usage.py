"""FDConv as mm code calls it: mmcv's ConvModule (in-place ReLU, norm) and RoI heads."""

import copy

import pytest
import torch
from mmcv.cnn import ConvModule
from mmengine.registry import MODELS

import fdconv_mm  # noqa: F401  (registers FDConv)

FDCONV_CFG = dict(type='FDConv', kernel_num=8)


def train_step(module, x):
    x = x.clone().requires_grad_()
    out = module(x)
    weight = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out * weight).sum().backward()
    return out.detach(), x.grad, {n: p.grad for n, p in module.named_parameters()}


@pytest.mark.parametrize('norm_cfg', [None, dict(type='BN')], ids=['no norm', 'BN'])
def test_conv_module_with_inplace_relu_trains_like_an_out_of_place_relu(norm_cfg, randomize):
    """No norm: the in-place ReLU directly modifies FDConv's output (above the threshold)."""
    torch.manual_seed(0)
    inplace = ConvModule(32, 32, 3, padding=1, conv_cfg=FDCONV_CFG, norm_cfg=norm_cfg).train()
    randomize(inplace.conv)
    assert inplace.activate.inplace and not inplace.conv.kernel_dominates(24, 24)
    out_of_place = copy.deepcopy(inplace)
    out_of_place.activate.inplace = False
    x = torch.randn(2, 32, 24, 24)
    expected_out, expected_grad_x, expected_grads = train_step(out_of_place, x)
    out, grad_x, grads = train_step(inplace, x)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(grad_x, expected_grad_x)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], msg=name)


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_conv_module_on_an_empty_roi_batch(mode):
    module = ConvModule(256, 256, 3, padding=1, conv_cfg=FDCONV_CFG, norm_cfg=dict(type='BN'))
    getattr(module, mode)()
    rois = torch.randn(0, 256, 14, 14, requires_grad=True)
    out = module(rois)
    assert out.shape == (0, 256, 14, 14)
    out.sum().backward()
    assert rois.grad.shape == rois.shape
    assert torch.equal(module.conv.dft_weight.grad, torch.zeros_like(module.conv.dft_weight))


def test_mask_head_with_fdconv_on_no_rois():
    """mmdet's FCNMaskHead trains on the positive RoIs of a batch, which may be none."""
    from mmdet.registry import MODELS as DET_MODELS

    head = DET_MODELS.build(
        dict(
            type='FCNMaskHead',
            num_convs=2,
            in_channels=64,
            conv_out_channels=64,
            num_classes=3,
            conv_cfg=FDCONV_CFG,
        )
    ).train()
    assert all(conv.conv.fdconv_active for conv in head.convs)
    for batch in (0, 2):
        mask_preds = head(torch.randn(batch, 64, 14, 14))
        assert mask_preds.shape == (batch, 3, 28, 28)
        head.zero_grad()
        mask_preds.sum().backward()
        assert all(p.grad is not None for p in head.parameters())


def test_registry_build_names_a_misspelled_option():
    with pytest.raises(TypeError, match=r"'kernel_nm' \(did you mean 'kernel_num'\?\)"):
        MODELS.build(
            dict(type='FDConv', in_channels=32, out_channels=32, kernel_size=3, kernel_nm=8)
        )


def test_frequency_order_travels_through_mmengine_checkpoints(tmp_path):
    """mmengine's save_checkpoint keeps the state dict's metadata: a checkpoint of a model
    trained with frequency_order='stable' is refused by a default model (strict) and logged
    (non-strict), naming both orders (docs/spec.md section 9)."""
    from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint

    def model(order):
        cfg = dict(FDCONV_CFG, frequency_order=order)
        return ConvModule(32, 32, 3, padding=1, conv_cfg=cfg, norm_cfg=dict(type='BN'))

    path = str(tmp_path / 'stable.pth')
    save_checkpoint(model('stable').state_dict(), path)
    load_checkpoint(model('stable'), path, strict=True)
    with pytest.raises(RuntimeError, match="frequency_order='stable'.*frequency_order='original'"):
        load_checkpoint(model('original'), path, strict=True)
