"""mmdet's and mmseg's own tools/train.py and tools/test.py on the shipped demo configs.

Users run the scripts installed with mmdet and mmseg (``<package>/.mim/tools``), not ours; the
shipped configs' hooks must work there too: ``AtomicCheckpointHook`` writes checkpoints whole or
not at all, ``CheckpointKeyCheckHook`` refuses to test a checkpoint that does not fit the model.
The scripts run in this process (``runpy``, ``sys.argv`` patched) so that a test can make a
checkpoint save fail midway; a fresh process per tool is test_trained_checkpoints.py's part.
"""

import json
import os
import runpy
import sys
from pathlib import Path
from typing import Dict, List

import mmdet
import mmseg
import pytest
import torch
from mmengine.fileio import LocalBackend

from fdconv_mm.analysis import build_model, read_config
from fdconv_mm.engine import CheckpointMismatchError
from fdconv_mm.engine.hooks import atomic_checkpoint_hook
from fdconv_testing import WriteFailed, put_failing_at

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]
DET_CONFIG = REPO / 'configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py'
SEG_CONFIG = REPO / 'configs/demo/upernet_r18-fdconv_demo-shapes.py'
MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'
MMSEG_TOOLS = Path(mmseg.__file__).parent / '.mim' / 'tools'

# demo_data_root has 2 train and 2 val images: one batch of 2 each, no worker processes.
TINY_LOADERS = [
    f'{split}_dataloader.{option}'
    for split in ('train', 'val', 'test')
    for option in ('batch_size=2', 'num_workers=0', 'persistent_workers=False')
]
# One iteration per epoch (mmdet) or one iteration (mmseg), a checkpoint after each, no val.
DET_EPOCHS = ['train_cfg.val_interval=10', 'default_hooks.checkpoint.interval=1']
SEG_ONE_ITER = [
    'train_cfg.max_iters=1',
    'train_cfg.val_interval=10',
    'default_hooks.checkpoint.interval=1',
]


@pytest.fixture
def upstream_tool(monkeypatch, demo_data_root, in_process_runner):
    """Run an installed mmdet or mmseg tool as ``__main__`` in this process on the demo data."""
    monkeypatch.setenv('FDCONV_DATA_ROOT', str(demo_data_root))
    monkeypatch.setenv('LOCAL_RANK', '0')  # the tools set it where unset; gone after the test

    def run(script: Path, args: List) -> None:
        assert script.is_file(), f'{script} is not installed'
        monkeypatch.setattr(sys, 'argv', [str(script), *map(str, args)])
        runpy.run_path(str(script), run_name='__main__')

    return run


def model_checkpoint(config: Path, path: Path, without: str) -> Path:
    """The weights of the config's model as constructed, less ``without``, as a checkpoint."""
    state = build_model(read_config(str(config))).state_dict()
    del state[without]
    torch.save(dict(meta=dict(), state_dict=state), path)
    return path


def reported_metrics(work_dir: Path) -> Dict:
    """The metrics a test run wrote to ``<work_dir>/<timestamp>/<timestamp>.json``."""
    (report,) = work_dir.glob('*/*.json')
    return json.loads(report.read_text())


def test_mmdet_train_keeps_epoch_1_when_the_epoch_2_save_fails(
    upstream_tool, tmp_path, monkeypatch
):
    monkeypatch.setattr(LocalBackend, 'put', put_failing_at('epoch_2.pth'))
    options = [*TINY_LOADERS, *DET_EPOCHS, 'train_cfg.max_epochs=2']  # config: max_keep_ckpts=1
    with pytest.raises(WriteFailed, match=r'\.epoch_2\.pth\.\d+\.tmp'):
        upstream_tool(
            MMDET_TOOLS / 'train.py',
            [DET_CONFIG, '--work-dir', tmp_path, '--cfg-options', *options],
        )
    assert torch.load(tmp_path / 'epoch_1.pth')['meta']['epoch'] == 1
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    assert sorted(name for name in os.listdir(tmp_path) if 'pth' in name) == ['epoch_1.pth']


@pytest.mark.parametrize(
    'tools, config, options, checkpoint, metric',
    [
        (
            MMDET_TOOLS,
            DET_CONFIG,
            [*DET_EPOCHS, 'train_cfg.max_epochs=1'],
            'epoch_1.pth',
            'coco/bbox_mAP',
        ),
        (MMSEG_TOOLS, SEG_CONFIG, SEG_ONE_ITER, 'iter_1.pth', 'mIoU'),
    ],
    ids=['mmdet', 'mmseg'],
)
def test_test_tta_tests_the_checkpoint_train_saved(
    upstream_tool, tmp_path, tools, config, options, checkpoint, metric
):
    train_dir, test_dir = tmp_path / 'train', tmp_path / 'test'
    upstream_tool(
        tools / 'train.py',
        [config, '--work-dir', train_dir, '--cfg-options', *TINY_LOADERS, *options],
    )
    test_args = ['--tta', '--work-dir', test_dir, '--cfg-options', *TINY_LOADERS]
    upstream_tool(tools / 'test.py', [config, train_dir / checkpoint, *test_args])
    assert metric in reported_metrics(test_dir)


@pytest.mark.parametrize('tta', [[], ['--tta']], ids=['plain', 'tta'])
def test_mmdet_test_refuses_a_checkpoint_that_does_not_fit(upstream_tool, tmp_path, tta):
    missing = 'backbone.layer1.0.conv1.dft_weight'
    checkpoint = model_checkpoint(DET_CONFIG, tmp_path / 'partial.pth', without=missing)
    args = [DET_CONFIG, checkpoint, *tta, '--work-dir', tmp_path, '--cfg-options', *TINY_LOADERS]
    with pytest.raises(CheckpointMismatchError) as raised:
        upstream_tool(MMDET_TOOLS / 'test.py', args)
    message = str(raised.value)
    assert f'1 missing: {missing}' in message and 'allow_partial_load' in message
    assert 'module.' not in message
    assert not list(tmp_path.glob('*/*.json'))  # no metrics reported


def test_mmseg_train_saves_through_the_atomic_checkpoint_hook(upstream_tool, tmp_path, monkeypatch):
    real_atomic_write, written = atomic_checkpoint_hook.atomic_write, []

    def atomic_write(path):
        written.append(os.path.basename(path))
        return real_atomic_write(path)

    monkeypatch.setattr(atomic_checkpoint_hook, 'atomic_write', atomic_write)
    options = [*TINY_LOADERS, *SEG_ONE_ITER]
    upstream_tool(
        MMSEG_TOOLS / 'train.py', [SEG_CONFIG, '--work-dir', tmp_path, '--cfg-options', *options]
    )
    assert written == ['iter_1.pth', 'last_checkpoint']
    assert torch.load(tmp_path / 'iter_1.pth')['meta']['iter'] == 1
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.tmp')]
