"""load_config, setup_train_config and setup_test_config: from a config file and flags."""

import os.path as osp

import pytest

from fdconv_mm.engine import (
    ResumeError,
    default_work_dir,
    load_config,
    setup_test_config,
    setup_train_config,
)

CONFIG = """
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
model = dict(type='RetinaNet', neck=dict(conv_cfg=dict(type='FDConv', kernel_num=8)))
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01))
auto_scale_lr = dict(enable=False, base_batch_size=16)
test_evaluator = dict(type='CocoMetric', metric='bbox')
"""


@pytest.fixture
def config_file(tmp_path) -> str:
    path = tmp_path / 'retinanet_fdconv_tiny.py'
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture
def checkpoint(tmp_path) -> str:
    path = tmp_path / 'iter_2.pth'
    path.write_bytes(b'weights')
    return str(path)


def test_default_work_dir_is_named_after_the_config():
    assert default_work_dir('configs/fdconv/retinanet_r50.py') == osp.join(
        './work_dirs', 'retinanet_r50'
    )


def test_work_dir_priority_flag_then_config_then_name(config_file, tmp_path):
    assert load_config(config_file).work_dir == default_work_dir(config_file)
    options = dict(work_dir='from_config')
    assert load_config(config_file, cfg_options=options).work_dir == 'from_config'
    assert load_config(config_file, options, work_dir='flag').work_dir == 'flag'


def test_cfg_options_and_launcher_are_applied(config_file):
    cfg = load_config(
        config_file, {'env_cfg.dist_cfg.backend': 'gloo', 'sync_bn': 'torch'}, 'pytorch'
    )
    assert cfg.env_cfg.dist_cfg.backend == 'gloo' and cfg.sync_bn == 'torch'
    assert cfg.launcher == 'pytorch' and cfg.model.neck.conv_cfg.type == 'FDConv'


def test_train_config_applies_the_flags(config_file, checkpoint):
    cfg = setup_train_config(
        config_file, work_dir='w', auto_scale_lr=True, resume=checkpoint, launcher='pytorch'
    )
    assert cfg.auto_scale_lr.enable is True
    assert cfg.resume is True and cfg.load_from == checkpoint
    assert (cfg.work_dir, cfg.launcher) == ('w', 'pytorch')


def test_train_config_refuses_to_resume_from_nothing(config_file, tmp_path):
    with pytest.raises(ResumeError, match='no checkpoint to resume from'):
        setup_train_config(config_file, work_dir=str(tmp_path / 'empty'), resume='auto')


def test_test_config_applies_the_flags(config_file, checkpoint):
    cfg = setup_test_config(config_file, checkpoint, out='r.pkl', show_dir='painted')
    assert cfg.load_from == checkpoint
    assert cfg.default_hooks.visualization.test_out_dir == 'painted'
    assert cfg.test_evaluator[-1].type == 'DumpDetResults'


def test_test_config_refuses_a_missing_checkpoint(config_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth does not exist'):
        setup_test_config(config_file, str(tmp_path / 'missing.pth'))
