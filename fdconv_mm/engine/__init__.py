"""Running mmdet and mmseg configs through ``tools/``: config set-up, checkpoints, processes.

Importing this package imports mmengine; ``import fdconv_mm`` imports the parts that
:func:`fdconv_mm.registry.register_all` needs when mmengine is installed.
"""

from .atomic_file import atomic_torch_save, atomic_write
from .checkpoint import allow_mmengine_checkpoints, mmengine_checkpoint_globals
from .checkpoint_hook import AtomicCheckpointHook, use_atomic_checkpoints
from .checkpoint_match import (
    CheckpointMismatch,
    CheckpointMismatchError,
    check_checkpoint_matches,
    checkpoint_mismatch,
)
from .distributed import destroy_process_group, prepare_distributed
from .eval_options import dump_predictions, enable_tta, enable_visualization
from .resume import ResumeError, latest_checkpoint, resolve_resume
from .runner_setup import (
    build_runner,
    default_work_dir,
    load_config,
    run_test,
    run_train,
    setup_test_config,
    setup_train_config,
)
from .scope import register_scope_modules
from .train_options import enable_amp, enable_auto_scale_lr

__all__ = [
    'AtomicCheckpointHook',
    'CheckpointMismatch',
    'CheckpointMismatchError',
    'ResumeError',
    'allow_mmengine_checkpoints',
    'atomic_torch_save',
    'atomic_write',
    'build_runner',
    'check_checkpoint_matches',
    'checkpoint_mismatch',
    'default_work_dir',
    'destroy_process_group',
    'dump_predictions',
    'enable_amp',
    'enable_auto_scale_lr',
    'enable_tta',
    'enable_visualization',
    'latest_checkpoint',
    'load_config',
    'mmengine_checkpoint_globals',
    'prepare_distributed',
    'register_scope_modules',
    'resolve_resume',
    'run_test',
    'run_train',
    'setup_test_config',
    'setup_train_config',
    'use_atomic_checkpoints',
]
