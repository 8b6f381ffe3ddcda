"""The CPU demo's pieces: a synthetic shapes dataset and the two figures it reports."""

from .plots import plot_predictions, plot_training_curves, read_scalars
from .synthetic_shapes import (
    DEMO_CLASSES,
    DEMO_PALETTE,
    DEMO_SEG_CLASSES,
    DEMO_SEG_PALETTE,
    ShapeInstance,
    generate_demo_dataset,
    is_demo_dataset_complete,
    render_sample,
    semantic_map,
    write_demo_image,
)

__all__ = [
    'DEMO_CLASSES',
    'DEMO_PALETTE',
    'DEMO_SEG_CLASSES',
    'DEMO_SEG_PALETTE',
    'ShapeInstance',
    'generate_demo_dataset',
    'is_demo_dataset_complete',
    'plot_predictions',
    'plot_training_curves',
    'read_scalars',
    'render_sample',
    'semantic_map',
    'write_demo_image',
]
