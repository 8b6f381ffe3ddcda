"""tools/test.py --tta on the demo configs (mmdet and mmseg): a checkpoint that fits is tested.

The checkpoint's keys are the model's; under ``--tta`` the Runner's model is a test-time
augmentation wrapper whose own keys carry ``module.``, which mmengine looks through when it
loads, and so must the check of the keys.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from fdconv_mm.analysis import build_model, read_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]
DET_CONFIG = REPO / 'configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py'
SEG_CONFIG = REPO / 'configs/demo/upernet_r18-fdconv_demo-shapes.py'
TINY_LOADER = [
    'test_dataloader.batch_size=1',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
]


@pytest.fixture
def test_tool(monkeypatch, demo_data_root, in_process_runner):
    """tools/test.py's ``main(argv)``, run in this process on the demo data; returns metrics."""
    monkeypatch.setenv('FDCONV_DATA_ROOT', str(demo_data_root))
    spec = importlib.util.spec_from_file_location('test_tool', REPO / 'tools' / 'test.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    real_run_test, results = tool.run_test, []

    def run_test(cfg):
        results.append(real_run_test(cfg))
        return results[-1]

    monkeypatch.setattr(tool, 'run_test', run_test)

    def run(argv):
        monkeypatch.setattr(sys, 'argv', ['test.py', *map(str, argv)])
        tool.main()
        return results[-1]

    return run


def model_checkpoint(config: Path, path: Path, without: str = '') -> Path:
    """The weights of the config's model as constructed, as an mmengine checkpoint."""
    state = build_model(read_config(str(config))).state_dict()
    state.pop(without, None)
    torch.save(dict(meta=dict(), state_dict=state), path)
    return path


@pytest.mark.parametrize(
    'config, metric', [(DET_CONFIG, 'coco/bbox_mAP'), (SEG_CONFIG, 'mIoU')], ids=['mmdet', 'mmseg']
)
def test_tta_tests_a_checkpoint_that_fits(test_tool, tmp_path, config, metric):
    checkpoint = model_checkpoint(config, tmp_path / 'model.pth')
    flags = ['--tta', '--work-dir', tmp_path, '--cfg-options', *TINY_LOADER]
    assert metric in test_tool([config, checkpoint, *flags])


def test_tta_still_refuses_a_checkpoint_that_does_not_fit(test_tool, tmp_path):
    missing = 'backbone.layer1.0.conv1.dft_weight'
    checkpoint = model_checkpoint(DET_CONFIG, tmp_path / 'partial.pth', without=missing)
    flags = ['--tta', '--work-dir', tmp_path, '--cfg-options', *TINY_LOADER]
    with pytest.raises(SystemExit) as raised:
        test_tool([DET_CONFIG, checkpoint, *flags])
    message = str(raised.value.code)
    assert message.startswith(f'test.py: error: checkpoint {checkpoint} does not match the model')
    assert f'(1 missing: {missing})' in message
    assert 'module.' not in message
