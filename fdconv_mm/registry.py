"""The one place that touches the OpenMMLab registries.

``import fdconv_mm`` calls :func:`register_all` when mmengine is importable, so that
``conv_cfg=dict(type='FDConv', ...)`` resolves through ``mmcv.cnn.build_conv_layer``
under any default scope (it falls back to mmengine's root ``MODELS``), the backbones
resolve under the 'mmdet' and 'mmseg' scopes, and mmengine checkpoints load with
``torch.load``'s ``weights_only=True``. The names ``ResNet_FDConv`` are the original
configs'.
"""

from importlib import metadata
from typing import Dict, Tuple

from .layers import FDConv

# package -> (lowest supported, first unsupported, what to install)
SUPPORTED_VERSIONS: Dict[str, Tuple[str, str, str]] = {
    'mmengine': ('0.10.0', '1.0.0', 'mmengine==0.10.7'),
    'mmcv': ('2.0.0', '2.2.0', 'mmcv==2.1.0 built with its ops (see the README)'),
    'mmdet': ('3.0.0', '3.4.0', 'mmdet==3.3.0'),
    'mmsegmentation': ('1.0.0', '1.3.0', 'mmsegmentation==1.2.2'),
}


def _version_tuple(version: str) -> Tuple[int, ...]:
    parts = []
    for part in version.split('+')[0].split('.')[:3]:
        digits = ''.join(ch for ch in part if ch.isdigit()) or '0'
        parts.append(int(digits))
    return tuple(parts)


def check_versions() -> None:
    """Raise ``ImportError`` naming what to install if an installed mm* is unsupported."""
    for package, (lowest, too_high, install) in SUPPORTED_VERSIONS.items():
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
        if not _version_tuple(lowest) <= _version_tuple(installed) < _version_tuple(too_high):
            raise ImportError(
                f'fdconv_mm supports {package}>={lowest},<{too_high}, found {installed}: '
                f'install {install}'
            )


def register_all() -> None:
    """Register FDConv, the backbones and the hooks, and let torch load mmengine checkpoints.

    FDConv and the hooks :class:`~fdconv_mm.engine.hooks.AtomicCheckpointHook` and
    :class:`~fdconv_mm.engine.hooks.CheckpointKeyCheckHook` go into mmengine's root
    ``MODELS`` and ``HOOKS`` (found under any scope), the backbones into mmdet's and mmseg's
    ``MODELS``. :func:`~fdconv_mm.engine.compat.allow_mmengine_checkpoints` makes checkpoints
    saved by mmengine load under torch>=2.6's ``weights_only=True``, so that mmdet's and
    mmseg's own APIs (``init_detector``, ``DetInferencer``, ``init_model``,
    ``MMSegInferencer``, a ``Runner`` with ``load_from``, their ``tools/test.py``) load them
    once a config's ``custom_imports`` has imported ``fdconv_mm``.
    """
    check_versions()
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import HOOKS, MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    from .engine.compat import allow_mmengine_checkpoints
    from .engine.hooks import AtomicCheckpointHook, CheckpointKeyCheckHook
    from .models import backbones

    allow_mmengine_checkpoints()
    MODELS.register_module('FDConv', module=FDConv)
    for hook in (AtomicCheckpointHook, CheckpointKeyCheckHook):
        HOOKS.register_module(hook.__name__, module=hook)
    det_backbones = {
        ('ConvNeXtFDConv', 'ConvNeXt_FDConv'): backbones.ConvNeXtFDConv,
        ('ResNetFDConv', 'ResNet_FDConv'): backbones.ResNetFDConv,
        ('ResNetV1dFDConv', 'ResNetV1d_FDConv'): backbones.ResNetV1dFDConv,
        ('SwinTransformerFDConv', 'SwinTransformer_FDConv'): backbones.SwinTransformerFDConv,
        ('MixVisionTransformerFDConv',): backbones.MixVisionTransformerFDConv,
    }
    seg_backbones = {
        ('ConvNeXtFDConv', 'ConvNeXt_FDConv'): backbones.ConvNeXtFDConv,
        ('ResNetFDConv', 'ResNet_FDConv'): backbones.SegResNetFDConv,
        ('ResNetV1cFDConv', 'ResNetV1c_FDConv'): backbones.SegResNetV1cFDConv,
        ('ResNetV1dFDConv', 'ResNetV1d_FDConv'): backbones.SegResNetV1dFDConv,
        ('SwinTransformerFDConv', 'SwinTransformer_FDConv'): backbones.SegSwinTransformerFDConv,
        ('MixVisionTransformerFDConv',): backbones.MixVisionTransformerFDConv,
    }
    for registry, classes in ((DET_MODELS, det_backbones), (SEG_MODELS, seg_backbones)):
        for names, module in classes.items():
            registry.register_module(list(names), module=module)
