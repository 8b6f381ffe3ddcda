"""From a config (and a checkpoint) to a checked ONNX file that ONNX Runtime runs like PyTorch.

What ``tools/deployment/export_onnx.py`` runs (:func:`export_config`):

1. build the config's model (mmdet or mmseg registry, eval mode, SyncBN as BN, weights as
   constructed: :func:`fdconv_mm.analysis.model_from_config.build_model`) and load the
   checkpoint, refused unless it fits the model (every key, every shape);
2. pick what to export (:func:`~.wrappers.exportable_part`): the backbone, or the whole
   model where its own forward allows (a detector's backbone + neck features, a
   segmentor's logits);
3. make the input ``(B, 3, H, W)``: random normal values (an already normalized image), or
   images resized to ``H x W`` and put through the model's data preprocessor;
4. export (:func:`~.onnx_export.export_onnx`), check the file with ``onnx.checker`` and run it
   in ONNX Runtime on the CPU against PyTorch on the same input
   (:func:`~.onnx_export.relative_differences`).
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .onnx_export import (
    EXPORTERS,
    OPSET,
    ExportError,
    check_onnx,
    export_onnx,
    first_line,
    input_dims,
    relative_differences,
    run_onnxruntime,
    torch_outputs,
)
from .wrappers import exportable_part

PathLike = Union[str, Path]
DEFAULT_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    """What :func:`export_config` did and measured.

    Attributes:
        path (Path): The ONNX file.
        part (str): 'backbone' or 'model'.
        exported (str): What was exported, e.g. ``'FasterRCNN.extract_feat (...)'``.
        input_shape (tuple): ``(B, 3, H, W)``.
        input_source (str): 'random' or the image paths.
        output_names (list[str]): In order.
        output_shapes (list[tuple]): In order.
        differences (list[float]): Per output, ``max|onnx - torch| / max|torch|``.
        tolerance (float): The largest difference accepted.
        header (list[str]): Lines describing the run (config, checkpoint).
        dynamic_hw (bool): Whether height and width are dynamic in the file.
        other_inputs (list[tuple]): With dynamic height and width, per further input
            (random, another size) its shape and its per-output differences.
        export_s (float): Seconds the export took.
    """

    path: Path
    part: str
    exported: str
    input_shape: Tuple[int, ...]
    input_source: str
    output_names: List[str]
    output_shapes: List[Tuple[int, ...]]
    differences: List[float]
    tolerance: float
    header: List[str] = field(default_factory=list)
    dynamic_hw: bool = False
    other_inputs: List[Tuple[Tuple[int, ...], List[float]]] = field(default_factory=list)
    export_s: float = 0.0

    @property
    def max_difference(self) -> float:
        """The largest of :attr:`differences` and those at :attr:`other_inputs`."""
        return max([*self.differences, *(d for _, diffs in self.other_inputs for d in diffs)])

    @property
    def passed(self) -> bool:
        return self.max_difference <= self.tolerance

    def lines(self) -> List[str]:
        """The report as text lines: run, outputs with their differences, verdict."""
        lines = list(self.header)
        sizes = 'batch fixed, height and width dynamic' if self.dynamic_hw else 'fixed shape'
        lines += [
            f'Exported (--part {self.part}): {self.exported} -> {self.path} ({sizes}, '
            f'{self.export_s:.1f} s)',
            f'Input: {self.input_shape} ({self.input_source}); onnx.checker: passed',
            'ONNX Runtime (CPU) against PyTorch, max|onnx - torch| / max|torch| per output:',
        ]
        for name, shape, difference in zip(self.output_names, self.output_shapes, self.differences):
            lines.append(f'  {name} {shape}: {difference:.3e}')
        for shape, differences in self.other_inputs:
            shown = ', '.join(f'{difference:.3e}' for difference in differences)
            lines.append(f'Input {shape} (random normal): {shown}')
        verdict = 'within' if self.passed else 'ABOVE'
        lines.append(
            f'Largest relative difference: {self.max_difference:.3e} '
            f'({verdict} the tolerance {self.tolerance:g})'
        )
        if not self.passed and max(self.differences) <= self.tolerance:
            lines.append(
                'The file is right at the export size only: an operator of the model fixed '
                'its sizes there (e.g. adaptive pooling); export without --dynamic-hw, at '
                'the size it will run at'
            )
        return lines


def parse_shape(shape: Sequence[int]) -> Tuple[int, int]:
    """``(H, W)`` from two positive integers."""
    if len(shape) != 2 or min(int(s) for s in shape) < 1:
        raise ValueError(f'--shape must be two positive integers H W, got {tuple(shape)}')
    return int(shape[0]), int(shape[1])


def build_config_model(
    config: str,
    checkpoint: Optional[PathLike] = None,
    cfg_options: Optional[Dict[str, Any]] = None,
    allow_partial_load: bool = False,
    seed: int = 0,
) -> Tuple[nn.Module, str]:
    """A config's model in eval mode, with the checkpoint's weights if given, and its scope.

    Args:
        config (str): Config file, or ``mmdet::path`` / ``mmseg::path``.
        checkpoint (str | Path, optional): An mmengine checkpoint (``{'state_dict': ...}``)
            or a bare state dict. None: the weights as constructed (seeded by ``seed``).
        cfg_options (dict, optional): ``--cfg-options``. Defaults to None.
        allow_partial_load (bool): Load a checkpoint that misses or adds keys. Defaults
            to False: such a checkpoint is refused.
        seed (int): Seed of the constructed weights. Defaults to 0.

    Raises:
        FileNotFoundError: If the config or the checkpoint does not exist.
        CheckpointMismatchError: If the checkpoint does not fit the model.
    """
    from mmengine.runner import load_checkpoint

    from ..analysis.model_from_config import build_model, read_config
    from ..engine import check_checkpoint_matches

    if '::' not in config and not Path(config).is_file():
        raise FileNotFoundError(f'config {config}: no such file')
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f'checkpoint {checkpoint}: no such file')
    cfg = read_config(config, cfg_options)
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ValueError(
            f"config {config}: default_scope must be 'mmdet' or 'mmseg', got {scope!r}"
        )
    torch.manual_seed(seed)
    model = build_model(cfg)
    if checkpoint is not None:
        if not allow_partial_load:
            check_checkpoint_matches(model, str(checkpoint), '--allow-partial-load')
        load_checkpoint(model, str(checkpoint), map_location='cpu', strict=False)
    return model.eval(), scope


def random_inputs(batch: int, shape: Tuple[int, int], seed: int = 0) -> Tensor:
    """``(batch, 3, H, W)`` standard normal values: a normalized image's range."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *shape, generator=generator)


