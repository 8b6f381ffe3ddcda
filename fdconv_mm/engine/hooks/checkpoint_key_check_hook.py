"""A hook that refuses to test a checkpoint whose keys do not fit the model.

mmengine 0.10.7's Runner loads ``load_from`` with ``strict=False``: missing, unexpected and
mis-shaped keys are logged as a warning and the model is tested with whatever stayed
initialized, so a test prints metrics of a model that is not the checkpoint's.
:class:`CheckpointKeyCheckHook` checks the checkpoint the Runner loaded (no second read of
the file) with :func:`~fdconv_mm.engine.checkpoint_match.checkpoint_mismatch`.
"""

from typing import Any, Mapping, Optional

from mmengine.hooks import Hook

from ..checkpoint_match import check_loaded_checkpoint_matches

REMEDY = (
    'to test it anyway, set allow_partial_load=True in CheckpointKeyCheckHook '
    '(tools/test.py: --allow-partial-load)'
)


class CheckpointKeyCheckHook(Hook):
    """Refuse to test a ``load_from`` checkpoint that does not load fully into the model.

    ``after_load_checkpoint`` keeps the checkpoint the Runner loaded; before the first batch
    of ``runner.test()`` (or a ``runner.val()`` outside training) a
    :class:`~fdconv_mm.engine.CheckpointMismatchError` names its missing, unexpected and
    mis-shaped keys. Model wrappers and test-time augmentation (``--tta``) are looked
    through, as mmengine's loading does. Training is not checked: fine-tuning from another
    model's checkpoint loads what fits, as in mmengine.

    Args:
        allow_partial_load (bool): Test such a checkpoint anyway, with mmengine's warning
            only (``tools/test.py --allow-partial-load``). Defaults to False.

    Example:
        >>> custom_hooks = [dict(type='CheckpointKeyCheckHook', allow_partial_load=False)]
    """

    # The lowest priority sees the checkpoint last, after other hooks (EMAHook) changed it.
    priority = 'LOWEST'

    def __init__(self, allow_partial_load: bool = False) -> None:
        if not isinstance(allow_partial_load, bool):
            raise TypeError(f'allow_partial_load must be True or False, got {allow_partial_load!r}')
        self.allow_partial_load = allow_partial_load
        self._loaded: Optional[Mapping[str, Any]] = None

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if not self.allow_partial_load:
            self._loaded = checkpoint

    def before_train(self, runner: Any) -> None:
        self._loaded = None  # loaded to be trained (fine-tuned or resumed): not checked

    def before_val(self, runner: Any) -> None:
        self._check(runner)

    def before_test(self, runner: Any) -> None:
        self._check(runner)

    def _check(self, runner: Any) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is not None:
            # mmengine 0.10.7 keeps the file only privately when the Runner has no config.
            name = runner.cfg.get('load_from') or getattr(runner, '_load_from', 'load_from')
            check_loaded_checkpoint_matches(runner.model, loaded, name, REMEDY)
