"""CheckpointKeyCheckHook: a test of a checkpoint that does not fit the model is refused."""

import pytest
import torch

from fdconv_mm.engine import CheckpointKeyCheckHook, CheckpointMismatchError

CHECKPOINT_HOOK = dict(type='AtomicCheckpointHook', interval=2, by_epoch=False)


def save_state(path, state):
    torch.save(dict(meta=dict(), state_dict=state), path)
    return str(path)


@pytest.fixture
def partial_checkpoint(tmp_path):
    """The toy model's weight without its bias."""
    return save_state(tmp_path / 'partial.pth', {'linear.weight': torch.ones(1, 2)})


def key_check_runner(make_toy_runner, toy_tests, work_dir, checkpoint, **hook):
    return make_toy_runner(
        work_dir,
        CHECKPOINT_HOOK,
        load_from=checkpoint,
        custom_hooks=[dict(type='CheckpointKeyCheckHook', **hook)],
        **toy_tests,
    )


@pytest.mark.parametrize('run', ['test', 'val'])
def test_a_checkpoint_missing_a_key_is_refused_before_evaluation(
    make_toy_runner, toy_tests, tmp_path, partial_checkpoint, run
):
    runner = key_check_runner(make_toy_runner, toy_tests, tmp_path, partial_checkpoint)
    with pytest.raises(CheckpointMismatchError) as raised:
        getattr(runner, run)()
    message = str(raised.value)
    assert message.startswith(f'checkpoint {partial_checkpoint} does not match the model')
    assert '1 missing: linear.bias' in message and 'allow_partial_load=True' in message
    assert '\n' not in message


def test_partial_loads_are_tested_when_allowed(
    make_toy_runner, toy_tests, tmp_path, partial_checkpoint
):
    runner = key_check_runner(
        make_toy_runner, toy_tests, tmp_path, partial_checkpoint, allow_partial_load=True
    )
    assert set(runner.test()) == {'mean'}


def test_a_matching_checkpoint_is_tested(make_toy_runner, toy_tests, tmp_path):
    state = {'linear.weight': torch.ones(1, 2), 'linear.bias': torch.zeros(1)}
    checkpoint = save_state(tmp_path / 'full.pth', state)
    runner = key_check_runner(make_toy_runner, toy_tests, tmp_path, checkpoint)
    assert runner.test() == dict(mean=pytest.approx(3.0))  # 2 * index for 0..3


def test_training_from_a_partial_checkpoint_is_not_checked(
    make_toy_runner, toy_tests, tmp_path, partial_checkpoint
):
    """Fine-tuning from another model's checkpoint loads what fits, as in mmengine."""
    runner = key_check_runner(make_toy_runner, toy_tests, tmp_path, partial_checkpoint)
    runner.train()
    assert runner.iter == 2


def test_the_option_is_validated():
    with pytest.raises(TypeError, match='allow_partial_load must be True or False'):
        CheckpointKeyCheckHook(allow_partial_load='yes')
