import copy
import re

import pytest
import torch
from mmdet.models.backbones import ResNet as DetResNet
from mmdet.registry import MODELS as DET_MODELS
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS

import fdconv_mm  # noqa: F401  (registers the backbones)
from fdconv_mm import FDConv
from fdconv_mm.converters import convert, convert_imagenet_checkpoint
from fdconv_mm.layers import kernel_to_spectrum
from fdconv_mm.models.backbones.fdconv_backbone import FrozenStageBatchNorm2d, lean_frozen_norms

# The backbone of the original Faster R-CNN config, with every key it has.
ORIGINAL_CONV_CFG = dict(
    type='FDConv',
    reduction=0.0625,
    kernel_num=64,
    use_fdconv_if_c_gt=16,
    use_fdconv_if_k_in=[1, 3],
    use_fbm_if_k_in=[3],
    use_fbm_for_stride=False,
    temp=None,
    att_multi=2.0,
    param_ratio=1,
    param_reduction=1.0,
    kernel_temp=1.0,
    ksm_only_kernel_att=False,
    att_grid=1,
    use_ksm_local=True,
    ksm_local_act='sigmoid',
    ksm_global_act='sigmoid',
    spatial_freq_decompose=False,
    convert_param=True,
    linear_mode=False,
    fbm_cfg=dict(
        k_list=[2, 4, 8],
        lowfreq_att=False,
        fs_feat='feat',
        act='sigmoid',
        spatial='conv',
        spatial_group=1,
        spatial_kernel=3,
        init='zero',
        global_selection=False,
    ),
)
ORIGINAL_BACKBONE = dict(
    type='ResNet_FDConv',
    depth=50,
    num_stages=4,
    out_indices=(0, 1, 2, 3),
    frozen_stages=1,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True,
    style='pytorch',
    conv_cfg=ORIGINAL_CONV_CFG,
    need_grad_list=['KSM', 'FBM'],
    with_cp=True,
)


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('scope,registry', [('mmdet', DET_MODELS), ('mmseg', SEG_MODELS)])
def test_original_backbone_builds_trains_and_has_paper_parameter_count(scope, registry):
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(copy.deepcopy(ORIGINAL_BACKBONE))
        plain = registry.build(dict(type='ResNet', depth=50))
    assert count(model) - count(plain) == 3_647_120  # paper: +3.6 M
    fdconvs = [m for m in model.modules() if isinstance(m, FDConv) and m.fdconv_active]
    assert len(fdconvs) == 16 * 3
    model.train()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [
        (2, 256, 16, 16),
        (2, 512, 8, 8),
        (2, 1024, 4, 4),
        (2, 2048, 2, 2),
    ]
    sum(o.mean() for o in outs).backward()
    assert model.layer4[2].conv2.dft_weight.grad is not None
    assert model.layer1[0].conv2.KSM_Global.fc.weight.grad is not None


def test_stem_and_shortcut_stay_plain_unless_asked():
    model = DET_MODELS.build(dict(type='ResNetFDConv', depth=50, conv_cfg=dict(type='FDConv')))
    assert type(model.conv1) is torch.nn.Conv2d
    assert type(model.layer2[0].downsample[0]) is torch.nn.Conv2d
    assert isinstance(model.layer2[0].conv1, FDConv)
    model = DET_MODELS.build(
        dict(
            type='ResNetV1dFDConv',
            depth=18,
            conv_cfg=dict(type='FDConv'),
            fdconv_stem=True,
            fdconv_downsample=True,
        )
    )
    assert isinstance(model.stem[3], FDConv) and model.stem[3].fdconv_active
    assert isinstance(model.layer2[0].downsample[1], FDConv)


def test_frozen_stages_keep_only_attention_trainable():
    model = DET_MODELS.build(
        dict(type='ResNetFDConv', depth=18, frozen_stages=2, conv_cfg=dict(type='FDConv'))
    )
    assert model.train() is model and model.eval() is model  # the bases return None
    for name, param in model.named_parameters():
        frozen = name.startswith(('conv1', 'bn1', 'layer1', 'layer2'))
        attention = 'KSM' in name or 'FBM' in name
        assert param.requires_grad == (not frozen or attention), name
    assert any('KSM' in n and n.startswith('layer1') for n, _ in model.named_parameters())


