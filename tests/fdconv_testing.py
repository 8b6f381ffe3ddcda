"""What the tests share: the layer cases, their builder, the attention randomiser, the
relative error, FDConv as docs/spec.md writes it, and a checkpoint write failing midway.

``fdconv_as_written`` and ``fbm_as_written`` transcribe docs/spec.md sections 3-6 one
sample at a time, with ``torch.fft`` on whole spectra and every attention multiplying the
kernel, sharing no code with the layer beyond its modules' parameters (and KSM-global's
forward pass): the independent float64 computation every execution path is held to
(tests/test_layers/test_paths.py).

Imported as ``from fdconv_testing import ...`` (``pythonpath = ["tests"]`` in
pyproject.toml).
"""

import os
from typing import Any, Dict, Iterator, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from fdconv_mm import FDConv
from fdconv_mm.layers import (
    FrequencyBandModulation,
    KernelSpatialModulationGlobal,
    KernelSpatialModulationLocal,
)
from fdconv_mm.layers.frequency import lowpass_masks
from fdconv_mm.layers.options import CONV2D_ARGS


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """``max|actual - expected| / max|expected|``, in float64 on the CPU (any dtypes and
    devices; an all-zero ``expected`` gives a huge error, not NaN)."""
    actual = actual.detach().cpu().double()
    expected = expected.detach().cpu().double()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


class LayerCase(NamedTuple):
    """An active FDConv to test.

    Attributes:
        options (dict): FDConv's keyword arguments, channels and kernel size included.
        size (tuple[int, int]): ``(H, W)`` of its input.
        covers (tuple[str, ...]): What it exercises, each tag checked against the built
            layer (tests/test_layers/test_paths.py): 'fbm' or 'no-fbm';
            'kernels-dominate' or 'maps-dominate' (:meth:`FDConv.kernel_dominates`: the
            channel and filter attentions scale the features or the kernels);
            'all-bands-differ' (every band of FBM's non-zero at this size); 'non-square';
            'one-dimensional' (W = 1); 'stride'; 'dilation'; 'padding-mode' (not zeros);
            'padding-same'; 'no-bias'; 'no-local' (no KSM-local); 'tanh' (KSM's
            activations); 'only-kernel-attention'; 'one-group' (K = 1); 'param-ratio'
            (P > 1); 'spatial-weight' (``convert_param=False``); 'fbm-options' (FBM's act,
            groups, low band weight or k_list set); 'kxk-matmul' (a kernel larger than
            1x1 whose CPU per-sample conv is a matmul of unfolded patches, not the
            grouped conv2d: ``SampleConvGeometry.uses_matmul``).
    """

    options: Dict[str, Any]
    size: Tuple[int, int]
    covers: Tuple[str, ...]


