"""AtomicCheckpointHook and atomic_write: a write that fails midway leaves the previous file."""

import io
import os

import pytest
import torch
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from fdconv_mm.engine import (
    AtomicCheckpointHook,
    atomic_torch_save,
    atomic_write,
)

HOOK = dict(interval=2, by_epoch=False, max_keep_ckpts=1)
REAL_TORCH_SAVE = torch.save


class WriteFailed(KeyboardInterrupt):
    """A Ctrl-C (or a full disk) in the middle of writing a file."""


def write_half_then_fail(data: bytes, path) -> None:
    """Write the first half of ``data`` to ``path``, then fail."""
    with open(path, 'wb') as file:
        file.write(data[: len(data) // 2])
    raise WriteFailed(path)


def torch_save_half_then_fail(obj, path) -> None:
    """``torch.save`` that stops halfway through the file."""
    buffer = io.BytesIO()
    REAL_TORCH_SAVE(obj, buffer)
    write_half_then_fail(buffer.getvalue(), path)


def load(path):
    """Plain ``torch.load``: importing fdconv_mm allowlisted mmengine's checkpoint contents."""
    return torch.load(path)


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith('.tmp'))


def train_then_fail_at_iteration_4(make_toy_runner, work_dir, hook_type, monkeypatch):
    """Train to iteration 2 (saving iter_2.pth), then fail while iter_4.pth is written."""
    make_toy_runner(work_dir, dict(type=hook_type, **HOOK), max_iters=2).train()
    assert load(work_dir / 'iter_2.pth')['meta']['iter'] == 2
    monkeypatch.setattr(LocalBackend, 'put', lambda _, data, path: write_half_then_fail(data, path))
    hook = dict(type=hook_type, **HOOK)
    resumed = make_toy_runner(work_dir, hook, max_iters=4, name='r', resume=True)
    with pytest.raises(WriteFailed):
        resumed.train()


def test_failed_save_keeps_the_previous_checkpoint_and_pointer(
    make_toy_runner, tmp_path, monkeypatch
):
    work_dir = tmp_path / 'atomic'
    train_then_fail_at_iteration_4(make_toy_runner, work_dir, 'AtomicCheckpointHook', monkeypatch)
    assert load(work_dir / 'iter_2.pth')['meta']['iter'] == 2
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_2.pth')
    assert not (work_dir / 'iter_4.pth').exists()
    assert leftovers(work_dir) == []


def test_mmengine_hook_loses_the_checkpoint_on_the_same_failure(
    make_toy_runner, tmp_path, monkeypatch
):
    """What AtomicCheckpointHook prevents: iter_2 removed first, iter_4 half-written."""
    work_dir = tmp_path / 'mmengine'
    train_then_fail_at_iteration_4(make_toy_runner, work_dir, 'CheckpointHook', monkeypatch)
    assert not (work_dir / 'iter_2.pth').exists()
    assert (work_dir / 'iter_4.pth').exists()
    with pytest.raises(RuntimeError):
        load(work_dir / 'iter_4.pth')


def test_successful_saves_rotate_after_writing(make_toy_runner, tmp_path):
    work_dir = tmp_path / 'rotate'
    hook = dict(type='AtomicCheckpointHook', interval=2, by_epoch=False, max_keep_ckpts=2)
    runner = make_toy_runner(work_dir, hook, max_iters=6)
    runner.train()
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_4.pth', 'iter_6.pth']
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_6.pth')
    saved = load(work_dir / 'iter_6.pth')
    assert saved['meta']['iter'] == 6
    assert saved['message_hub']['runtime_info']['keep_ckpt_ids'] == [4, 6]
    assert leftovers(work_dir) == []
    hooks = [hook for hook in runner.hooks if isinstance(hook, AtomicCheckpointHook)]
    assert len(hooks) == 1


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / 'weights.pth'
    atomic_torch_save({'w': torch.ones(3)}, target)
    monkeypatch.setattr(torch, 'save', torch_save_half_then_fail)
    with pytest.raises(WriteFailed):
        atomic_torch_save({'w': torch.zeros(1000)}, target)
    assert torch.equal(torch.load(target)['w'], torch.ones(3))
    assert leftovers(tmp_path) == []
    with pytest.raises(WriteFailed):
        atomic_torch_save({'w': torch.zeros(1000)}, tmp_path / 'new.pth')
    assert sorted(os.listdir(tmp_path)) == ['weights.pth']


def test_atomic_write_keeps_the_permissions_of_a_plain_write(tmp_path):
    with atomic_write(tmp_path / 'a.txt') as tmp:
        with open(tmp, 'w') as file:
            file.write('a')
    with open(tmp_path / 'b.txt', 'w') as file:
        file.write('b')
    assert os.stat(tmp_path / 'a.txt').st_mode == os.stat(tmp_path / 'b.txt').st_mode


def save_best(runner, hook, score):
    """What the hook does after a validation with ``acc=score``."""
    hook._save_best_checkpoint(runner, dict(acc=score))


@pytest.mark.parametrize('hook_type', [AtomicCheckpointHook, CheckpointHook])
def test_failed_best_save_keeps_the_previous_best(
    make_toy_runner, tmp_path, monkeypatch, hook_type
):
    """mmengine removes the previous best file before writing the new one; we remove after."""
    runner = make_toy_runner(tmp_path, dict(type='CheckpointHook', interval=100))
    hook = hook_type(interval=100, by_epoch=False, save_best='acc', rule='greater')
    hook.before_train(runner)
    save_best(runner, hook, 0.5)
    first_best = tmp_path / 'best_acc_iter_0.pth'
    assert load(first_best)['meta']['iter'] == 0
    runner.train_loop._iter = 7
    monkeypatch.setattr(LocalBackend, 'put', lambda _, data, path: write_half_then_fail(data, path))
    with pytest.raises(WriteFailed):
        save_best(runner, hook, 0.9)
    if hook_type is CheckpointHook:
        assert not first_best.exists()
        return
    assert load(first_best)['meta']['iter'] == 0
    assert not (tmp_path / 'best_acc_iter_7.pth').exists()
    assert leftovers(tmp_path) == []
    assert runner.message_hub.get_info('best_score') == 0.5
    assert runner.message_hub.get_info('best_ckpt') == str(first_best)
    monkeypatch.undo()
    save_best(runner, hook, 0.9)
    assert sorted(p.name for p in tmp_path.glob('best_*.pth')) == ['best_acc_iter_7.pth']
    assert load(tmp_path / 'best_acc_iter_7.pth')['meta']['iter'] == 7
    save_best(runner, hook, 0.1)  # not better: nothing changes
    assert sorted(p.name for p in tmp_path.glob('best_*.pth')) == ['best_acc_iter_7.pth']


def test_resumed_training_removes_the_temporary_files_of_killed_saves(
    make_toy_runner, tmp_path, dead_pid, live_pid
):
    """A SIGKILL during a save leaves '.iter_4.pth.<pid>.tmp'; the next run removes it."""
    work_dir = tmp_path / 'killed'
    hook = dict(type='AtomicCheckpointHook', **HOOK)
    make_toy_runner(work_dir, hook, max_iters=2).train()
    killed = [work_dir / f'.{name}.{dead_pid}.tmp' for name in ('iter_4.pth', 'last_checkpoint')]
    running = work_dir / f'.iter_9.pth.{live_pid}.tmp'  # another training, still writing
    for path in (*killed, running):
        path.write_bytes(b'half a checkpoint')
    make_toy_runner(work_dir, hook, max_iters=4, name='r', resume=True).train()
    assert leftovers(work_dir) == [running.name]
    assert load(work_dir / 'iter_4.pth')['meta']['iter'] == 4
