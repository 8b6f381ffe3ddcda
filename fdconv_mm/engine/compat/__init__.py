"""Workarounds for the pinned stack, one file per problem, each named after the version it fixes.

:mod:`.torch_2_6_weights_only`: mmengine 0.10.7's plain ``torch.load`` under torch>=2.6's
``weights_only=True`` default. :mod:`.mmengine_0_10_cpu_launchers`: mmengine 0.10.7's
launchers on machines without an accelerator.
"""

from .mmengine_0_10_cpu_launchers import destroy_process_group, prepare_distributed
from .torch_2_6_weights_only import allow_mmengine_checkpoints, mmengine_checkpoint_globals

__all__ = [
    'allow_mmengine_checkpoints',
    'destroy_process_group',
    'mmengine_checkpoint_globals',
    'prepare_distributed',
]