def saved_shapes(function, *args):
    """``function(*args)`` and the shapes of the tensors autograd saved for it."""
    shapes = []

    def pack(tensor):
        shapes.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        return function(*args), shapes


def test_frozen_stage_norm_is_the_batchnorm_without_saving_its_input():
    torch.manual_seed(0)
    plain = torch.nn.BatchNorm2d(6).double()
    plain.running_mean.normal_()
    plain.running_var.uniform_(0.5, 2.0)
    plain.weight.data.normal_()
    plain.bias.data.normal_()
    lean = copy.deepcopy(plain)
    lean_frozen_norms(lean)
    assert type(lean) is FrozenStageBatchNorm2d
    for norm in (plain, lean):
        norm.eval().requires_grad_(False)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    out, shapes = saved_shapes(lean, x)
    assert tuple(x.shape) not in shapes  # F.batch_norm saves x
    expected = plain(x)
    torch.testing.assert_close(out, expected)
    grad_output = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, grad_output)
    torch.testing.assert_close(grad, torch.autograd.grad(expected, x, grad_output)[0])
    # Trainable again, or in train mode, it is nn.BatchNorm2d.
    lean.weight.requires_grad_(True)
    assert tuple(x.shape) in saved_shapes(lean, x)[1]
    lean.requires_grad_(False)
    for norm in (plain, lean):
        norm.train()(x)
    torch.testing.assert_close(lean.running_mean, plain.running_mean)


def test_frozen_stages_keep_their_gradients_with_lean_norms():
    """Frozen stages with trainable attentions use FrozenStageBatchNorm2d; the attentions'
    gradients are those of the backbone with plain BatchNorm2d."""
    torch.manual_seed(0)
    cfg = dict(
        type='ResNetFDConv', depth=18, frozen_stages=2, conv_cfg=dict(type='FDConv', kernel_num=8)
    )
    lean = DET_MODELS.build(cfg)
    norms = {name: type(m) for name, m in lean.named_modules() if 'bn' in name.split('.')[-1]}
    assert all(norms[n] is FrozenStageBatchNorm2d for n in norms if n.startswith('layer1.'))
    assert all(norms[n] is torch.nn.BatchNorm2d for n in norms if n.startswith('layer3.'))
    torch.manual_seed(1)
    for name, param in lean.named_parameters():
        if 'KSM' in name or '.bn' in name:
            param.data.normal_(0, 0.3)
    for name, buffer in lean.named_buffers():
        if name.endswith(('running_mean', 'running_var')):
            buffer.copy_(torch.rand_like(buffer) + 0.5)
    plain = copy.deepcopy(lean.train())
    for module in plain.modules():  # after train(): it makes frozen stages lean again
        if type(module) is FrozenStageBatchNorm2d:
            module.__class__ = torch.nn.BatchNorm2d
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for model in (plain, lean):
        sum(o.square().mean() for o in model(x)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert any(name.startswith('layer1.') for name in grads[0])
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize('depth', [18, 101])
def test_depths_build_and_run(depth):
    model = DET_MODELS.build(
        dict(type='ResNetFDConv', depth=depth, conv_cfg=dict(type='FDConv', kernel_num=8))
    )
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, 32, 32))
    assert len(outs) == 4 and outs[-1].shape[1] == (512 if depth == 18 else 2048)


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    cfg = dict(type='ResNetFDConv', depth=18, conv_cfg=dict(type='FDConv', kernel_num=8))
    plain = DET_MODELS.build(cfg)
    checkpointed = DET_MODELS.build(dict(cfg, with_cp=True))
    checkpointed.load_state_dict(plain.state_dict())
    for module in (plain, checkpointed):  # move the attentions away from neutral
        torch.manual_seed(1)
        for name, param in module.named_parameters():
            if 'KSM' in name:
                param.data.normal_(0, 0.3)
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for module in (plain, checkpointed):
        module.train()
        sum(o.square().mean() for o in module(x.clone().requires_grad_())).backward()
        grads.append({n: p.grad.clone() for n, p in module.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def random_torchvision_resnet50(path):
    """A random ResNet-50 checkpoint in torchvision's layout (what torchvision:// serves)."""
    torch.manual_seed(0)
    plain = DetResNet(depth=50)
    state = {}
    for key, value in plain.state_dict().items():
        if key.endswith('num_batches_tracked'):
            state[key] = value
        elif key.endswith('running_var'):
            state[key] = torch.rand_like(value) + 0.5
        else:
            state[key] = torch.randn_like(value) * 0.05
    state['fc.weight'], state['fc.bias'] = torch.randn(1000, 2048), torch.randn(1000)
    torch.save(state, path)
    return state


@pytest.fixture(scope='module')
def resnet50_checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('resnet50')
    plain_path = folder / 'resnet50_torchvision.pth'
    source = random_torchvision_resnet50(plain_path)
    converted, summary = convert_imagenet_checkpoint(source, 'resnet', ORIGINAL_CONV_CFG)
    assert (len(summary.converted), len(summary.skipped)) == (48, 2)
    converted_path = folder / 'resnet50_fdconv.pth'
    torch.save(dict(state_dict=converted), converted_path)
    return plain_path, converted_path


def build_pretrained(checkpoint, **extra):
    cfg = dict(
        type='ResNetFDConv',
        depth=50,
        conv_cfg=ORIGINAL_CONV_CFG,
        init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)),
        **extra,
    )
    model = DET_MODELS.build(cfg)
    model.init_weights()
    model.eval()
    return model


