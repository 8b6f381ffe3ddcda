"""The parts of an mmdet or mmseg model that ONNX export sees, as modules of one tensor.

``torch.onnx.export`` wants ``module(inputs)`` with a tensor in and tensors out; the models'
own forwards take data samples and return structures. Each wrapper below runs the model's
own methods on a normalized image batch ``(B, 3, H, W)`` (what the data preprocessor
returns) and nothing else:

* :class:`BackboneFeatures`: ``backbone(inputs)``, its stage outputs;
* :class:`DetectorFeatures`: an mmdet detector's ``extract_feat(inputs)``, the backbone plus
  neck features the heads read (box decoding and NMS are mmdeploy's part);
* :class:`SegmentorLogits`: an mmseg segmentor's ``encode_decode(inputs, metas)``, the
  decode head's logits resized to the input size, as its ``predict`` computes them before
  the arg-max.
"""

from typing import Sequence, Tuple

from torch import Tensor, nn

PARTS = ('backbone', 'model')


def as_tuple(outputs: object, what: str) -> Tuple[Tensor, ...]:
    """``outputs`` (a tensor, or a list or tuple of tensors) as a tuple of tensors."""
    if isinstance(outputs, Tensor):
        return (outputs,)
    if isinstance(outputs, (list, tuple)) and all(isinstance(o, Tensor) for o in outputs):
        return tuple(outputs)
    raise TypeError(f'{what} returned {type(outputs).__name__}, not tensors')


class BackboneFeatures(nn.Module):
    """A backbone's stage outputs: ``(B, 3, H, W) -> tuple of (B, C_i, H_i, W_i)``.

    Args:
        backbone (nn.Module): The backbone (e.g. ``model.backbone``).
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def description(self) -> str:
        return f'{type(self.backbone).__name__} (the backbone)'

    def output_names(self, count: int) -> Tuple[str, ...]:
        return tuple(f'backbone_{i}' for i in range(count))

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        return as_tuple(self.backbone(inputs), type(self.backbone).__name__)


class DetectorFeatures(nn.Module):
    """An mmdet detector's ``extract_feat``: ``(B, 3, H, W) -> tuple of (B, C, H_i, W_i)``.

    Args:
        detector (nn.Module): An mmdet detector with ``extract_feat`` (backbone, then the
            neck if it has one).
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def description(self) -> str:
        return f'{type(self.detector).__name__}.extract_feat (backbone and neck features)'

    def output_names(self, count: int) -> Tuple[str, ...]:
        prefix = 'neck' if getattr(self.detector, 'with_neck', False) else 'backbone'
        return tuple(f'{prefix}_{i}' for i in range(count))

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        return as_tuple(self.detector.extract_feat(inputs), 'extract_feat')


class SegmentorLogits(nn.Module):
    """An mmseg segmentor's logits at the input size: ``(B, 3, H, W) -> (B, classes, H, W)``.

    Runs ``segmentor.encode_decode`` with each image's shape taken from ``inputs`` (one
    unpadded image per sample), so the final resize follows the input's size.

    Args:
        segmentor (nn.Module): An mmseg segmentor with ``encode_decode``
            (``EncoderDecoder``, ``CascadeEncoderDecoder``).
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def description(self) -> str:
        return f'{type(self.segmentor).__name__}.encode_decode (logits at the input size)'

    def output_names(self, count: int) -> Tuple[str, ...]:
        return ('seg_logits',)

    def forward(self, inputs: Tensor) -> Tensor:
        # A torch.Size img_shape is the one mmseg's predict_by_feat resizes to as it is.
        metas = [dict(img_shape=inputs.shape[2:])] * inputs.shape[0]
        return self.segmentor.encode_decode(inputs, metas)


def exportable_part(model: nn.Module, scope: str, part: str = 'model') -> nn.Module:
    """The wrapper that exports ``part`` of an mmdet or mmseg ``model``.

    Args:
        model (nn.Module): The model a config builds.
        scope (str): The config's ``default_scope`` ('mmdet' or 'mmseg').
        part (str): 'backbone' (the backbone alone) or 'model' (a detector's backbone and
            neck features, a segmentor's logits). Defaults to 'model'.

    Returns:
        nn.Module: The wrapper, in the model's training or eval mode.

    Raises:
        ValueError: For an unknown ``part``, or a model whose forward cannot be exported
            whole (or that has no backbone), saying what to use instead.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    name = type(model).__name__
    wrapper: nn.Module
    if part == 'backbone':
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, nn.Module):
            raise ValueError(f'--part backbone: the model {name} has no backbone')
        wrapper = BackboneFeatures(backbone)
    elif scope == 'mmdet' and callable(getattr(model, 'extract_feat', None)):
        wrapper = DetectorFeatures(model)
    elif scope == 'mmseg' and callable(getattr(model, 'encode_decode', None)):
        wrapper = SegmentorLogits(model)
    else:
        raise ValueError(
            f'--part model: the model {name} (scope {scope!r}) cannot be exported whole: '
            'exported are mmdet detectors (extract_feat: backbone and neck features) and mmseg '
            'segmentors (encode_decode: logits); use --part backbone'
        )
    # A new module is in training mode: the exporter would restore the model to it.
    return wrapper.train(model.training)


def output_names(module: nn.Module, count: int) -> Sequence[str]:
    """Names of the ``count`` outputs of a wrapper of this module (``output_0``, ... else)."""
    names = getattr(module, 'output_names', None)
    return names(count) if callable(names) else tuple(f'output_{i}' for i in range(count))