def image_inputs(
    model: nn.Module, images: Sequence[PathLike], shape: Tuple[int, int], batch: int
) -> Tensor:
    """Images as the model sees them: read, resized to ``H x W``, data-preprocessed.

    Each file is read as mmcv reads it (BGR), resized to exactly ``shape`` (no aspect
    ratio kept), and the batch goes through ``model.data_preprocessor`` (channel order,
    normalization, padding) in test mode.

    Args:
        images: One path per sample, or a single path for every sample.
        shape: (H, W).
        batch: The batch size.

    Returns:
        Tensor: ``(batch, 3, H, W)`` float.

    Raises:
        ValueError: If the number of images is neither 1 nor ``batch``, or the
            preprocessor pads the images to another size.
    """
    import mmcv

    if len(images) not in (1, batch):
        raise ValueError(f'--image: give 1 image or --batch ({batch}) images, got {len(images)}')
    paths = list(images) * batch if len(images) == 1 else list(images)
    pictures = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f'image {path}: no such file')
        picture = mmcv.imresize(mmcv.imread(str(path)), (shape[1], shape[0]))
        pictures.append(torch.from_numpy(picture).permute(2, 0, 1).contiguous())
    with torch.no_grad():
        inputs = model.data_preprocessor(dict(inputs=pictures), False)['inputs']
    if tuple(inputs.shape[2:]) != tuple(shape):
        raise ValueError(
            f'the data preprocessor pads {shape[0]} x {shape[1]} images to '
            f'{inputs.shape[2]} x {inputs.shape[3]}: choose a --shape it keeps (e.g. '
            'multiples of its size_divisor)'
        )
    return inputs.float()


