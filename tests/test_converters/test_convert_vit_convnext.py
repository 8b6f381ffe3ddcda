"""tools/convert_weights.py --model_type vit / convnext on random checkpoints of every layout.

Each layout is made from one backbone state dict (mmseg's own modules for ViT and MiT, the
mmpretrain ConvNeXt keys otherwise) by an inverse key mapping written here, independently of
the converter; the official SegFormer mapping is also checked against mmseg's mit2mmseg.
"""

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from mmseg.models.backbones import MixVisionTransformer, VisionTransformer

from fdconv_mm.converters import convnext_layout, vit_layout
from fdconv_testing import relative_error

ROOT = Path(__file__).parents[2]
MMSEG_TOOLS = Path(importlib.util.find_spec('mmseg').origin).parent / '.mim' / 'tools'


def load_script(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return load_script(ROOT / 'tools' / 'convert_weights.py', 'convert_weights')


def expected_spectrum(weight):
    """SPEC section 7 for a 1x1 (or linear) weight: (1, Cout, Cin // 2 + 1, 2)."""
    matrix = weight.reshape(weight.shape[0], weight.shape[1])
    spectrum = torch.view_as_real(torch.fft.rfft2(matrix.double())) / (min(matrix.shape) // 2)
    return spectrum.float()[None]


def run(tool, capsys, tmp_path, state, model_type, *flags, name='plain.pth'):
    """Save ``state`` (under 'state_dict'), convert it with the tool; saved dict and stdout."""
    source, target = tmp_path / name, tmp_path / ('fdconv_' + name)
    torch.save({'state_dict': state}, source)
    argv = ['--model_type', model_type, '--weight_path', str(source), '--save_path', str(target)]
    assert tool.main([*argv, '--force', *map(str, flags)]) == 0
    return torch.load(target, weights_only=True), capsys.readouterr().out


def check_conversion(saved, backbone_state, ffn_key, active, prefix=''):
    """Active FFN weights became their spectra, everything else is copied, nothing more."""
    expected_keys = set()
    for key, value in backbone_state.items():
        if ffn_key.match(key) and active(value):
            spectral = prefix + key[: -len('weight')] + 'dft_weight'
            torch.testing.assert_close(saved[spectral], expected_spectrum(value))
            expected_keys.add(spectral)
        else:
            assert torch.equal(saved[prefix + key], value), key
            expected_keys.add(prefix + key)
    assert set(saved) == expected_keys


def is_active(weight):
    return min(weight.shape[:2]) > 16


# ---------------------------------------------------------------- mmseg MiT and SegFormer

MIT_FFN = re.compile(r'layers\.\d+\.1\.\d+\.ffn\.layers\.[04]\.weight$')


# Stage 0 (16 channels, FFN 16 -> 32) stays plain; stage 1 (32, FFN 32 -> 64) is FDConv.
TINY_MIT = dict(
    embed_dims=16,
    num_stages=2,
    num_layers=[1, 2],
    num_heads=[1, 2],
    patch_sizes=[7, 3],
    strides=[4, 2],
    sr_ratios=[2, 1],
    out_indices=(0, 1),
    mlp_ratio=2,
)


def tiny_mit():
    torch.manual_seed(0)
    return MixVisionTransformer(**TINY_MIT)


def mit_state():
    state = tiny_mit().state_dict()
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}


def mmseg_mit_to_official(state):
    """The official SegFormer keys of an mmseg MiT state dict (the inverse of mit2mmseg)."""
    official = {}
    for key, value in state.items():
        stage_key = re.match(r'layers\.(\d+)\.(\d)\.(.*)', key)
        stage, part, name = int(stage_key[1]) + 1, stage_key[2], stage_key[3]
        if part == '0':
            official[f'patch_embed{stage}.' + name.replace('projection.', 'proj.')] = value
        elif part == '2':
            official[f'norm{stage}.{name}'] = value
        else:
            block, name = name.split('.', 1)
            head = f'block{stage}.{block}.'
            if name.startswith('attn.attn.in_proj_'):
                param = name[len('attn.attn.in_proj_') :]
                dims = value.shape[0] // 3
                official[head + 'attn.q.' + param] = value[:dims]
                official[head + 'attn.kv.' + param] = value[dims:]
                continue
            name = name.replace('attn.attn.out_proj.', 'attn.proj.')
            name = name.replace('ffn.layers.0.', 'mlp.fc1.').replace('ffn.layers.4.', 'mlp.fc2.')
            name = name.replace('ffn.layers.1.', 'mlp.dwconv.dwconv.')
            if name.startswith('mlp.fc') and name.endswith('weight'):
                value = value[:, :, 0, 0]
            official[head + name] = value
    official['head.weight'] = torch.randn(10, 32)
    official['head.bias'] = torch.randn(10)
    return official


def test_official_segformer_maps_to_mmseg_mit_as_mit2mmseg_does():
    state = mit_state()
    official = mmseg_mit_to_official(state)
    assert 'block2.1.mlp.fc1.weight' in official and 'block1.0.attn.kv.bias' in official
    layout, kept, skipped = vit_layout(official)
    assert layout == 'official SegFormer (mit_b*)' and skipped == ['head.weight', 'head.bias']
    assert list(kept) == list(state)  # mmseg's order
    assert all(torch.equal(kept[k], state[k]) for k in state)
    tiny_mit().load_state_dict(kept, strict=True)
    mit2mmseg = load_script(MMSEG_TOOLS / 'model_converters' / 'mit2mmseg.py', 'mit2mmseg')
    reference = mit2mmseg.convert_mit(official)
    assert reference.keys() == kept.keys()
    assert all(torch.equal(reference[k], kept[k]) for k in kept)


@pytest.mark.parametrize('layout', ['mmseg MiT', 'mm* model MiT', 'official SegFormer (mit_b*)'])
def test_convert_mit_layouts_with_the_tool(tool, capsys, tmp_path, layout):
    state = mit_state()
    source = {
        'mmseg MiT': state,
        'mm* model MiT': {
            **{'backbone.' + k: v for k, v in state.items()},
            'decode_head.conv_seg.weight': torch.randn(4, 8, 1, 1),
        },
        'official SegFormer (mit_b*)': mmseg_mit_to_official(state),
    }[layout]
    saved, out = run(tool, capsys, tmp_path, source, 'vit')
    assert f'({layout} layout)' in out
    assert 'converted to dft_weight: 4' in out  # fc1 and fc2 of stage 1's two blocks
    skipped = {
        'mmseg MiT': '0 []',
        'mm* model MiT': "1 ['decode_head.conv_seg.weight']",
        'official SegFormer (mit_b*)': "2 ['head.weight', 'head.bias']",
    }[layout]
    assert f'skipped:                 {skipped}' in out
    assert saved['meta']['model_type'] == 'vit' and saved['meta']['layout'] == layout
    check_conversion(saved['state_dict'], state, MIT_FFN, is_active)
    assert saved['state_dict']['layers.1.1.0.ffn.layers.0.dft_weight'].shape == (1, 64, 17, 2)
    assert saved['state_dict']['layers.1.1.1.ffn.layers.4.dft_weight'].shape == (1, 32, 33, 2)


def test_convert_mit_stages_and_activity_options(tool, capsys, tmp_path):
    state = mit_state()
    saved, out = run(tool, capsys, tmp_path, state, 'vit', '--use-fdconv-if-c-gt', 8)
    assert 'converted to dft_weight: 6' in out
    check_conversion(saved['state_dict'], state, MIT_FFN, lambda w: min(w.shape[:2]) > 8)
    saved, out = run(tool, capsys, tmp_path, state, 'vit', '--use-fdconv-if-c-gt', 8, '--stages', 0)
    assert 'converted to dft_weight: 2' in out
    spectral = sorted(k for k in saved['state_dict'] if k.endswith('dft_weight'))
    assert spectral == [
        'layers.0.1.0.ffn.layers.0.dft_weight',
        'layers.0.1.0.ffn.layers.4.dft_weight',
    ]
    saved, out = run(tool, capsys, tmp_path, state, 'vit', '--param-ratio', 2)
    assert saved['state_dict']['layers.1.1.0.ffn.layers.0.dft_weight'].shape == (2, 64, 17, 2)


# ---------------------------------------------------------------- mmseg ViT

VIT_FFN = re.compile(r'layers\.\d+\.ffn\.layers\.(0\.0|1)\.weight$')


def test_convert_mmseg_vit_with_the_tool(tool, capsys, tmp_path):
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=(32, 32), patch_size=8, embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=2
    )
    state = vit.state_dict()
    saved, out = run(tool, capsys, tmp_path, state, 'vit')
    assert '(mmseg ViT layout)' in out and 'converted to dft_weight: 4' in out
    check_conversion(saved['state_dict'], state, VIT_FFN, is_active)
    assert saved['state_dict']['layers.1.ffn.layers.0.0.dft_weight'].shape == (1, 64, 17, 2)
    assert saved['state_dict']['layers.1.ffn.layers.1.dft_weight'].shape == (1, 32, 33, 2)
    with pytest.raises(SystemExit, match='an mmseg ViT .* has no stages; leave stages unset'):
        run(tool, capsys, tmp_path, state, 'vit', '--stages', 0)


