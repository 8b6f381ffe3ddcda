"""fdconv-mm: FDConv (Frequency Dynamic Convolution, CVPR 2025) for OpenMMLab.

``from fdconv_mm import FDConv`` needs only torch. When mmengine is importable, importing
the package (as a config's ``custom_imports`` does) also registers FDConv for
``conv_cfg=dict(type='FDConv', ...)`` and the backbones, and lets mmengine checkpoints load
under torch>=2.6's ``weights_only=True`` (see :func:`fdconv_mm.registry.register_all`).
"""

from .layers import FDConv, convert_to_fdconv
from .version import __version__

try:
    import mmengine  # noqa: F401
except ModuleNotFoundError as error:
    if error.name != 'mmengine':
        raise
else:
    from .registry import register_all

    register_all()

__all__ = ['FDConv', 'convert_to_fdconv', '__version__']
