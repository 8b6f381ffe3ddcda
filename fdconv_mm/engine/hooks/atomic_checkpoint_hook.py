"""A CheckpointHook whose checkpoints are never half-written, and that keeps one usable.

mmengine 0.10.7's ``CheckpointHook`` with ``max_keep_ckpts=N`` first removes the oldest
checkpoint, then writes the new one in place, then ``<work_dir>/last_checkpoint``. A kill
while the new file is written (minutes for a large model on a network disk) leaves a truncated
checkpoint, the previous one already gone with ``max_keep_ckpts=1``, and a pointer naming a
deleted file. :class:`AtomicCheckpointHook` writes the new checkpoint and the pointer through
:func:`~fdconv_mm.engine.atomic_file.atomic_write` and removes outdated checkpoints only after
both are complete. ``save_best`` has the same flaw (the previous best file is removed
before the new one is written) and the same fix. The shipped configs name it as
``default_hooks.checkpoint``; ``tools/train.py`` puts it in place of mmengine's
``CheckpointHook`` in other configs. Checkpoints on remote storage (``out_dir='s3://...'``)
are saved as mmengine does.
"""

import contextlib
import os.path as osp
from typing import Any, Dict, Iterator, List

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from ..atomic_file import atomic_write, remove_stale_temporaries

# The file in the work dir naming the latest checkpoint, as mmengine's CheckpointHook writes it.
LAST_CHECKPOINT = 'last_checkpoint'


class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook``, writing checkpoints atomically; same arguments.

    Order of each save: the new checkpoint (temporary file, ``fsync``, rename), then
    ``last_checkpoint`` (the same way), then the removal of checkpoints beyond
    ``max_keep_ckpts``. A failure at any point leaves the previous checkpoint and a
    ``last_checkpoint`` naming it. A new best checkpoint (``save_best``) is written the same
    way before the previous best one is removed. When training starts (from scratch or
    resumed), the temporary files of killed saves (``.epoch_3.pth.<pid>.tmp``) are removed
    from the checkpoint folder and the work dir, those of running processes kept.

    Example:
        >>> default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1))
    """

    def before_train(self, runner: Any) -> None:
        super().before_train(runner)
        if not (is_main_process() and self._saves_locally()):
            return
        for folder in dict.fromkeys((self.out_dir, runner.work_dir)):
            for path in remove_stale_temporaries(folder):
                runner.logger.info(f'Removed {path}, left by a checkpoint save that was killed')

    def _saves_locally(self) -> bool:
        return self.file_client_args is None and isinstance(self.file_backend, LocalBackend)

    def _save_checkpoint_with_step(self, runner: Any, step: int, meta: Dict[str, Any]) -> None:
        if not self._saves_locally():
            super()._save_checkpoint_with_step(runner, step, meta)
            return
        outdated = self._track_kept_checkpoints(runner, step)
        self.last_ckpt = osp.join(self.out_dir, self.filename_tmpl.format(step))
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        save_args = dict(
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        with _atomic_saves(runner):
            runner.save_checkpoint(self.out_dir, osp.basename(self.last_ckpt), **save_args)
        if is_main_process():
            with atomic_write(osp.join(runner.work_dir, LAST_CHECKPOINT)) as tmp:
                with open(tmp, 'w') as file:
                    file.write(self.last_ckpt)
            self._remove(outdated)

    def _save_best_checkpoint(self, runner: Any, metrics: Dict[str, Any]) -> None:
        if not self._saves_locally():
            super()._save_best_checkpoint(runner, metrics)
            return
        previous_best: List[str] = []
        with _best_state_kept_on_failure(self, runner):
            with _removals_deferred(self, previous_best), _atomic_saves(runner):
                super()._save_best_checkpoint(runner, metrics)
        # One key indicator keeps best_ckpt_path, several keep best_ckpt_path_dict.
        current_best = {
            getattr(self, 'best_ckpt_path', None),
            *getattr(self, 'best_ckpt_path_dict', {}).values(),
        }
        self._remove([path for path in previous_best if path not in current_best])

    def _remove(self, paths: List[str]) -> None:
        for path in paths:
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed saves folders
                self.file_backend.rmtree(path)

    def _track_kept_checkpoints(self, runner: Any, step: int) -> List[str]:
        """mmengine 0.10.7's ``max_keep_ckpts`` bookkeeping; returns what to remove after."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return []
        outdated = []
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            oldest = self.keep_ckpt_ids.popleft()
            outdated.append(osp.join(self.out_dir, self.filename_tmpl.format(oldest)))
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        return outdated


@contextlib.contextmanager
def _atomic_saves(runner: Any) -> Iterator[None]:
    """Within the block, ``runner.save_checkpoint`` writes each file through ``atomic_write``.

    ``Runner.save_checkpoint`` writes on the main process only; the others call it unchanged.
    """
    save_checkpoint = runner.save_checkpoint

    def save_atomically(out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        if not is_main_process():
            save_checkpoint(out_dir, filename, *args, **kwargs)
            return
        with atomic_write(osp.join(out_dir, filename)) as tmp:
            save_checkpoint(osp.dirname(tmp), osp.basename(tmp), *args, **kwargs)

    runner.save_checkpoint = save_atomically
    try:
        yield
    finally:
        del runner.save_checkpoint


@contextlib.contextmanager
def _best_state_kept_on_failure(hook: CheckpointHook, runner: Any) -> Iterator[None]:
    """If the block fails, restore the hook's and the message hub's best score and file.

    mmengine records the new best before writing it; a failed write must not leave them
    naming a file that does not exist (the previous best is still on disk).
    """
    info = runner.message_hub.runtime_info
    kept_info = {key: value for key, value in info.items() if key.startswith('best_')}
    kept_path = getattr(hook, 'best_ckpt_path', None)
    kept_paths = dict(getattr(hook, 'best_ckpt_path_dict', {}))
    try:
        yield
    except BaseException:
        for key in [key for key in info if key.startswith('best_')]:
            del info[key]
        info.update(kept_info)
        if hasattr(hook, 'best_ckpt_path'):
            hook.best_ckpt_path = kept_path
        if hasattr(hook, 'best_ckpt_path_dict'):
            hook.best_ckpt_path_dict = kept_paths
        raise


@contextlib.contextmanager
def _removals_deferred(hook: CheckpointHook, removed: List[str]) -> Iterator[None]:
    """Within the block, the hook's file removals only append their path to ``removed``."""
    backend = hook.file_backend

    class DeferredRemovals:
        def __getattr__(self, name: str) -> Any:
            return getattr(backend, name)

        def remove(self, path: str) -> None:
            removed.append(path)

        def rmtree(self, path: str) -> None:
            removed.append(path)

    hook.file_backend = DeferredRemovals()
    try:
        yield
    finally:
        hook.file_backend = backend
