"""The shipped configs' hooks, run as mmdet's and mmseg's own tools run a config.

``Runner.from_cfg(cfg).train()`` / ``.test()`` on the demo detector, without fdconv-mm's tools:
its checkpoints are written whole or not at all (``AtomicCheckpointHook``), and a test refuses a
checkpoint that does not fit the model (``CheckpointKeyCheckHook``).
"""

import os
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend
from mmengine.runner import Runner

from fdconv_mm.analysis import build_model
from fdconv_mm.engine import CheckpointMismatchError
from fdconv_testing import WriteFailed, put_failing_at

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]
DET_CONFIG = REPO / 'configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py'


def tiny_config(data_root: Path, work_dir: Path, monkeypatch) -> Config:
    """The demo detector's config on the tiny demo data: batches of 2, no worker processes."""
    monkeypatch.setenv('FDCONV_DATA_ROOT', str(data_root))
    cfg = Config.fromfile(DET_CONFIG)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.logger.interval = 1
    return cfg


def test_a_failed_save_keeps_the_previous_checkpoint(
    demo_data_root, tmp_path, monkeypatch, in_process_runner
):
    cfg = tiny_config(demo_data_root, tmp_path, monkeypatch)
    cfg.train_cfg.update(max_epochs=2, val_interval=10)
    cfg.default_hooks.checkpoint.interval = 1  # max_keep_ckpts=1, as the config has it
    monkeypatch.setattr(LocalBackend, 'put', put_failing_at('epoch_2.pth'))
    with pytest.raises(WriteFailed):
        Runner.from_cfg(cfg).train()
    assert torch.load(tmp_path / 'epoch_1.pth')['meta']['epoch'] == 1
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    assert sorted(name for name in os.listdir(tmp_path) if 'pth' in name) == ['epoch_1.pth']


def doctored_checkpoint(cfg: Config, path: Path, missing: str) -> str:
    """The config's model's weights without the key ``missing``."""
    state = build_model(cfg).state_dict()
    del state[missing]
    torch.save(dict(meta=dict(), state_dict=state), path)
    return str(path)


def test_a_test_of_a_checkpoint_that_does_not_fit_is_refused_unless_allowed(
    demo_data_root, tmp_path, monkeypatch, in_process_runner
):
    cfg = tiny_config(demo_data_root, tmp_path, monkeypatch)
    missing = 'backbone.layer1.0.conv1.dft_weight'
    cfg.load_from = doctored_checkpoint(cfg, tmp_path / 'partial.pth', missing)
    with pytest.raises(CheckpointMismatchError, match=f'1 missing: {missing}'):
        Runner.from_cfg(cfg).test()
    cfg.custom_hooks[0].allow_partial_load = True
    assert 'coco/bbox_mAP' in Runner.from_cfg(cfg).test()
