"""The main job end to end on a tiny dataset: train, save, test from the checkpoint, resume."""

import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from fdconv_mm.demo.main_job import DEMO_CONFIG, read_test_metrics, run_demo

ROOT = Path(__file__).parents[2]


def tiny_options(data_root: Path, max_epochs: int) -> list:
    options = [f'train_cfg.max_epochs={max_epochs}', 'train_dataloader.batch_size=4']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [
            f'{loader}.dataset.data_root={data_root}/',
            f'{loader}.num_workers=0',
            f'{loader}.persistent_workers=False',
        ]
    for evaluator in ('val_evaluator', 'test_evaluator'):
        options.append(f'{evaluator}.ann_file={data_root}/annotations/instances_val.json')
    return options


@pytest.mark.slow
def test_demo_trains_saves_tests_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo runs the tools from the repository root
    data_root, work_dir = tmp_path / 'shapes', tmp_path / 'work'
    metrics = run_demo(
        work_dir,
        data_root=data_root,
        cfg_options=tiny_options(data_root, max_epochs=1),
        num_previews=2,
        num_train=8,
        num_val=4,
    )
    assert 0.0 <= metrics['coco/bbox_mAP_50'] <= 1.0
    assert metrics == read_test_metrics(work_dir / 'test')
    checkpoint = Path((work_dir / 'last_checkpoint').read_text().strip())
    assert checkpoint.name == 'epoch_1.pth' and checkpoint.is_file()
    for figure in ('predictions.png', 'training_curves.png'):
        assert (work_dir / figure).stat().st_size > 10_000
    # The FDConv figures of the trained detector, and an index showing them with the above.
    fdconv = ['group_attention.png', 'ksm_modulation.png'] + [
        f'backbone.layer{stage}.1.conv2_{kind}.png'
        for stage in (1, 2, 3, 4)
        for kind in ('frequency_responses', 'radial_energy', 'similarity', 'band_maps')
    ]
    index = (work_dir / 'index.md').read_text()
    for figure in ['predictions.png', 'training_curves.png', *fdconv]:
        assert (work_dir / figure).is_file() and f']({figure})' in index
    assert f'checkpoint: {checkpoint}' in index and 'images/val/' in index
    assert (work_dir / 'index.html').is_file()
    resumed = subprocess.run(
        [sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', str(work_dir), '--resume']
        + ['--cfg-options']
        + tiny_options(data_root, max_epochs=2),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 1' in resumed.stdout + resumed.stderr
    assert (work_dir / 'epoch_2.pth').is_file()


def test_misspelled_fdconv_option_in_a_config_names_it():
    from mmdet.registry import MODELS

    import fdconv_mm  # noqa: F401

    cfg = Config.fromfile(ROOT / DEMO_CONFIG)
    cfg.model.backbone.conv_cfg = dict(type='FDConv', kernel_nmu=64)
    with pytest.raises(TypeError, match='kernel_nmu'):
        MODELS.build(cfg.model)
