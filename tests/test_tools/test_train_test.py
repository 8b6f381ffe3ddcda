"""tools/train.py and tools/test.py on a tiny mmdet and a tiny mmseg config, both with FDConv."""

import pickle

import pytest
import torch

import fdconv_mm  # noqa: F401

pytestmark = pytest.mark.slow


def test_det_config_trains_saves_and_tests(det_config, tmp_path, run_tool):
    work_dir = tmp_path / 'work'
    trained = run_tool(['train.py', det_config, '--work-dir', work_dir])
    assert trained.returncode == 0, trained.stdout[-3000:]
    checkpoint = work_dir / 'iter_2.pth'
    assert (work_dir / 'last_checkpoint').read_text() == str(checkpoint)
    state = torch.load(checkpoint)['state_dict']  # import fdconv_mm allowlisted its contents
    assert 'neck.fpn_convs.0.conv.dft_weight' in state
    assert 'bbox_head.cls_convs.0.conv.KSM_Global.bn.running_mean' in state

    out = tmp_path / 'predictions.pkl'
    flags = ['--work-dir', work_dir, '--out', out, '--show-dir', 'painted']
    tested = run_tool(['test.py', det_config, checkpoint, *flags])
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert 'coco/bbox_mAP' in tested.stdout
    with open(out, 'rb') as file:
        assert len(pickle.load(file)) == 4
    assert len(list(work_dir.glob('*/painted/*.png'))) == 4


def test_seg_config_trains_and_tests_with_the_same_tools(seg_config, tmp_path, run_tool):
    work_dir = tmp_path / 'work'
    trained = run_tool(['train.py', seg_config, '--work-dir', work_dir])
    assert trained.returncode == 0, trained.stdout[-3000:]

    out, painted = tmp_path / 'label_maps', tmp_path / 'painted'
    flags = ['--work-dir', work_dir, '--out', out, '--show-dir', painted]
    tested = run_tool(['test.py', seg_config, work_dir / 'iter_2.pth', *flags])
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert 'mIoU' in tested.stdout
    assert len(list(out.glob('*.png'))) == 4
    assert len(list(painted.glob('vis_data/vis_image/*.png'))) == 4


@pytest.mark.parametrize('checkpoint', [None, 'missing.pth'])
def test_resume_with_nothing_to_resume_from_stops(det_config, tmp_path, run_tool, checkpoint):
    work_dir = tmp_path / 'never_trained'
    resume = ['--resume'] if checkpoint is None else ['--resume', tmp_path / checkpoint]
    result = run_tool(['train.py', det_config, '--work-dir', work_dir, *resume])
    assert result.returncode == 1
    assert 'train.py: error: cannot resume' in result.stdout
    assert not work_dir.exists()
