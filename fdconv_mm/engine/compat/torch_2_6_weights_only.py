"""Compatibility of mmengine 0.10.7 with torch>=2.6: its checkpoints load with ``weights_only``.

torch 2.6 made ``weights_only=True`` the default of ``torch.load``, and mmengine 0.10.7 calls
plain ``torch.load``. Checkpoints saved by mmengine's ``CheckpointHook`` hold, besides tensors, the
runner's ``message_hub``: :class:`~mmengine.logging.HistoryBuffer` objects whose state holds numpy
arrays, numpy scalars (``eta``) and the buffer's statistics methods, which pickle writes as
``getattr(HistoryBuffer, 'min')``. :func:`allow_mmengine_checkpoints` allowlists exactly those
globals with ``torch.serialization.add_safe_globals``; everything else stays refused.
"""

import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

SafeGlobal = Union[Callable, Tuple[Callable, str]]

# The methods ``HistoryBuffer._set_default_statistics`` puts in every buffer's pickled state.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')

# MessageHub stores Python floats and ints, which a HistoryBuffer turns into numpy arrays of
# these dtypes (int32 is numpy 1.x's default integer on Windows). No object or string dtypes.
NUMPY_DTYPES = ('float64', 'int64', 'int32')


def history_buffer_method(owner: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` that returns only HistoryBuffer's statistics methods.

    A real ``getattr`` in the allowlist would let any checkpoint read any attribute of any
    allowlisted object; this one answers the only question an mmengine checkpoint asks.

    Args:
        owner (Any): Must be the class :class:`~mmengine.logging.HistoryBuffer`.
        name (str): One of :data:`HISTORY_BUFFER_STATISTICS`.

    Returns:
        Callable: The unbound method, e.g. ``HistoryBuffer.mean``.
    """
    if owner is not HistoryBuffer or name not in HISTORY_BUFFER_STATISTICS:
        raise pickle.UnpicklingError(
            f'getattr({owner!r}, {name!r}) is not allowed: fdconv_mm allows getattr only for '
            f'the HistoryBuffer statistics {HISTORY_BUFFER_STATISTICS}'
        )
    return getattr(owner, name)


def mmengine_checkpoint_globals() -> List[SafeGlobal]:
    """The globals that an mmengine checkpoint needs beyond torch's defaults.

    Returns:
        list: Entries for ``torch.serialization.add_safe_globals``; numpy's array and scalar
        rebuilders are listed under their numpy 1.x (``numpy.core``) and 2.x (``numpy._core``)
        paths, so that checkpoints written with either load.
    """
    multiarray = np.core.multiarray
    safe: List[SafeGlobal] = [
        HistoryBuffer,
        (history_buffer_method, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
    ]
    for package in ('numpy.core', 'numpy._core'):
        safe.append((multiarray._reconstruct, f'{package}.multiarray._reconstruct'))
        safe.append((multiarray.scalar, f'{package}.multiarray.scalar'))
    # The class of ``np.dtype('float64')`` is ``numpy.dtypes.Float64DType`` on numpy>=1.25;
    # torch restores a dtype's state only when that class is allowlisted.
    safe.extend(type(np.dtype(name)) for name in NUMPY_DTYPES)
    return safe


def allow_mmengine_checkpoints() -> None:
    """Allowlist :func:`mmengine_checkpoint_globals` for ``torch.load(weights_only=True)``.

    Idempotent. Call it before building a Runner that loads or resumes a checkpoint; torch's
    default ``weights_only=True`` stays in force, so a file holding any other global (a class,
    ``os.system``, ...) is still refused.
    """
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
