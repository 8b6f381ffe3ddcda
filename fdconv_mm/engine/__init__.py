"""Running mmdet and mmseg configs through ``tools/``: config set-up, checkpoints, processes.

Importing this package imports mmengine (``import fdconv_mm`` alone does not).
"""

from .checkpoint import allow_mmengine_checkpoints, mmengine_checkpoint_globals
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
    'ResumeError',
    'allow_mmengine_checkpoints',
    'build_runner',
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
]
