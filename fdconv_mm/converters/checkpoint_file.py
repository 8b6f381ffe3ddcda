"""Read a checkpoint file to convert, or say in one line why it cannot be converted."""

import os
import pickle
import re
from collections.abc import Mapping
from typing import Any, Union

import torch

PathLike = Union[str, 'os.PathLike[str]']

EXPECTED = "expected a state dict or a checkpoint dict with 'state_dict'/'model'"
# torch.load's weights-only refusal starts so, and names the refused global further on.
WEIGHTS_ONLY_FAILURE = 'Weights only load failed'
REFUSED_GLOBAL = re.compile(r'Unsupported global: GLOBAL (\S+)')


class CheckpointFileError(ValueError):
    """A file that is not a checkpoint this package can convert; the message names it."""


def first_sentence(error: BaseException) -> str:
    """``'KeyError: 101'``: the error's type and its message up to the first full stop."""
    text = str(error).strip().strip("'")
    text = re.split(r'\.(?:\s|$)|\n', text, maxsplit=1)[0].strip()
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


def load_checkpoint_file(path: PathLike, unsafe_load: bool = False) -> Mapping:
    """``torch.load`` a checkpoint on the CPU; a :class:`CheckpointFileError` if it is none.

    Args:
        path (str or os.PathLike): The file.
        unsafe_load (bool): Unpickle any object (``weights_only=False``); only for files
            you trust. Defaults to False.

    Returns:
        Mapping: The loaded dict: a state dict, or a checkpoint holding one under
        'state_dict' or 'model'.

    Raises:
        CheckpointFileError: One line naming the file: unreadable, not a PyTorch file,
            holding objects ``weights_only`` refuses, or holding something else than a dict.
    """
    try:
        loaded: Any = torch.load(path, map_location='cpu', weights_only=not unsafe_load)
    except OSError as error:
        raise CheckpointFileError(f'cannot read {path}: {error.strerror or error}') from error
    except pickle.UnpicklingError as error:
        if WEIGHTS_ONLY_FAILURE not in str(error):
            raise CheckpointFileError(
                f'{path} is not a PyTorch checkpoint (torch.load: {first_sentence(error)})'
            ) from error
        refused = REFUSED_GLOBAL.search(str(error))
        what = f' ({refused[1]})' if refused else ''
        raise CheckpointFileError(
            f'{path} holds objects besides tensors{what} that torch.load refuses with '
            'weights_only=True; if you trust the file, pass --unsafe-load'
        ) from error
    except Exception as error:  # noqa: BLE001 - torch.load raises anything on a non-torch file
        raise CheckpointFileError(
            f'{path} is not a PyTorch checkpoint (torch.load: {first_sentence(error)})'
        ) from error
    if not isinstance(loaded, Mapping):
        raise CheckpointFileError(f'{path} holds a {type(loaded).__name__}; {EXPECTED}')
    return loaded
