"""Hooks that configs name; :func:`fdconv_mm.registry.register_all` registers them."""

from .atomic_checkpoint_hook import LAST_CHECKPOINT, AtomicCheckpointHook
from .checkpoint_key_check_hook import CheckpointKeyCheckHook

__all__ = ['LAST_CHECKPOINT', 'AtomicCheckpointHook', 'CheckpointKeyCheckHook']
