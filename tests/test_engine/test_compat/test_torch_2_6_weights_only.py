"""allow_mmengine_checkpoints: a real Runner's checkpoint loads, anything else stays refused."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from fdconv_mm.engine import allow_mmengine_checkpoints
from fdconv_mm.engine.compat.torch_2_6_weights_only import history_buffer_method


class NotAllowed:
    """A class a checkpoint could name: it must stay refused."""


class RunsShell:
    def __reduce__(self):
        return os.system, ('echo pwned',)


@pytest.fixture
def clean_safe_globals():
    """torch's allowlist is process-wide: start empty, restore it afterwards."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory, make_toy_runner) -> str:
    """A checkpoint written by mmengine's CheckpointHook after 2 iterations of a tiny Runner."""
    work_dir = tmp_path_factory.mktemp('toy_runner')
    make_toy_runner(work_dir, dict(type='CheckpointHook', interval=2, by_epoch=False)).train()
    return str(work_dir / 'iter_2.pth')


def pickled(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def craft(data_pkl: bytes) -> io.BytesIO:
    """A torch.save zip whose data.pkl is ``data_pkl`` (a hand-written pickle)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        archive.writestr('archive/data.pkl', data_pkl)
        archive.writestr('archive/version', '3\n')
    buffer.seek(0)
    return buffer


def test_runner_checkpoint_needs_the_allowlist(runner_checkpoint, clean_safe_globals):
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer|numpy|getattr'):
        torch.load(runner_checkpoint)


def test_runner_checkpoint_loads_with_plain_torch_load(runner_checkpoint, clean_safe_globals):
    allow_mmengine_checkpoints()
    checkpoint = torch.load(runner_checkpoint)
    assert checkpoint['meta']['iter'] == 2
    assert set(checkpoint['state_dict']) == {'linear.weight', 'linear.bias'}
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and len(loss.data[0]) == 2
    assert loss.mean() == pytest.approx(loss.data[0].mean())
    assert isinstance(checkpoint['message_hub']['runtime_info']['eta'], np.floating)


def test_allowlisting_twice_is_harmless(runner_checkpoint, clean_safe_globals):
    allow_mmengine_checkpoints()
    allow_mmengine_checkpoints()
    assert torch.load(runner_checkpoint)['meta']['iter'] == 2


@pytest.mark.parametrize(
    'payload',
    [NotAllowed(), {'state_dict': {}, 'meta': NotAllowed}, RunsShell()],
    ids=['instance', 'class', 'os.system'],
)
def test_other_globals_stay_refused(payload, clean_safe_globals):
    allow_mmengine_checkpoints()
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global|is blocked'):
        torch.load(io.BytesIO(pickled(payload)))


@pytest.mark.parametrize(
    'owner, name',
    [
        (b'mmengine.logging.history_buffer\nHistoryBuffer', b'__init__'),
        (b'mmengine.logging.history_buffer\nHistoryBuffer', b'__class__'),
        (b'numpy\nndarray', b'tofile'),
    ],
)
def test_getattr_only_reaches_history_buffer_statistics(owner, name, clean_safe_globals):
    allow_mmengine_checkpoints()
    # getattr(owner, name), protocol 2: GLOBAL, GLOBAL, string, TUPLE2, REDUCE, STOP
    data = b'\x80\x02c__builtin__\ngetattr\nc' + owner + b'\nX'
    data += len(name).to_bytes(4, 'little') + name + b'\x86R.'
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        torch.load(craft(data))


def test_getattr_stand_in_returns_the_statistics_methods():
    assert history_buffer_method(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        history_buffer_method(HistoryBuffer, 'update')


def test_numpy2_paths_load(clean_safe_globals):
    """numpy 2 pickles its arrays as ``numpy._core.multiarray...``; they load under numpy 1."""
    saved = io.BytesIO(pickled({'history': np.arange(3.0), 'eta': np.float64(2.5)}))
    renamed = io.BytesIO()
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(renamed, 'w') as target:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename.endswith('data.pkl'):
                assert b'numpy.core.multiarray' in data
                data = data.replace(b'numpy.core.multiarray', b'numpy._core.multiarray')
            target.writestr(entry, data)
    renamed.seek(0)
    allow_mmengine_checkpoints()
    loaded = torch.load(renamed)
    assert loaded['history'].tolist() == [0.0, 1.0, 2.0] and loaded['eta'] == 2.5
