"""The hooks the tools give a config that lacks them; what a config has is kept."""

from pathlib import Path

import pytest
from mmengine.config import Config

from fdconv_mm.engine import (
    CheckpointKeyCheckHook,
    check_checkpoint_keys,
    setup_test_config,
    setup_train_config,
    use_atomic_checkpoints,
)

DEMO_CONFIG = Path(__file__).parents[3] / 'configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py'
KEY_CHECK = dict(type='CheckpointKeyCheckHook')


@pytest.mark.parametrize('hook_type', ['CheckpointHook', 'MyCheckpointHook', None])
def test_train_config_uses_the_atomic_hook_for_mmengine_s_only(hook_type):
    hooks = {} if hook_type is None else dict(checkpoint=dict(type=hook_type, interval=1))
    cfg = Config(dict(default_hooks=hooks))
    use_atomic_checkpoints(cfg)
    if hook_type is None:
        assert 'checkpoint' not in cfg.default_hooks
    else:
        expected = 'AtomicCheckpointHook' if hook_type == 'CheckpointHook' else hook_type
        assert cfg.default_hooks.checkpoint == dict(type=expected, interval=1)


@pytest.mark.parametrize('allow', [False, True])
def test_a_config_without_the_key_check_gets_one_unless_partial_loads_are_allowed(allow):
    other = dict(type='EMAHook')
    cfg = Config(dict(custom_hooks=[other]))
    check_checkpoint_keys(cfg, allow_partial_load=allow)
    assert cfg.custom_hooks == ([other] if allow else [other, KEY_CHECK])


@pytest.mark.parametrize('allow', [False, True])
def test_the_key_check_of_a_config_is_kept_and_its_option_set(allow):
    built = CheckpointKeyCheckHook()
    cfg = Config(dict(custom_hooks=[dict(KEY_CHECK), built]))
    check_checkpoint_keys(cfg, allow_partial_load=allow)
    assert cfg.custom_hooks[0] == (dict(KEY_CHECK, allow_partial_load=True) if allow else KEY_CHECK)
    assert cfg.custom_hooks[1] is built and built.allow_partial_load is allow
    assert len(cfg.custom_hooks) == 2


def test_the_tools_add_nothing_to_a_shipped_config(tmp_path):
    """The shipped configs name both hooks: the tools' set-up leaves them as they are."""
    shipped = Config.fromfile(DEMO_CONFIG)
    checkpoint = tmp_path / 'epoch_4.pth'
    checkpoint.write_bytes(b'weights')
    for cfg in (
        setup_train_config(str(DEMO_CONFIG), work_dir=str(tmp_path)),
        setup_test_config(str(DEMO_CONFIG), str(checkpoint), work_dir=str(tmp_path)),
    ):
        assert cfg.default_hooks == shipped.default_hooks
        assert cfg.custom_hooks == shipped.custom_hooks == [KEY_CHECK]
    allowed = setup_test_config(
        str(DEMO_CONFIG), str(checkpoint), work_dir=str(tmp_path), allow_partial_load=True
    )
    assert allowed.custom_hooks == [dict(KEY_CHECK, allow_partial_load=True)]
