"""A CheckpointHook whose checkpoints are never half-written, and that keeps one usable.

mmengine 0.10.7's ``CheckpointHook`` with ``max_keep_ckpts=N`` first removes the oldest
checkpoint, then writes the new one in place, then ``<work_dir>/last_checkpoint``. A kill
while the new file is written (minutes for a large model on a network disk) leaves a truncated
checkpoint, the previous one already gone with ``max_keep_ckpts=1``, and a pointer naming a
deleted file. :class:`AtomicCheckpointHook` writes the new checkpoint and the pointer through
:func:`~fdconv_mm.engine.atomic_file.atomic_write` and removes outdated checkpoints only after
both are complete. ``tools/train.py`` uses it in place of ``CheckpointHook``
(:func:`use_atomic_checkpoints`). Checkpoints on remote storage (``out_dir='s3://...'``)
are saved as mmengine does.
"""

import os.path as osp
from typing import Any, Dict, List

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from .atomic_file import atomic_write
from .resume import LAST_CHECKPOINT


class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook``, writing checkpoints atomically; same arguments.

    Order of each save: the new checkpoint (temporary file, ``fsync``, rename), then
    ``last_checkpoint`` (the same way), then the removal of checkpoints beyond
    ``max_keep_ckpts``. A failure at any point leaves the previous checkpoint and a
    ``last_checkpoint`` naming it.
    """

    def _save_checkpoint_with_step(self, runner: Any, step: int, meta: Dict[str, Any]) -> None:
        if self.file_client_args is not None or not isinstance(self.file_backend, LocalBackend):
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
        if not is_main_process():  # Runner.save_checkpoint saves on the main process only
            runner.save_checkpoint(self.out_dir, osp.basename(self.last_ckpt), **save_args)
            return
        with atomic_write(self.last_ckpt) as tmp:
            runner.save_checkpoint(osp.dirname(tmp), osp.basename(tmp), **save_args)
        with atomic_write(osp.join(runner.work_dir, LAST_CHECKPOINT)) as tmp:
            with open(tmp, 'w') as file:
                file.write(self.last_ckpt)
        for path in outdated:
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


def use_atomic_checkpoints(cfg: Config) -> None:
    """Make ``default_hooks.checkpoint`` an :class:`AtomicCheckpointHook` if it is mmengine's.

    A checkpoint hook of another type (one of your own) is kept.

    Args:
        cfg (Config): The full config.
    """
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook', CheckpointHook):
        hook['type'] = AtomicCheckpointHook.__name__
