"""Write a file whole or not at all: into a temporary file beside it, then rename.

A process killed while ``torch.save`` or ``open(path, 'w')`` writes leaves a truncated file
under the final name. :func:`atomic_write` writes to a hidden temporary file in the same
folder, flushes it to disk (``fsync``) and moves it onto the final name with ``os.replace``,
which is atomic on POSIX and Windows within one file system: a reader sees the old file or the
complete new one, never a partial one. Used by the checkpoint hook of ``tools/train.py``
(:class:`~fdconv_mm.engine.AtomicCheckpointHook`) and by ``tools/convert_weights.py``.
"""

import contextlib
import os
import os.path as osp
from typing import Iterator, Union

import torch

PathLike = Union[str, 'os.PathLike[str]']


def temporary_path(path: PathLike) -> str:
    """The hidden temporary file beside ``path`` that :func:`atomic_write` writes first.

    Named after the final file and this process, so that two processes never share one.
    """
    folder, name = osp.split(os.fspath(path))
    return osp.join(folder, f'.{name}.{os.getpid()}.tmp')


def fsync_path(path: str) -> None:
    """Flush ``path`` (a file, or on POSIX a folder) from the OS cache to the disk."""
    flags = os.O_RDONLY | (getattr(os, 'O_DIRECTORY', 0) if osp.isdir(path) else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:  # Windows cannot open a folder; its os.replace is durable enough
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator[str]:
    """Give a temporary path to write; when the block ends without error, it becomes ``path``.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and
    ``path`` is left as it was: absent, or the previous complete file.

    Args:
        path (str or os.PathLike): The final file. Its folder must exist.

    Yields:
        str: The temporary file to write, in the same folder as ``path``.

    Example:
        >>> import tempfile
        >>> target = osp.join(tempfile.mkdtemp(), 'note.txt')
        >>> with atomic_write(target) as tmp:
        ...     with open(tmp, 'w') as file:
        ...         _ = file.write('done')
        >>> open(target).read()
        'done'
    """
    final = os.fspath(path)
    tmp = temporary_path(final)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    fsync_path(osp.dirname(osp.abspath(final)))


def atomic_torch_save(obj: object, path: PathLike) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`.

    Args:
        obj (object): What to save, e.g. ``dict(state_dict=..., meta=...)``.
        path (str or os.PathLike): The final file. Its folder must exist.
    """
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
