"""An mmdet or mmseg model and a one-image input from a config, for counting FLOPs.

The model is built with the registries of the library named by the config's
``default_scope`` and is *not* initialized (no ``init_weights``: the configs' pretrained
files need not exist); it runs in eval mode, in mmengine's 'tensor' mode
(``model._forward(inputs, data_samples)``), on one random image.
"""

import importlib
import os.path as osp
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope
from mmengine.utils import get_installed_path
from torch import Tensor, nn

from ..engine import load_config
from .baseline import replace_fdconv_with_plain
from .complexity import ComplexityReport, analyze_complexity

# (H, W): mmdet's 2.x get_flops default (its model-zoo FLOPs, e.g. Faster R-CNN R50-FPN
# 207 G, are at this size); mmseg's ADE20K crop size.
DEFAULT_SHAPES: Dict[str, Tuple[int, int]] = {'mmdet': (1280, 800), 'mmseg': (512, 512)}


def resolve_config_path(config: str) -> str:
    """A config file path; ``'mmdet::faster_rcnn/x.py'`` names one installed with mmdet."""
    if '::' not in config:
        return config
    package, relative = config.split('::', 1)
    return osp.join(get_installed_path(package), '.mim', 'configs', relative)


def read_config(config: str, cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    """Read a config (file or ``package::path``), apply ``--cfg-options``, register its scope."""
    return load_config(resolve_config_path(config), cfg_options)


def build_model(cfg: Config) -> nn.Module:
    """The config's model in eval mode, SyncBN as BN, weights as constructed (no init)."""
    scope = cfg.get('default_scope')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    return revert_sync_batchnorm(model).eval()


def dummy_batch(scope: str, shape: Sequence[int], seed: int = 0) -> Tuple[Tensor, List[Any]]:
    """One random, already normalized ``(1, 3, H, W)`` image and its data sample.

    Args:
        scope (str): 'mmdet' or 'mmseg'.
        shape (Sequence[int]): (H, W).
        seed (int): Seed of the image. Defaults to 0.
    """
    height, width = (int(s) for s in shape)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(1, 3, height, width, generator=generator)
    size = (height, width)
    metainfo = dict(img_shape=size, ori_shape=size, pad_shape=size, batch_input_shape=size)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample

        sample = DetDataSample(metainfo=dict(metainfo, scale_factor=(1.0, 1.0)))
    else:
        from mmseg.structures import SegDataSample

        sample = SegDataSample(metainfo=dict(metainfo, padding_size=[0, 0, 0, 0]))
    return inputs, [sample]


@contextmanager
def tensor_mode(model: nn.Module, data_samples: List[Any]) -> Iterator[nn.Module]:
    """``model(inputs)`` runs ``model._forward(inputs, data_samples)`` inside the block."""
    # mmdet names the argument ``batch_data_samples``, mmseg ``data_samples``.
    model.forward = lambda inputs: model._forward(inputs, data_samples)
    try:
        yield model
    finally:
        del model.forward


@contextmanager
def count_rois(model: nn.Module) -> Iterator[List[int]]:
    """Record how many RoIs a two-stage detector's box branch gets (its FLOPs scale with it)."""
    counts: List[int] = []
    extractor = getattr(getattr(model, 'roi_head', None), 'bbox_roi_extractor', None)
    handle = None
    if isinstance(extractor, nn.Module):
        handle = extractor.register_forward_hook(
            lambda module, args, output: counts.append(int(output.shape[0]))
        )
    try:
        yield counts
    finally:
        if handle is not None:
            handle.remove()


def analyze_model(
    model: nn.Module, inputs: Tensor, data_samples: List[Any], scope: str
) -> ComplexityReport:
    """:func:`analyze_complexity` of ``model._forward(inputs, data_samples)``."""
    with DefaultScope.overwrite_default_scope(scope), count_rois(model) as rois:
        with tensor_mode(model, data_samples), torch.no_grad():
            report = analyze_complexity(model, (inputs,))
    if rois:
        report.notes.append(f'RoIs in the box head: {sum(rois)} (its FLOPs scale with them)')
    return report


@dataclass
class ConfigAnalysis:
    """What :func:`analyze_config` returns.

    Attributes:
        scope (str): 'mmdet' or 'mmseg'.
        shape (tuple): The input's (H, W).
        report (ComplexityReport): The model's counts.
        baseline (ComplexityReport | None): The same model with plain convs, if asked.
        header (list): Lines describing the run.
    """

    scope: str
    shape: Tuple[int, int]
    report: ComplexityReport
    baseline: Optional[ComplexityReport] = None
    header: List[str] = field(default_factory=list)


def analyze_config(
    config: str,
    shape: Optional[Sequence[int]] = None,
    cfg_options: Optional[Dict[str, Any]] = None,
    baseline: bool = False,
    seed: int = 0,
) -> ConfigAnalysis:
    """Count the parameters and FLOPs of a config's model on one image.

    Args:
        config (str): Config file, or ``package::path`` of one installed with mmdet/mmseg.
        shape (Sequence[int], optional): (H, W) or (S, ) for S x S; None: ``DEFAULT_SHAPES``.
        cfg_options (dict, optional): ``--cfg-options``. Defaults to None.
        baseline (bool): Also count the model with every FDConv as a plain conv.
            Defaults to False.
        seed (int): Seed of the random image (and of the untrained weights). Defaults to 0.
    """
    if shape is not None and (len(shape) not in (1, 2) or min(shape) < 1):
        raise ValueError(f'shape must be H W or one size S, positive, got {tuple(shape)}')
    cfg = read_config(config, cfg_options)
    scope = cfg.get('default_scope')
    if shape is None:
        size = DEFAULT_SHAPES[scope]
    else:
        size = (int(shape[0]), int(shape[-1]))
    torch.manual_seed(seed)
    model = build_model(cfg)
    inputs, data_samples = dummy_batch(scope, size, seed)
    report = analyze_model(model, inputs, data_samples, scope)
    baseline_report = None
    if baseline:
        replace_fdconv_with_plain(model)
        baseline_report = analyze_model(model, inputs, data_samples, scope)
    header = [
        f'Config: {config}',
        f'Library: {scope}, model: {type(model).__name__}, input: (1, 3, {size[0]}, {size[1]})',
        '',
    ]
    return ConfigAnalysis(scope, size, report, baseline_report, header)
