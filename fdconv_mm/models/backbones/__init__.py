"""FDConv variants of the mmdet and mmseg backbones."""

from .resnet_fdconv import (
    ResNetFDConv,
    ResNetV1dFDConv,
    SegResNetFDConv,
    SegResNetV1cFDConv,
    SegResNetV1dFDConv,
)
from .swin_fdconv import SegSwinTransformerFDConv, SwinTransformerFDConv

__all__ = [
    'ResNetFDConv',
    'ResNetV1dFDConv',
    'SegResNetFDConv',
    'SegResNetV1cFDConv',
    'SegResNetV1dFDConv',
    'SegSwinTransformerFDConv',
    'SwinTransformerFDConv',
]
