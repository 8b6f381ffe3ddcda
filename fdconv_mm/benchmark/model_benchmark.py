"""Whole detectors and segmentors with FDConv against their baselines.

Each model is built from its config with the library's registry, *not* initialized (no
``init_weights``: the configs' pretrained files need not exist; timing does not depend on
the values), SyncBN reverted to BN, and run on random images of a reduced size, the
baseline's and the FDConv model's steps in alternating rounds:

* training iteration: ``model.train_step`` (pre-processing, forward, loss, backward, SGD
  update) on a batch of ``train_batch`` images (UPerNet's pooling BN needs at least 2);
* inference: ``model.test_step`` (pre-processing, forward, post-processing, NMS) on
  ``infer_batch`` images, in eval mode without autograd;
* peak memory of one training iteration (see ``timing.MEMORY_METHODS``).

A pair whose ``part`` is ``'backbone'`` runs only its configs' backbones on random float
images: the training step is forward, the mean of every output as the loss, backward and
the SGD update; inference is the forward without autograd. With ``compile_backbone`` the
backbone of each model runs as ``torch.compile(backbone)`` (the warm-up runs include the
compilations).

Importing this module imports mmengine, mmdet and mmseg.
"""

import importlib
import os.path as osp
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmengine.utils import get_installed_path
from torch import nn

from .timing import measure_interleaved, measure_peak_memory, module_state_tensors

CONFIG_ROOT = Path(__file__).resolve().parents[2] / 'configs'


@dataclass(frozen=True)
class ModelPair:
    """An FDConv config and its baseline, run on ``image_size`` x ``image_size`` images:
    the whole model (``part='model'``) or its backbone alone (``part='backbone'``)."""

    name: str
    fdconv_config: str
    baseline_config: str
    image_size: int
    part: str = 'model'


UPERNET_R50 = (
    'upernet/upernet_r50-fdconv_4xb4-160k_ade20k-512x512.py',
    'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
)
UPERNET_SWIN_T = (
    'upernet/upernet_swin-t-fdconv_8xb2-160k_ade20k-512x512.py',
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
)
# What ``tools/benchmark.py --models`` picks from, by key.
MODEL_CHOICES = {
    'faster_rcnn': ModelPair(
        'Faster R-CNN R50-FPN',
        'faster_rcnn/faster-rcnn_r50-fdconv_fpn_1x_coco.py',
        'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        320,
    ),
    'upernet_r50': ModelPair('UPerNet R50', *UPERNET_R50, 256),
    'resnet50': ModelPair('ResNet-50 (UPerNet) backbone', *UPERNET_R50, 256, 'backbone'),
    'swin_t': ModelPair('Swin-T (UPerNet) backbone', *UPERNET_SWIN_T, 256, 'backbone'),
}
DEFAULT_MODELS = ('faster_rcnn', 'upernet_r50')
MODEL_PAIRS = tuple(MODEL_CHOICES[key] for key in DEFAULT_MODELS)


def config_path(config: str) -> str:
    """``'mmdet::x.py'``: a config installed with mmdet; otherwise one under ``configs/``."""
    if '::' in config:
        package, relative = config.split('::', 1)
        return osp.join(get_installed_path(package), '.mim', 'configs', relative)
    return str(CONFIG_ROOT / config)


def build_model(
    config: str, image_size: int, options: Optional[Dict[str, Any]] = None, part: str = 'model'
) -> Tuple[nn.Module, str]:
    """The config's model (not initialized, SyncBN as BN, for square inputs) and scope;
    its backbone alone with ``part='backbone'``.

    ``options`` are merged into the config first, as ``--cfg-options`` are.
    """
    cfg = Config.fromfile(config_path(config))
    if options:
        cfg.merge_from_dict(options)
    scope = cfg.default_scope
    if scope == 'mmseg':
        # mmseg pads every training batch to the crop size (512): keep the reduced size.
        cfg.model.data_preprocessor.size = (image_size, image_size)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model.backbone if part == 'backbone' else cfg.model)
    return revert_sync_batchnorm(model), scope


def random_batch(scope: str, batch_size: int, image_size: int, seed: int = 0) -> Dict[str, Any]:
    """Random uint8 images with annotations, as a dataloader gives them to ``train_step``."""
    torch.manual_seed(seed)
    shapes = [(3, image_size, image_size)] * batch_size
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs

        return demo_mm_inputs(
            batch_size=batch_size, image_shapes=shapes, num_items=[5] * batch_size, num_classes=80
        )
    from mmseg.structures import SegDataSample

    size = (image_size, image_size)
    samples = []
    for _ in range(batch_size):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, *size)))
        samples.append(sample)
    inputs = [torch.randint(0, 256, shape, dtype=torch.uint8) for shape in shapes]
    return dict(inputs=inputs, data_samples=samples)