def export_config(
    config: str,
    out: PathLike,
    shape: Sequence[int],
    checkpoint: Optional[PathLike] = None,
    batch: int = 1,
    part: str = 'model',
    images: Optional[Sequence[PathLike]] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    cfg_options: Optional[Dict[str, Any]] = None,
    allow_partial_load: bool = False,
    opset: int = OPSET,
    seed: int = 0,
    dynamic_hw: bool = False,
    check_shapes: Optional[Sequence[Sequence[int]]] = None,
    exporter: str = 'dynamo',
    optimize: bool = False,
) -> ExportReport:
    """Export a config's backbone or model to ONNX, check it and compare it with PyTorch.

    Args:
        config (str): Config file, or ``mmdet::path`` / ``mmseg::path``.
        out (str | Path): The ONNX file to write.
        shape (Sequence[int]): (H, W) of the input.
        checkpoint (str | Path, optional): Weights; None: as constructed. Defaults to None.
        batch (int): Batch size, fixed in the file. Defaults to 1.
        part (str): 'backbone' or 'model' (see :func:`~.wrappers.exportable_part`).
            Defaults to 'model'.
        images (Sequence, optional): Image files for the input (see :func:`image_inputs`);
            None: random values. Defaults to None.
        tolerance (float): Largest accepted relative difference. Defaults to 1e-4.
        cfg_options (dict, optional): ``--cfg-options``. Defaults to None.
        allow_partial_load (bool): Accept a checkpoint that does not fit the model
            exactly. Defaults to False.
        opset (int): ONNX opset. Defaults to :data:`~.onnx_export.OPSET`.
        seed (int): Seed of the random input and constructed weights. Defaults to 0.
        dynamic_hw (bool): Leave height and width dynamic in the file (the batch stays
            fixed) and compare at ``check_shapes`` too. Defaults to False.
        check_shapes (Sequence, optional): With ``dynamic_hw``, further (H, W) to compare
            at, on random inputs; None: ``(H + 32, W + 32)``. Defaults to None.
        exporter (str): 'dynamo' or 'torchscript' (see :func:`~.onnx_export.export_onnx`).
            Defaults to 'dynamo'.
        optimize (bool): The dynamo exporter's graph optimization. Defaults to False.

    Returns:
        ExportReport: What was exported and the differences; ``passed`` says whether the
        largest is within ``tolerance`` (the file is written either way).

    Raises:
        ValueError: For bad arguments (named after the tool's options).
        FileNotFoundError: For a missing config, checkpoint or image.
    """
    size = parse_shape(shape)
    if batch < 1:
        raise ValueError(f'--batch must be a positive integer, got {batch}')
    if tolerance < 0:
        raise ValueError(f'--tolerance must be >= 0, got {tolerance}')
    if exporter not in EXPORTERS:
        raise ValueError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if dynamic_hw and exporter != 'dynamo':
        raise ValueError('--dynamic-hw needs --exporter dynamo (TorchScript traces fixed sizes)')
    if check_shapes and not dynamic_hw:
        raise ValueError('--check-shape needs --dynamic-hw (a fixed-shape file takes one size)')
    others = [parse_shape(s) for s in check_shapes or [(size[0] + 32, size[1] + 32)]]
    model, scope = build_config_model(config, checkpoint, cfg_options, allow_partial_load, seed)
    module = exportable_part(model, scope, part).eval()
    if images:
        inputs = image_inputs(model, images, size, batch)
        source = ', '.join(str(image) for image in images)
    else:
        inputs = random_inputs(batch, size, seed)
        source = f'random normal, seed {seed}'
    start = time.perf_counter()
    names = export_onnx(module, inputs, out, opset, dynamic_hw, exporter, optimize)
    export_s = time.perf_counter() - start
    check_onnx(out)
    if dynamic_hw and not all(isinstance(dim, str) for dim in input_dims(out)[2:]):
        raise ExportError(
            f'--dynamic-hw: the exporter fixed the input of {out} to {input_dims(out)}: '
            'torch.export could not keep height and width dynamic through the model (its '
            'shape guards hold at some sizes only); export without --dynamic-hw, at the '
            'size it will run at'
        )
    references = torch_outputs(module, inputs)
    outputs = run_onnxruntime(out, inputs)
    other_inputs = []
    for other in others if dynamic_hw else []:
        extra = random_inputs(batch, other, seed + 1)
        try:
            extra_outputs = run_onnxruntime(out, extra)
        except Exception as error:  # onnxruntime's errors have no common public base
            raise ExportError(
                f'ONNX Runtime cannot run {out} at input {tuple(extra.shape)} '
                f'({type(error).__name__}: {first_line(error)}): an operator of the model '
                'fixed its sizes at export (e.g. adaptive pooling); export without '
                '--dynamic-hw'
            ) from error
        differences = relative_differences(extra_outputs, torch_outputs(module, extra))
        other_inputs.append((tuple(extra.shape), differences))
    return ExportReport(
        path=Path(out),
        part=part,
        exported=module.description(),
        input_shape=tuple(inputs.shape),
        input_source=source,
        output_names=names,
        output_shapes=[tuple(reference.shape) for reference in references],
        differences=relative_differences(outputs, references),
        tolerance=tolerance,
        dynamic_hw=dynamic_hw,
        other_inputs=other_inputs,
        export_s=export_s,
        header=[
            f'Config: {config}',
            f'Checkpoint: {checkpoint or "none (weights as constructed)"}',
        ],
    )
