"""What ``tools/train.py`` and ``tools/test.py`` do beyond parsing their flags.

Each flag becomes a config change (:mod:`.train_options`, :mod:`.eval_options`,
:mod:`.resume`, :mod:`.hook_config`); :mod:`.runner_setup` reads the config, registers its
library's modules (:mod:`.scope`) and builds and runs the Runner. The flags mean what they
mean in mmdet 3.3.0's and mmseg 1.2.2's own tools.
"""

from .eval_options import dump_predictions, enable_tta, enable_visualization
from .hook_config import check_checkpoint_keys, use_atomic_checkpoints
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
    'build_runner',
    'check_checkpoint_keys',
    'default_work_dir',
    'dump_predictions',
    'enable_amp',
    'enable_auto_scale_lr',
    'enable_tta',
    'enable_visualization',
    'latest_checkpoint',
    'load_config',
    'register_scope_modules',
    'resolve_resume',
    'run_test',
    'run_train',
    'setup_test_config',
    'setup_train_config',
    'use_atomic_checkpoints',
]
