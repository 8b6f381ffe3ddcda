"""checkpoint_mismatch: every key that would not load, as the Runner would load it."""

import pytest
import torch
from mmengine.model import BaseTTAModel

from fdconv_mm import FDConv
from fdconv_mm.engine import (
    CheckpointMismatchError,
    check_checkpoint_matches,
    checkpoint_mismatch,
)
from fdconv_mm.engine.checkpoint_match import checkpoint_state_dict

FDCONV_KEY = '0.dft_weight'


def model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        FDConv(32, 32, 3, padding=1, kernel_num=8),
        torch.nn.BatchNorm2d(32),
        torch.nn.Conv2d(32, 4, 1),
    )


def test_a_matching_checkpoint_has_no_mismatch():
    net = model()
    mismatch = checkpoint_mismatch(net, net.state_dict())
    assert not mismatch and mismatch.summary() == ''


def test_missing_unexpected_and_misshaped_keys_are_named():
    net = model()
    state = dict(net.state_dict())
    expected_missing = [FDCONV_KEY, '2.bias']
    for key in expected_missing:
        del state[key]
    state['3.weight'] = torch.ones(1)
    state['2.weight'] = torch.ones(4, 32, 3, 3)
    before = {key: value.clone() for key, value in net.state_dict().items()}

    mismatch = checkpoint_mismatch(net, state)

    assert mismatch.missing == expected_missing
    assert mismatch.unexpected == ['3.weight']
    assert mismatch.misshaped == ['2.weight: checkpoint (4, 32, 3, 3), model (4, 32, 1, 1)']
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # unchanged
    summary = mismatch.summary()
    assert '\n' not in summary
    assert summary.startswith(f'2 missing: {FDCONV_KEY}, 2.bias; 1 unexpected: 3.weight; ')


def test_a_plain_conv_weight_converted_by_fdconv_counts_as_loaded():
    net = model()
    state = dict(net.state_dict())
    del state[FDCONV_KEY]
    state['0.weight'] = torch.randn(32, 32, 3, 3)
    assert not checkpoint_mismatch(net, state)


def test_num_batches_tracked_may_be_missing_as_in_mmengine():
    net = model()
    state = {k: v for k, v in net.state_dict().items() if 'num_batches_tracked' not in k}
    assert not checkpoint_mismatch(net, state)


class Predictor(torch.nn.Sequential):
    """The test model as BaseTTAModel accepts it: with a ``test_step``."""

    def test_step(self, data):
        return [self(data)]


class ToyTTAModel(BaseTTAModel):
    def merge_preds(self, data_samples_list):
        return data_samples_list[0]


def test_a_test_time_augmentation_wrapper_is_looked_through_as_mmengine_loads():
    """tools/test.py --tta: the model's keys are 'module.*', the checkpoint's are not."""
    net = Predictor(*model())
    wrapped = ToyTTAModel(module=net)
    assert not checkpoint_mismatch(wrapped, net.state_dict())
    state = dict(net.state_dict())
    del state[FDCONV_KEY]
    assert checkpoint_mismatch(wrapped, state).missing == [FDCONV_KEY]


def test_runner_checkpoint_layout_and_ddp_prefix_are_read_as_the_runner_does():
    state = {'module.' + key: value for key, value in model().state_dict().items()}
    assert (
        checkpoint_state_dict(dict(state_dict=state, meta={})).keys() == model().state_dict().keys()
    )


def test_long_lists_are_cut_in_the_summary():
    net = model()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith('0.')}
    mismatch = checkpoint_mismatch(net, state)
    assert len(mismatch.missing) > 3
    assert f'({len(mismatch.missing) - 3} more)' in mismatch.summary()


def test_check_raises_one_line_naming_the_key_and_the_flag(tmp_path):
    net = model()
    state = dict(net.state_dict())
    del state[FDCONV_KEY]
    path = tmp_path / 'partial.pth'
    torch.save(dict(state_dict=state), path)
    with pytest.raises(CheckpointMismatchError) as raised:
        check_checkpoint_matches(net, str(path), '--allow-partial-load')
    message = str(raised.value)
    assert '\n' not in message
    assert f'1 missing: {FDCONV_KEY}' in message and 'pass --allow-partial-load' in message
    torch.save(dict(state_dict=net.state_dict()), path)
    check_checkpoint_matches(net, str(path), '--allow-partial-load')