def test_unknown_vit_layout_names_the_expected_keys(tool, capsys, tmp_path):
    timm_vit = {'blocks.0.mlp.fc1.weight': torch.randn(64, 32), 'head.weight': torch.randn(2, 32)}
    with pytest.raises(SystemExit, match='unrecognised vit checkpoint layout: expected mmseg MiT'):
        run(tool, capsys, tmp_path, timm_vit, 'vit')
    with pytest.raises(ValueError, match='vit2mmseg.py first; the file has keys like blocks.0'):
        vit_layout(timm_vit)


# ---------------------------------------------------------------- ConvNeXt

CONVNEXT_FFN = re.compile(r'stages\.\d+\.\d+\.pointwise_conv[12]\.weight$')


def convnext_state(channels=(16, 32), depths=(1, 2)):
    """Random mmpretrain ``ConvNeXt`` backbone keys (linear pointwise convs, final norm)."""
    torch.manual_seed(0)
    state = {
        'downsample_layers.0.0.weight': torch.randn(channels[0], 3, 4, 4),
        'downsample_layers.0.0.bias': torch.randn(channels[0]),
        'downsample_layers.0.1.weight': torch.randn(channels[0]),
        'downsample_layers.0.1.bias': torch.randn(channels[0]),
    }
    for i in range(1, len(channels)):
        state[f'downsample_layers.{i}.0.weight'] = torch.randn(channels[i - 1])
        state[f'downsample_layers.{i}.0.bias'] = torch.randn(channels[i - 1])
        state[f'downsample_layers.{i}.1.weight'] = torch.randn(channels[i], channels[i - 1], 2, 2)
        state[f'downsample_layers.{i}.1.bias'] = torch.randn(channels[i])
    for i, (width, depth) in enumerate(zip(channels, depths)):
        for j in range(depth):
            block = f'stages.{i}.{j}.'
            state[block + 'gamma'] = torch.randn(width)
            state[block + 'depthwise_conv.weight'] = torch.randn(width, 1, 7, 7)
            state[block + 'depthwise_conv.bias'] = torch.randn(width)
            state[block + 'norm.weight'] = torch.randn(width)
            state[block + 'norm.bias'] = torch.randn(width)
            state[block + 'pointwise_conv1.weight'] = torch.randn(4 * width, width)
            state[block + 'pointwise_conv1.bias'] = torch.randn(4 * width)
            state[block + 'pointwise_conv2.weight'] = torch.randn(width, 4 * width)
            state[block + 'pointwise_conv2.bias'] = torch.randn(width)
    last = len(channels) - 1
    state[f'norm{last}.weight'] = torch.randn(channels[-1])
    state[f'norm{last}.bias'] = torch.randn(channels[-1])
    return state


