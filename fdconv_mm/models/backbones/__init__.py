"""FDConv variants of the mmdet and mmseg backbones."""

from .convnext_fdconv import ConvNeXtFDConv
from .mit_fdconv import MixVisionTransformerFDConv
from .resnet_fdconv import (
    ResNetFDConv,
    ResNetV1dFDConv,
    SegResNetFDConv,
    SegResNetV1cFDConv,
    SegResNetV1dFDConv,
)
from .swin_fdconv import SegSwinTransformerFDConv, SwinTransformerFDConv

__all__ = [
    'ConvNeXtFDConv',
    'MixVisionTransformerFDConv',
    'ResNetFDConv',
    'ResNetV1dFDConv',
    'SegResNetFDConv',
    'SegResNetV1cFDConv',
    'SegResNetV1dFDConv',
    'SegSwinTransformerFDConv',
    'SwinTransformerFDConv',
]
