"""Convert plain (ImageNet) checkpoints into FDConv checkpoints."""

from .checkpoint_file import CheckpointFileError, load_checkpoint_file
from .checkpoint_layouts import (
    LAYOUTS,
    convnext_layout,
    resnet_layout,
    swin_layout,
    unwrap_checkpoint,
    vit_layout,
)
from .fdconv_weights import MODEL_TYPES, convert
from .imagenet import ConversionSummary, convert_imagenet_checkpoint

__all__ = [
    'LAYOUTS',
    'CheckpointFileError',
    'MODEL_TYPES',
    'ConversionSummary',
    'convert',
    'convert_imagenet_checkpoint',
    'convnext_layout',
    'load_checkpoint_file',
    'resnet_layout',
    'swin_layout',
    'unwrap_checkpoint',
    'vit_layout',
]
