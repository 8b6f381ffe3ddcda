"""mmengine pieces of fdconv-mm: hooks for configs, checkpoint checks, the tools' set-up.

:mod:`.hooks`: :class:`AtomicCheckpointHook` and :class:`CheckpointKeyCheckHook`, which the
shipped configs name. :mod:`.atomic_file`: whole-or-nothing file writes.
:mod:`.checkpoint_match`: does a checkpoint fit a model. :mod:`.compat`: workarounds for
mmengine 0.10.7 and torch>=2.6, one file each. :mod:`.tool_setup`: what ``tools/train.py``
and ``tools/test.py`` do with their flags.

Importing this package imports mmengine; ``import fdconv_mm`` registers the hooks when
mmengine is installed (:func:`fdconv_mm.registry.register_all`).
"""

from .atomic_file import atomic_torch_save, atomic_write, remove_stale_temporaries
from .checkpoint_match import (
    CheckpointMismatch,
    CheckpointMismatchError,
    check_checkpoint_matches,
    check_loaded_checkpoint_matches,
    checkpoint_mismatch,
)
from .compat import (
    allow_mmengine_checkpoints,
    destroy_process_group,
    mmengine_checkpoint_globals,
    prepare_distributed,
)
from .hooks import AtomicCheckpointHook, CheckpointKeyCheckHook
from .tool_setup import (
    ResumeError,
    build_runner,
    check_checkpoint_keys,
    default_work_dir,
    dump_predictions,
    enable_amp,
    enable_auto_scale_lr,
    enable_tta,
    enable_visualization,
    latest_checkpoint,
    load_config,
    register_scope_modules,
    resolve_resume,
    run_test,
    run_train,
    setup_test_config,
    setup_train_config,
    use_atomic_checkpoints,
)

__all__ = [
    'AtomicCheckpointHook',
    'CheckpointKeyCheckHook',
    'CheckpointMismatch',
    'CheckpointMismatchError',
    'ResumeError',
    'allow_mmengine_checkpoints',
    'atomic_torch_save',
    'atomic_write',
    'build_runner',
    'check_checkpoint_keys',
    'check_checkpoint_matches',
    'check_loaded_checkpoint_matches',
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
    'remove_stale_temporaries',
    'resolve_resume',
    'run_test',
    'run_train',
    'setup_test_config',
    'setup_train_config',
    'use_atomic_checkpoints',
]
