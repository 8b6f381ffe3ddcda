"""Resolve ``--resume`` to one checkpoint file, or fail loudly.

mmengine 0.10.7 resumes "from the latest checkpoint" by reading ``<work_dir>/last_checkpoint``;
when there is none it logs ``Auto resumed from the latest checkpoint None`` and trains from
iteration 0. Here a resume request always ends in an existing checkpoint or a
:class:`ResumeError`.
"""

import os.path as osp
from typing import Optional

from mmengine.config import Config

from ..hooks import LAST_CHECKPOINT

AUTO = 'auto'


class ResumeError(FileNotFoundError):
    """There is no checkpoint to resume from."""


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL (``s3://``, ``https://``, ...) rather than a local file."""
    return '://' in path


def latest_checkpoint(work_dir: str) -> str:
    """The checkpoint that ``<work_dir>/last_checkpoint`` names (written by CheckpointHook).

    Args:
        work_dir (str): The training's work dir.

    Returns:
        str: The checkpoint path.
    """
    pointer = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(pointer):
        raise ResumeError(
            f'cannot resume: there is no checkpoint to resume from in {work_dir} '
            f'({pointer} does not exist). Give a checkpoint path (--resume PATH), or '
            'train without --resume to start from the beginning.'
        )
    with open(pointer) as file:
        checkpoint = file.read().strip()
    if not checkpoint:
        raise ResumeError(f'cannot resume: {pointer} is empty')
    if not is_remote(checkpoint) and not osp.isfile(checkpoint):
        raise ResumeError(f'cannot resume: {pointer} names {checkpoint}, which does not exist')
    return checkpoint


def resolve_resume(cfg: Config, resume: Optional[str] = None) -> Optional[str]:
    """Turn a resume request into ``cfg.resume=True`` and ``cfg.load_from=<checkpoint>``.

    A request is ``resume`` ('auto' or a path, as from ``--resume [PATH]``) or, when
    ``resume`` is None, ``resume=True`` in the config (resuming ``load_from`` if set, else the
    latest checkpoint of ``cfg.work_dir``).

    Args:
        cfg (Config): The full config, with ``work_dir`` set.
        resume (str, optional): 'auto', a checkpoint path or None. Defaults to None.

    Returns:
        str or None: The checkpoint to resume from; None when nothing asks to resume.
    """
    if resume is None and not cfg.get('resume', False):
        return None
    if resume == AUTO or (resume is None and cfg.get('load_from') is None):
        checkpoint = latest_checkpoint(cfg.work_dir)
    else:
        checkpoint = cfg.load_from if resume is None else resume
        if not is_remote(checkpoint) and not osp.isfile(checkpoint):
            raise ResumeError(f'cannot resume: checkpoint {checkpoint} does not exist')
    cfg.resume = True
    cfg.load_from = checkpoint
    return checkpoint