# The layers the tests run: every execution path runs every case (test_paths.py); the
# tests of autocast and compile, ONNX export, devices and empty batches pick cases by name.
LAYER_CASES: Dict[str, LayerCase] = {
    'k3-kernels-dominate': LayerCase(
        dict(in_channels=24, out_channels=20, kernel_size=3, padding=1, kernel_num=16),
        (9, 10),
        ('fbm', 'kernels-dominate', 'all-bands-differ'),
    ),
    'k3-maps-dominate': LayerCase(
        dict(in_channels=24, out_channels=20, kernel_size=3, padding=1, kernel_num=16),
        (14, 13),
        ('fbm', 'maps-dominate', 'all-bands-differ'),
    ),
    'k3-no-fbm-no-bias': LayerCase(
        dict(
            in_channels=24,
            out_channels=32,
            kernel_size=3,
            padding=1,
            bias=False,
            use_fbm_if_k_in=(),
            kernel_num=4,
        ),
        (9, 9),
        ('no-fbm', 'kernels-dominate', 'no-bias'),
    ),
    'k1': LayerCase(
        dict(in_channels=40, out_channels=24, kernel_size=1, kernel_num=8),
        (5, 7),
        ('no-fbm', 'maps-dominate'),
    ),
    'k1-kernels-dominate': LayerCase(
        dict(in_channels=32, out_channels=48, kernel_size=1, kernel_num=8),
        (3, 3),
        ('no-fbm', 'kernels-dominate'),
    ),
    'k1-fbm-tanh': LayerCase(
        dict(
            in_channels=24,
            out_channels=32,
            kernel_size=1,
            use_fbm_if_k_in=(1,),
            ksm_global_act='tanh',
            ksm_local_act='tanh',
            kernel_num=4,
        ),
        (8, 8),
        ('fbm', 'maps-dominate', 'tanh'),
    ),
    'stride-dilation-reflect': LayerCase(
        dict(
            in_channels=20,
            out_channels=22,
            kernel_size=3,
            stride=2,
            padding=2,
            dilation=2,
            padding_mode='reflect',
            kernel_num=16,
        ),
        (9, 8),
        (
            'fbm',
            'kernels-dominate',
            'all-bands-differ',
            'stride',
            'dilation',
            'padding-mode',
            'kxk-matmul',
        ),
    ),
    'stride2-kernels-dominate': LayerCase(
        dict(in_channels=32, out_channels=24, kernel_size=3, stride=2, padding=1, kernel_num=16),
        (7, 6),
        ('fbm', 'kernels-dominate', 'stride', 'kxk-matmul'),
    ),
    'k3-stride2-fbm-groups-not-dividing': LayerCase(
        dict(
            in_channels=24,
            out_channels=32,
            kernel_size=3,
            padding=1,
            stride=2,
            kernel_num=7,
            fbm_cfg=dict(lowfreq_att=True, spatial_group=2),
        ),
        (13, 10),
        (
            'fbm',
            'maps-dominate',
            'all-bands-differ',
            'stride',
            'fbm-options',
        ),
    ),
    'k3-dilation2-param-ratio2': LayerCase(
        dict(
            in_channels=24,
            out_channels=20,
            kernel_size=3,
            padding=2,
            dilation=2,
            param_ratio=2,
            kernel_num=5,
        ),
        (10, 12),
        (
            'fbm',
            'maps-dominate',
            'all-bands-differ',
            'dilation',
            'param-ratio',
        ),
    ),
    'padding-same-no-bias': LayerCase(
        dict(
            in_channels=20,
            out_channels=20,
            kernel_size=3,
            padding='same',
            bias=False,
            kernel_num=16,
        ),
        (5, 6),
        ('fbm', 'kernels-dominate', 'padding-same', 'no-bias'),
    ),
    'two-copies-tanh-groups': LayerCase(
        dict(
            in_channels=24,
            out_channels=20,
            kernel_size=3,
            padding=1,
            kernel_num=4,
            param_ratio=2,
            ksm_local_act='tanh',
            ksm_global_act='tanh',
            fbm_cfg=dict(spatial_group=4, lowfreq_att=True, act='softmax'),
        ),
        (7, 6),
        ('fbm', 'kernels-dominate', 'param-ratio', 'tanh', 'fbm-options'),
    ),
    'no-local-tanh-fbm': LayerCase(
        dict(
            in_channels=20,
            out_channels=24,
            kernel_size=3,
            padding=1,
            use_ksm_local=False,
            fbm_cfg=dict(act='tanh', k_list=(2, 4)),
            kernel_num=16,
        ),
        (6, 6),
        ('fbm', 'kernels-dominate', 'all-bands-differ', 'no-local', 'fbm-options'),
    ),
    'kernel-attention-only-one-group': LayerCase(
        dict(
            in_channels=20,
            out_channels=20,
            kernel_size=3,
            padding=1,
            kernel_num=1,
            ksm_only_kernel_att=True,
        ),
        (5, 5),
        ('fbm', 'kernels-dominate', 'one-group', 'only-kernel-attention'),
    ),
    'k3-one-group-no-local': LayerCase(
        dict(
            in_channels=20,
            out_channels=24,
            kernel_size=3,
            padding=1,
            kernel_num=1,
            use_ksm_local=False,
        ),
        (6, 7),
        ('fbm', 'kernels-dominate', 'one-group', 'no-local'),
    ),
    'spatial-weight-two-copies': LayerCase(
        dict(
            in_channels=24,
            out_channels=32,
            kernel_size=3,
            padding=1,
            convert_param=False,
            param_ratio=2,
            kernel_num=6,
        ),
        (7, 9),
        ('fbm', 'kernels-dominate', 'all-bands-differ', 'spatial-weight', 'param-ratio'),
    ),
    # docs/spec.md section 1, non-square kernels: (k, 1) on 1-D maps, (1, k), (3, 5), (5, 3)
    'k3x1-one-dimensional': LayerCase(
        dict(in_channels=20, out_channels=24, kernel_size=(3, 1), padding=(1, 0), kernel_num=16),
        (11, 1),
        (
            'fbm',
            'kernels-dominate',
            'all-bands-differ',
            'non-square',
            'one-dimensional',
            'kxk-matmul',
        ),
    ),
    'k1x3-kernels-dominate': LayerCase(
        dict(in_channels=24, out_channels=20, kernel_size=(1, 3), padding=(0, 1), kernel_num=16),
        (3, 5),
        ('fbm', 'kernels-dominate', 'non-square', 'kxk-matmul'),
    ),
    'k3x5-stride-no-local': LayerCase(
        dict(
            in_channels=20,
            out_channels=18,
            kernel_size=(3, 5),
            stride=(2, 1),
            padding=(1, 2),
            use_fdconv_if_k_in=(1, 3, 5),
            use_ksm_local=False,
            kernel_num=16,
        ),
        (9, 12),
        ('no-fbm', 'kernels-dominate', 'non-square', 'stride', 'no-local'),
    ),
    'k5x3-maps-dominate': LayerCase(
        dict(
            in_channels=20,
            out_channels=22,
            kernel_size=(5, 3),
            padding=(2, 1),
            use_fdconv_if_k_in=(3, 5),
            use_fbm_if_k_in=(5,),
            kernel_num=16,
        ),
        (13, 13),
        ('fbm', 'maps-dominate', 'non-square', 'all-bands-differ'),
    ),
}