def test_converted_checkpoint_reproduces_plain_resnet50(resnet50_checkpoints):
    plain_path, converted_path = resnet50_checkpoints
    plain = DetResNet(depth=50, init_cfg=dict(type='Pretrained', checkpoint=str(plain_path)))
    plain.init_weights()
    plain.eval()
    model = build_pretrained(converted_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for out, expected in zip(model(x), plain(x)):
            error = ((out - expected).abs().max() / expected.abs().max()).item()
            assert error < 1e-3


def test_plain_checkpoint_loads_without_conversion(resnet50_checkpoints, monkeypatch):
    plain_path, converted_path = resnet50_checkpoints
    messages = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'info', messages.append)
    torch.manual_seed(0)  # same random init for what no checkpoint holds (KSM, FBM)
    on_the_fly = build_pretrained(plain_path)
    conversions = [m for m in messages if m.startswith('ResNetFDConv:')]
    assert conversions == [
        'ResNetFDConv: converted 48 spatial conv weights to FDConv dft_weight while loading'
    ]
    torch.manual_seed(0)
    converted = build_pretrained(converted_path)
    expected = converted.state_dict()
    assert set(on_the_fly.state_dict()) == set(expected)
    for key, value in on_the_fly.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


DCN = dict(type='DCN', deform_groups=1, fallback_on_stride=False)
DCN_STAGES = (False, True, True, True)


def test_plain_checkpoint_keeps_every_dcn_weight(tmp_path, monkeypatch):
    """DCN conv2 in stages 2-4: only the 35 active FDConv layers convert their weight."""
    plain = DetResNet(depth=50, dcn=dict(DCN), stage_with_dcn=DCN_STAGES)
    torch.manual_seed(0)
    source = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in plain.state_dict().items()
    }
    path = tmp_path / 'resnet50_dcn.pth'
    torch.save(source, path)
    messages = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'info', messages.append)
    model = build_pretrained(path, dcn=dict(DCN), stage_with_dcn=DCN_STAGES)
    loaded = model.state_dict()

    dcn_keys = [k for k in source if re.match(r'layer[234]\.\d+\.conv2\.', k)]
    assert len(dcn_keys) == 13 * 3  # weight, conv_offset.weight, conv_offset.bias
    assert type(model.layer2[0].conv2).__name__ == 'DeformConv2dPack'
    for key in dcn_keys:
        assert torch.equal(loaded[key], source[key]), key
    active = [n for n, m in model.named_modules() if isinstance(m, FDConv) and m.fdconv_active]
    assert len(active) == 48 - 13
    for name in active:
        expected = kernel_to_spectrum(source[f'{name}.weight'], 1)
        assert torch.equal(loaded[f'{name}.dft_weight'], expected), name
    assert [m for m in messages if m.startswith('ResNetFDConv:')] == [
        'ResNetFDConv: converted 35 spatial conv weights to FDConv dft_weight while loading'
    ]
    # The offline converter, told the DCN stages, writes what the model loads.
    converted = convert(source, 'resnet', ORIGINAL_CONV_CFG, dcn_stages=[1, 2, 3])
    assert sorted(k for k in converted if k.endswith('dft_weight')) == sorted(
        f'{name}.dft_weight' for name in active
    )
    for key, value in converted.items():
        assert torch.equal(value, loaded[key]), key
