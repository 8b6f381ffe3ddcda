"""The hooks ``tools/train.py`` and ``tools/test.py`` make sure a config has.

The shipped configs name both hooks; a config of your own that does not gets them from the
tools as it did before the configs named them: mmengine's ``CheckpointHook`` becomes
:class:`~fdconv_mm.engine.hooks.AtomicCheckpointHook`, and a test refuses a checkpoint that
does not fit the model (:class:`~fdconv_mm.engine.hooks.CheckpointKeyCheckHook`). What a
config already has is kept.
"""

from typing import Any

from mmengine.config import Config, ConfigDict
from mmengine.hooks import CheckpointHook

from ..hooks import AtomicCheckpointHook, CheckpointKeyCheckHook


def use_atomic_checkpoints(cfg: Config) -> None:
    """Make ``default_hooks.checkpoint`` an :class:`AtomicCheckpointHook` if it is mmengine's.

    A checkpoint hook of another type (one of your own) is kept.

    Args:
        cfg (Config): The full config.
    """
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook', CheckpointHook):
        hook['type'] = AtomicCheckpointHook.__name__


def check_checkpoint_keys(cfg: Config, allow_partial_load: bool = False) -> None:
    """Make a test refuse a checkpoint that does not fit the model, or allow it.

    ``allow_partial_load=True`` sets that option of every ``CheckpointKeyCheckHook`` in
    ``custom_hooks``; otherwise a config without the hook gets one (the hooks' own option
    stays as the config sets it).

    Args:
        cfg (Config): The full config.
        allow_partial_load (bool): ``--allow-partial-load``. Defaults to False.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    checks = [hook for hook in hooks if _is_key_check(hook)]
    if allow_partial_load:
        for hook in checks:
            if isinstance(hook, CheckpointKeyCheckHook):
                hook.allow_partial_load = True
            else:
                hook['allow_partial_load'] = True
    elif not checks:
        cfg.custom_hooks = [*hooks, ConfigDict(type=CheckpointKeyCheckHook.__name__)]


def _is_key_check(hook: Any) -> bool:
    """Whether a ``custom_hooks`` entry (a dict or a built hook) is a CheckpointKeyCheckHook."""
    if isinstance(hook, CheckpointKeyCheckHook):
        return True
    return isinstance(hook, dict) and hook.get('type') in (
        CheckpointKeyCheckHook.__name__,
        CheckpointKeyCheckHook,
    )