def to_timm(state):
    timm = {}
    for key, value in state.items():
        key = re.sub(r'^downsample_layers\.0\.', 'stem.', key)
        key = re.sub(r'^downsample_layers\.(\d+)\.', r'stages.\1.downsample.', key)
        key = re.sub(r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.', key)
        key = key.replace('depthwise_conv.', 'conv_dw.').replace('pointwise_conv', 'mlp.fc')
        timm[re.sub(r'^norm\d+\.', 'head.norm.', key)] = value
    return {**timm, 'head.fc.weight': torch.randn(10, 32), 'head.fc.bias': torch.randn(10)}


def to_official(state):
    official = {}
    for key, value in state.items():
        key = key.replace('depthwise_conv.', 'dwconv.').replace('pointwise_conv', 'pwconv')
        official[re.sub(r'^norm\d+\.', 'norm.', key)] = value
    return {**official, 'head.weight': torch.randn(10, 32), 'head.bias': torch.randn(10)}


def to_mmpretrain_classifier(state):
    return {
        **{'backbone.' + k: v for k, v in state.items()},
        'head.fc.weight': torch.randn(10, 32),
        'head.fc.bias': torch.randn(10),
    }


CONVNEXT_LAYOUTS = {
    'mmpretrain/mm*': (to_mmpretrain_classifier, ['head.fc.weight', 'head.fc.bias']),
    'mmpretrain backbone': (dict, []),
    'timm': (to_timm, ['head.fc.weight', 'head.fc.bias']),
    'official (facebookresearch)': (to_official, ['head.weight', 'head.bias']),
}


@pytest.mark.parametrize('layout', list(CONVNEXT_LAYOUTS))
def test_convnext_layouts_map_to_mmpretrain_keys(layout):
    state = convnext_state()
    make, expected_skipped = CONVNEXT_LAYOUTS[layout]
    name, kept, skipped = convnext_layout({'module.' + k: v for k, v in make(state).items()})
    assert (name, skipped) == (layout, expected_skipped)
    assert list(kept) == list(state)
    assert all(kept[k] is state[k] for k in state)


@pytest.mark.parametrize('layout', list(CONVNEXT_LAYOUTS))
def test_convert_convnext_layouts_with_the_tool(tool, capsys, tmp_path, layout):
    state = convnext_state()
    make, expected_skipped = CONVNEXT_LAYOUTS[layout]
    saved, out = run(tool, capsys, tmp_path, make(state), 'convnext')
    assert f'({layout} layout)' in out
    assert 'converted to dft_weight: 4' in out  # stage 1 (32 -> 128 -> 32), two blocks
    assert f'skipped:                 {len(expected_skipped)} {expected_skipped}' in out
    check_conversion(saved['state_dict'], state, CONVNEXT_FFN, is_active, prefix='backbone.')
    spectrum = saved['state_dict']['backbone.stages.1.0.pointwise_conv1.dft_weight']
    assert spectrum.shape == (1, 128, 17, 2)
    saved, out = run(
        tool, capsys, tmp_path, make(state), 'convnext', '--stages', 0, '--use-fdconv-if-c-gt', 8
    )
    spectral = sorted(k for k in saved['state_dict'] if k.endswith('dft_weight'))
    assert spectral == [
        'backbone.stages.0.0.pointwise_conv1.dft_weight',
        'backbone.stages.0.0.pointwise_conv2.dft_weight',
    ]


def test_unknown_convnext_layout_names_the_expected_keys(tool, capsys, tmp_path):
    with pytest.raises(
        SystemExit, match='unrecognised convnext checkpoint layout: expected mmpretrain'
    ):
        run(tool, capsys, tmp_path, {'layer1.0.conv1.weight': torch.ones(1)}, 'convnext')


# ---------------------------------------------------------------- converted files in the backbones


def check_keys_fit(model, state):
    """``state`` loads into (a copy of) ``model`` with at most KSM parameters missing (none
    where the layers take plain conv weights: their heads keep their init)."""
    result = copy.deepcopy(model).load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert all('KSM_' in k for k in result.missing_keys)
    assert sum(k.endswith('dft_weight') for k in model.state_dict()) == 4


def check_same_outputs(fdconv, plain):
    fdconv.eval()
    plain.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = list(zip(fdconv(images), plain(images)))
    assert outputs
    for actual, expected in outputs:
        assert relative_error(actual, expected) < 1e-4


def save_plain(tmp_path, state):
    """The unconverted file, for the backbone to convert on load."""
    torch.save({'state_dict': state}, tmp_path / 'plain.pth')
    return {'state_dict': state}, str(tmp_path / 'plain.pth')


@pytest.mark.parametrize('layout', ['mmseg MiT', 'official SegFormer (mit_b*)', 'on load'])
def test_converted_mit_file_reproduces_mmseg_mit(tool, capsys, tmp_path, layout):
    from fdconv_mm.models.backbones.mit_fdconv import MixVisionTransformerFDConv

    plain = tiny_mit()
    plain.init_weights()
    state = plain.state_dict()
    if layout == 'on load':
        saved, target = save_plain(tmp_path, state)
    else:
        source = state if layout == 'mmseg MiT' else mmseg_mit_to_official(state)
        saved, _ = run(tool, capsys, tmp_path, source, 'vit')
        assert sum(k.endswith('dft_weight') for k in saved['state_dict']) == 4
        target = str(tmp_path / 'fdconv_plain.pth')
    fdconv = MixVisionTransformerFDConv(
        **TINY_MIT,
        conv_cfg=dict(type='FDConv', kernel_num=8),
        init_cfg=dict(type='Pretrained', checkpoint=target),
    )
    fdconv.init_weights()
    check_keys_fit(fdconv, saved['state_dict'])
    check_same_outputs(fdconv, plain)


@pytest.mark.parametrize('layout', [*CONVNEXT_LAYOUTS, 'on load'])
def test_converted_convnext_file_reproduces_plain_convnext(tool, capsys, tmp_path, layout):
    from fdconv_mm.models.backbones.convnext_fdconv import ConvNeXtFDConv

    arch = dict(
        arch=dict(depths=[1, 2], channels=[16, 32]), out_indices=(1,), gap_before_final_norm=False
    )
    torch.manual_seed(0)
    plain = ConvNeXtFDConv(**arch, layer_scale_init_value=1.0)
    plain.init_weights()
    state = plain.state_dict()
    assert list(state) == list(convnext_state())  # the keys this file's layouts start from
    if layout == 'on load':
        saved, target = save_plain(tmp_path, to_mmpretrain_classifier(state))
    else:
        saved, _ = run(tool, capsys, tmp_path, CONVNEXT_LAYOUTS[layout][0](state), 'convnext')
        assert sum(k.endswith('dft_weight') for k in saved['state_dict']) == 4
        target = str(tmp_path / 'fdconv_plain.pth')
    fdconv = ConvNeXtFDConv(
        **arch,
        conv_cfg=dict(type='FDConv', kernel_num=8),
        init_cfg=dict(type='Pretrained', checkpoint=target, prefix='backbone.'),
    )
    fdconv.init_weights()
    backbone_state = {
        k[len('backbone.') :]: v
        for k, v in saved['state_dict'].items()
        if k.startswith('backbone.')
    }
    check_keys_fit(fdconv, backbone_state)
    check_same_outputs(fdconv, plain)
