"""Refuse to evaluate a checkpoint that does not fit the model.

mmengine 0.10.7's Runner loads ``load_from`` with ``strict=False``: missing, unexpected and
mis-shaped keys are logged as a warning and the model is tested with whatever stayed
initialized, so ``tools/test.py`` prints metrics of a model that is not the checkpoint's.
:func:`checkpoint_mismatch` loads the checkpoint into a copy of the model as the Runner would
(the layers' and backbones' load hooks included, so a plain conv ``weight`` converted to
FDConv's ``dft_weight`` counts as loaded) and reports every key that did not load.
:class:`~fdconv_mm.engine.hooks.CheckpointKeyCheckHook` refuses such a checkpoint at test time.
"""

import copy
import re
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Tuple

import torch
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader

# Runner.load_checkpoint's default ``revise_keys``: DDP-saved keys lose their 'module.'.
WRAPPER_PREFIX = re.compile(r'^module\.')
# Like mmengine's load_state_dict, a BatchNorm without ``num_batches_tracked`` counts as loaded.
IGNORED_MISSING = 'num_batches_tracked'
SHOWN_KEYS = 3


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not match the model it is loaded into."""


@dataclass
class CheckpointMismatch:
    """What :func:`checkpoint_mismatch` found; empty (falsy) when the checkpoint fits.

    Args:
        missing (list[str]): Model keys the checkpoint does not provide.
        unexpected (list[str]): Checkpoint keys the model has no place for.
        misshaped (list[str]): ``'key: checkpoint (a, b), model (c, d)'`` per mis-shaped key.
        errors (list[str]): Other errors the loading reported (e.g. from a load hook).
    """

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    misshaped: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshaped or self.errors)

    def summary(self) -> str:
        """One line: per kind, the count and the first :data:`SHOWN_KEYS` keys."""
        parts = []
        for kind, keys in (
            ('missing', self.missing),
            ('unexpected', self.unexpected),
            ('mis-shaped', self.misshaped),
            ('other errors', self.errors),
        ):
            if keys:
                more = f', ... ({len(keys) - SHOWN_KEYS} more)' if len(keys) > SHOWN_KEYS else ''
                parts.append(f'{len(keys)} {kind}: {", ".join(keys[:SHOWN_KEYS])}{more}')
        return '; '.join(parts)


def shape_text(shape: torch.Size) -> str:
    return f'({", ".join(map(str, shape))})'


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model that a checkpoint's keys belong to, under DDP-like and TTA wrappers.

    mmengine 0.10.7's ``load_state_dict`` loads into ``module`` of a model wrapper and of a
    :class:`~mmengine.model.BaseTTAModel` (``tools/test.py --tta``), whose own keys carry a
    ``module.`` prefix that checkpoints do not have.
    """
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def checkpoint_state_dict(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    """The state dict of a checkpoint as the Runner loads it: under ``state_dict`` if there."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return {WRAPPER_PREFIX.sub('', key): value for key, value in state_dict.items()}


def checkpoint_mismatch(
    model: torch.nn.Module, state_dict: Mapping[str, Any]
) -> CheckpointMismatch:
    """Load ``state_dict`` into a copy of ``model`` and report what did not load.

    Args:
        model (torch.nn.Module): The model (model wrappers such as DDP and test-time
            augmentation wrappers are unwrapped, see :func:`unwrap_model`); it is not changed.
        state_dict (Mapping): Keys as :func:`checkpoint_state_dict` returns them.

    Returns:
        CheckpointMismatch: Missing, unexpected and mis-shaped keys, in the model's and the
        checkpoint's order; falsy when every key loaded.
    """
    probe = copy.deepcopy(unwrap_model(model))
    model_shapes = {key: value.shape for key, value in probe.state_dict().items()}
    found: List[Tuple[List[str], List[str]]] = []

    def record(module: torch.nn.Module, incompatible: Any) -> None:
        found.append((list(incompatible.missing_keys), list(incompatible.unexpected_keys)))

    # A post hook sees the final missing and unexpected keys, also when a size mismatch makes
    # load_state_dict raise afterwards.
    probe.register_load_state_dict_post_hook(record)
    mismatch = CheckpointMismatch()
    try:
        probe.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:
        if not found:  # raised before loading finished, not a report of bad keys
            raise
        lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        mismatch.errors = [line for line in lines if not line.startswith('size mismatch for')]
    missing, unexpected = found[-1]
    mismatch.missing = [key for key in missing if IGNORED_MISSING not in key]
    mismatch.unexpected = unexpected
    mismatch.misshaped = [
        f'{key}: checkpoint {shape_text(value.shape)}, model {shape_text(model_shapes[key])}'
        for key, value in state_dict.items()
        if key in model_shapes
        and isinstance(value, torch.Tensor)
        and value.shape != model_shapes[key]
    ]
    return mismatch


def check_loaded_checkpoint_matches(
    model: torch.nn.Module, loaded: Mapping[str, Any], name: str, remedy: str
) -> None:
    """Raise :class:`CheckpointMismatchError` unless a loaded checkpoint fits ``model`` fully.

    Args:
        model (torch.nn.Module): The model to be tested (e.g. ``runner.model``).
        loaded (Mapping): The checkpoint as ``torch.load`` returns it.
        name (str): The checkpoint's file or URL, named in the error.
        remedy (str): How to test it anyway, ending the one-line error.
    """
    mismatch = checkpoint_mismatch(model, checkpoint_state_dict(loaded))
    if mismatch:
        raise CheckpointMismatchError(
            f'checkpoint {name} does not match the model ({mismatch.summary()}); {remedy}'
        )


def check_checkpoint_matches(model: torch.nn.Module, checkpoint: str, flag: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``checkpoint`` loads fully into ``model``.

    Args:
        model (torch.nn.Module): The model to be tested (e.g. ``runner.model``).
        checkpoint (str): A file or URL, read as mmengine's Runner reads ``load_from``.
        flag (str): The option that skips this check, named in the error.
    """
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    check_loaded_checkpoint_matches(model, loaded, checkpoint, f'pass {flag} to test it anyway')
