"""Write a file whole or not at all: into a temporary file beside it, then rename.

A process killed while ``torch.save`` or ``open(path, 'w')`` writes leaves a truncated file
under the final name. :func:`atomic_write` writes to a hidden temporary file in the same
folder, flushes it to disk (``fsync``) and moves it onto the final name with ``os.replace``,
which is atomic on POSIX and Windows within one file system: a reader sees the old file or the
complete new one, never a partial one. A process killed outright (``SIGKILL``, power loss)
cannot remove its temporary file; :func:`remove_stale_temporaries` removes those of dead
processes later. Used by :class:`~fdconv_mm.engine.hooks.AtomicCheckpointHook` and by
``tools/convert_weights.py``.
"""

import contextlib
import os
import os.path as osp
import re
from typing import Iterator, List, Union

import torch

PathLike = Union[str, 'os.PathLike[str]']

# What temporary_path names: '.<final name>.<pid>.tmp'.
TEMPORARY_NAME = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$')


def temporary_path(path: PathLike) -> str:
    """The hidden temporary file beside ``path`` that :func:`atomic_write` writes first.

    Named after the final file and this process, so that two processes never share one.
    """
    folder, name = osp.split(os.fspath(path))
    return osp.join(folder, f'.{name}.{os.getpid()}.tmp')


def process_is_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine; True where that cannot be told.

    POSIX only (signal 0 checks without signalling); on Windows ``os.kill(pid, 0)`` would
    send a Ctrl-C, so every process counts as alive there.
    """
    if os.name != 'posix':
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_temporaries(folder: PathLike) -> List[str]:
    """Remove what :func:`atomic_write` left in ``folder`` when its process was killed.

    Only files named as :func:`temporary_path` names them (``.<name>.<pid>.tmp``) whose
    process no longer runs on this machine; those of this process and of live processes
    (another training writing into the same folder) are kept. A process on another machine
    sharing the folder over a network file system is not seen: do not point two machines'
    runs at one folder.

    Args:
        folder (str or os.PathLike): The folder to clean; a missing folder is left alone.

    Returns:
        list[str]: The removed files.
    """
    folder = os.fspath(folder)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        match = TEMPORARY_NAME.match(name)
        if match is None:
            continue
        pid = int(match['pid'])
        path = osp.join(folder, name)
        if pid == os.getpid() or process_is_alive(pid) or not osp.isfile(path):
            continue
        with contextlib.suppress(FileNotFoundError):  # another process removed it first
            os.remove(path)
            removed.append(path)
    return removed


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