# The attention heads, randomised also outside an FDConv.
HEAD_TYPES = (
    FrequencyBandModulation,
    KernelSpatialModulationGlobal,
    KernelSpatialModulationLocal,
)


def randomize_attention(
    module: nn.Module, seed: int = 0, scale: float = 0.5, as_trained: bool = False
) -> nn.Module:
    """Move every attention head far from its neutral init: ``N(0, scale^2)`` parameters.

    The heads are those of each active FDConv in ``module`` (KSM global and local, FBM;
    the spectral or spatial weight and the bias keep their values) and any
    ``FrequencyBandModulation`` or KSM module outside an FDConv; they are visited in
    ``module.modules()`` order with one generator seeded by ``seed``. The neutral init
    makes every attention about 1 (and FBM about the identity), which a wrong path
    through them would match.

    Args:
        module (nn.Module): A layer, a head, or a model holding some.
        seed (int): Seed of the generator. Defaults to 0.
        scale (float): Standard deviation. A deep stack of layers needs less: with 0.5
            the demo ResNet-18 turns so ill-conditioned that PyTorch's own float32 paths
            differ by 7e-5 (4e-5 from float64). Defaults to 0.5.
        as_trained (bool): Also centre the norms' weights on 1 and give each head's
            BatchNorm random running statistics, as a trained layer has (an eval-mode
            export of them is then tested too). Defaults to False.

    Returns:
        nn.Module: ``module``, changed in place.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for unit in _attention_units(module):
            for name, param in unit.named_parameters():
                if isinstance(unit, FDConv) and name in ('dft_weight', 'weight', 'bias'):
                    continue
                noise = torch.randn(param.shape, generator=generator) * scale
                if as_trained and name.endswith(('norm.weight', 'bn.weight')):
                    noise = noise + 1.0
                param.copy_(noise)
            if not as_trained:
                continue
            for bn in unit.modules():
                if isinstance(bn, _BatchNorm) and bn.running_mean is not None:
                    mean, var = bn.running_mean, bn.running_var
                    mean.copy_(torch.randn(mean.shape, generator=generator) * 0.1)
                    var.copy_(torch.rand(var.shape, generator=generator) + 0.5)
    return module


def _attention_units(module: nn.Module) -> Iterator[nn.Module]:
    """Active FDConvs and heads outside one, in ``modules()`` order."""
    if isinstance(module, FDConv):
        if module.fdconv_active:
            yield module
        return
    if isinstance(module, HEAD_TYPES):
        yield module
        return
    for child in module.children():
        yield from _attention_units(child)


def build_layer(
    name: str,
    dtype: torch.dtype = torch.float64,
    *,
    seed: int = 0,
    as_trained: bool = False,
    **options: Any,
) -> FDConv:
    """``LAYER_CASES[name]`` with random attention heads (:func:`randomize_attention`).

    Built in float32 after ``torch.manual_seed(seed)`` as ``nn.Conv2d`` initializes its
    weight, then cast to ``dtype`` (the same values for every dtype). ``options``
    override the case's (e.g. ``keep_for_backward=True``).
    """
    torch.manual_seed(seed)
    conv = FDConv(**{**LAYER_CASES[name].options, **options})
    randomize_attention(conv, seed=seed, as_trained=as_trained)
    return conv.to(dtype)


def layer_input(
    name: str, batch: int = 2, dtype: torch.dtype = torch.float64, seed: int = 0
) -> Tensor:
    """A random input of ``LAYER_CASES[name]``: (batch, Cin, H, W), from its own generator."""
    case = LAYER_CASES[name]
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, case.options['in_channels'], *case.size)
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def conv2d_options(name: str) -> Dict[str, Any]:
    """The ``nn.Conv2d`` arguments of ``LAYER_CASES[name]``."""
    options = LAYER_CASES[name].options
    return {key: value for key, value in options.items() if key in CONV2D_ARGS}


def fbm_as_written(fbm: FrequencyBandModulation, x: Tensor) -> Tensor:
    """docs/spec.md section 6: masked inverse FFTs of the whole spectrum, one conv per band.

    (B, C, H, W) -> (B, C, H, W).
    """
    height, width = x.shape[-2:]
    spectrum = torch.fft.rfft2(x, norm='ortho')
    masks = lowpass_masks(height, width, fbm.k_list).to(x.dtype)
    lows = [x] + [
        torch.fft.irfft2(spectrum * mask, s=(height, width), norm='ortho') for mask in masks
    ]
    weights = []
    for conv in fbm.freq_weight_conv_list:
        logits = conv(x)
        if fbm.act == 'sigmoid':
            weights.append(torch.sigmoid(logits) * 2)
        elif fbm.act == 'tanh':
            weights.append(1 + torch.tanh(logits))
        else:
            weights.append(logits.softmax(dim=1) * logits.shape[1])
    groups = fbm.spatial_group

    def scaled(weight, band):
        grouped = band.view(band.shape[0], groups, -1, height, width)
        return (grouped * weight.unsqueeze(2)).view_as(band)

    out = sum(scaled(weights[i], lows[i] - lows[i + 1]) for i in range(len(fbm.k_list)))
    return out + (scaled(weights[-1], lows[-1]) if fbm.lowfreq_att else lows[-1])


def fdconv_as_written(conv: FDConv, x: Tensor) -> Tensor:
    """docs/spec.md sections 3-5, one sample at a time, attentions applied to the kernel;
    kernels ``kh x kw`` (section 1, non-square kernels).

    (B, Cin, H, W) -> (B, Cout, H', W').
    """
    (kh, kw), cout, cin = conv.kernel_size, conv.out_channels, conv.in_channels
    pooled = x.mean(dim=(2, 3), keepdim=True)
    channel_att, filter_att, spatial_att, group_att = conv.KSM_Global(pooled)
    spectrum = torch.view_as_complex(conv.fourier_weight())
    copies, groups = conv.param_ratio, conv.frequency_groups
    outputs = []
    for b in range(x.shape[0]):
        mixed = 0
        for p in range(copies):
            attention = 1 if group_att is None else group_att[b, p * conv.kernel_num + groups]
            mixed = mixed + conv.alpha * spectrum[p] * attention
        matrix = torch.fft.irfft2(mixed, s=(cout * kh, cin * kw))
        kernel = matrix.view(cout, kh, cin, kw).permute(0, 2, 1, 3)
        local = conv.KSM_Local
        if local is not None:
            normalized = local.norm(pooled[b].view(1, 1, cin))
            length = local.conv.weight.shape[-1]
            logits = F.conv1d(normalized, local.conv.weight, padding=(length - 1) // 2)
            # output channel (co*kh + i)*kw + j
            logits = logits.view(cout, kh, kw, cin).permute(0, 3, 1, 2)
            if local.act == 'tanh':
                kernel = kernel * (1 + torch.tanh(logits))
            else:
                kernel = kernel * torch.sigmoid(logits) * local.att_multi
        if spatial_att is not None:
            kernel = kernel * spatial_att[b].view(1, 1, kh, kw)
        if channel_att is not None:
            kernel = kernel * channel_att[b].view(1, cin, 1, 1)
        if filter_att is not None:
            kernel = kernel * filter_att[b].view(cout, 1, 1, 1)
        sample = x[b : b + 1]
        features = fbm_as_written(conv.FBM, sample) if conv.FBM is not None else sample
        if conv.padding_mode != 'zeros':
            features = F.pad(features, conv._reversed_padding_repeated_twice, conv.padding_mode)
            padding = 0
        else:
            padding = conv.padding
        outputs.append(F.conv2d(features, kernel, conv.bias, conv.stride, padding, conv.dilation))
    return torch.cat(outputs)


class WriteFailed(Exception):
    """A full disk (or a kill) in the middle of writing a checkpoint."""


def put_failing_at(name: str):
    """A stand-in for mmengine's ``LocalBackend.put`` that writes half of any file whose name
    contains ``name``, then fails; other files it writes as ``put`` does.

    mmengine's ``save_checkpoint`` writes the serialized checkpoint with one ``put``; under
    ``AtomicCheckpointHook`` into the temporary file ``.<name>.<pid>.tmp`` beside it.
    """
    from mmengine.fileio import LocalBackend

    real_put = LocalBackend.put

    def put(backend, data: bytes, path) -> None:
        if name in os.path.basename(path):
            with open(path, 'wb') as file:
                file.write(data[: len(data) // 2])
            raise WriteFailed(path)
        real_put(backend, data, path)

    return put