def sgd_wrapper(model: nn.Module) -> OptimWrapper:
    """SGD (lr 1e-4, momentum 0.9, weight decay 1e-4) over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return OptimWrapper(torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4))


@dataclass
class ModelSteps:
    """A model's training and inference steps on fixed random batches."""

    model: nn.Module
    optim_wrapper: OptimWrapper
    train_data: Dict[str, Any]
    infer_data: Dict[str, Any]

    @classmethod
    def prepare(
        cls,
        model: nn.Module,
        scope: str,
        image_size: int,
        device: torch.device,
        train_batch: int = 2,
        infer_batch: int = 1,
    ) -> 'ModelSteps':
        """The model on ``device`` with SGD and batches of ``image_size`` images."""
        model = model.to(device)
        return cls(
            model,
            sgd_wrapper(model),
            random_batch(scope, train_batch, image_size),
            random_batch(scope, infer_batch, image_size, seed=1),
        )

    def train_step(self) -> None:
        """``model.train_step``: pre-processing, forward, loss, backward, SGD update."""
        self.model.train_step(self.train_data, self.optim_wrapper)

    def inference(self) -> None:
        """``model.test_step`` without autograd."""
        with torch.no_grad():
            self.model.test_step(self.infer_data)

    def compile_backbone(self) -> None:
        """Run the backbone as ``torch.compile(backbone)`` from now on."""
        self.model.backbone = torch.compile(self.model.backbone)

    def resident(self) -> List[torch.Tensor]:
        """What a training step starts with: model and optimizer state, input images."""
        state = module_state_tensors(self.model, self.optim_wrapper.optimizer)
        return state + list(self.train_data['inputs'])

    @property
    def params_m(self) -> float:
        return sum(p.numel() for p in self.model.parameters()) / 1e6


@dataclass
class BackboneSteps(ModelSteps):
    """A backbone's training and inference steps on fixed random float images.

    ``train_data`` / ``infer_data`` are ``dict(inputs=(B, 3, S, S))``.
    """

    @classmethod
    def prepare(
        cls,
        model: nn.Module,
        scope: str,
        image_size: int,
        device: torch.device,
        train_batch: int = 2,
        infer_batch: int = 1,
    ) -> 'BackboneSteps':
        """The backbone on ``device`` with SGD and random images on it."""
        model = model.to(device)
        generator = torch.Generator().manual_seed(0)

        def images(batch: int) -> Dict[str, Any]:
            size = (batch, 3, image_size, image_size)
            return dict(inputs=[torch.randn(size, generator=generator).to(device)])

        return cls(model, sgd_wrapper(model), images(train_batch), images(infer_batch))

    def train_step(self) -> None:
        """Forward, the mean of every output as the loss, backward, SGD update."""
        outputs = self.model(self.train_data['inputs'][0])
        self.optim_wrapper.update_params(sum(out.float().mean() for out in outputs))

    def inference(self) -> None:
        """The forward without autograd."""
        with torch.no_grad():
            self.model(self.infer_data['inputs'][0])

    def compile_backbone(self) -> None:
        self.model = torch.compile(self.model)


def measure_models(
    models: Dict[str, ModelSteps], device: torch.device, repeat: int = 5, warmup: int = 2
) -> Dict[str, Dict[str, float]]:
    """Training iteration and inference medians (the models in alternating rounds), and
    each model's training peak memory.

    Returns:
        dict: per name, ``train_ms``, ``infer_ms``, ``train_peak_mb`` and ``params_m``.
    """
    for steps in models.values():
        steps.model.train()
    train = measure_interleaved(
        {name: steps.train_step for name, steps in models.items()}, device, repeat, warmup
    )
    peaks = {
        name: measure_peak_memory(steps.train_step, device, steps.resident())
        for name, steps in models.items()
    }
    for steps in models.values():
        steps.model.eval()
    infer = measure_interleaved(
        {name: steps.inference for name, steps in models.items()}, device, repeat, warmup
    )
    return {
        name: dict(
            train_ms=train[name].median_ms,
            infer_ms=infer[name].median_ms,
            train_peak_mb=peaks[name] / 2**20,
            params_m=steps.params_m,
        )
        for name, steps in models.items()
    }


def benchmark_models(
    device: torch.device,
    pairs: Sequence[ModelPair] = MODEL_PAIRS,
    train_batch: int = 2,
    infer_batch: int = 1,
    repeat: int = 5,
    warmup: int = 2,
    image_size: Optional[int] = None,
    fdconv_options: Optional[Dict[str, Any]] = None,
    compile_backbone: bool = False,
) -> List[Dict[str, Any]]:
    """Each pair's baseline and FDConv model, and the FDConv / baseline ratios.

    ``image_size`` replaces every pair's own (reduced) size, e.g. 800 or 512 for the
    training sizes of COCO and ADE20K; ``fdconv_options`` (``--cfg-options`` style) change
    the FDConv configs, e.g. ``{'model.backbone.need_grad_list': []}``;
    ``compile_backbone`` runs every backbone under ``torch.compile``.
    """
    results = []
    for pair in pairs:
        size = image_size or pair.image_size
        row: Dict[str, Any] = dict(
            model=pair.name,
            image_size=size,
            train_batch=train_batch,
            infer_batch=infer_batch,
            baseline_config=pair.baseline_config,
            fdconv_config=pair.fdconv_config,
            fdconv_options=dict(fdconv_options or {}),
            part=pair.part,
            compiled=compile_backbone,
        )
        variants = (
            ('baseline', pair.baseline_config, None),
            ('FDConv', pair.fdconv_config, fdconv_options),
        )
        steps_class = BackboneSteps if pair.part == 'backbone' else ModelSteps
        models = {}
        for variant, config, options in variants:
            torch.manual_seed(0)
            model, scope = build_model(config, size, options, pair.part)
            models[variant] = steps_class.prepare(
                model, scope, size, device, train_batch, infer_batch
            )
            if compile_backbone:
                models[variant].compile_backbone()
        for variant, metrics in measure_models(models, device, repeat, warmup).items():
            row.update({f'{variant}_{key}': value for key, value in metrics.items()})
        del models
        for metric in ('train_ms', 'infer_ms', 'train_peak_mb'):
            row[f'{metric}_ratio'] = row[f'FDConv_{metric}'] / row[f'baseline_{metric}']
        results.append(row)
    return results
