"""Every shipped config takes its data and weights folders from one variable each."""

from pathlib import Path

import pytest
from mmengine.config import Config

from fdconv_mm.configs import CONFIG_DIR

REPO_CONFIGS = Path(__file__).parents[2] / 'configs'
EXPERIMENTS = {
    'faster_rcnn/faster-rcnn_r50-fdconv_fpn_1x_coco.py': 'coco/',
    'mask_rcnn/mask-rcnn_r50-fdconv_fpn_adamw-1x_coco.py': 'coco/',
    'upernet/upernet_r50-fdconv_4xb4-160k_ade20k-512x512.py': 'ade/ADEChallengeData2016',
    'upernet/upernet_swin-t-fdconv_8xb2-160k_ade20k-512x512.py': 'ade/ADEChallengeData2016',
    'mask_rcnn/mask-rcnn_swin-t-fdconv_fpn_1x_coco.py': 'coco/',
    'mask_rcnn/mask-rcnn_convnext-t-fdconv_fpn_1x_coco.py': 'coco/',
    'mask2former/mask2former_r50-fdconv_8xb2-90k_cityscapes-512x1024.py': 'cityscapes/',
    'segformer/segformer_mit-b0-fdconv_8xb2-160k_ade20k-512x512.py': 'ade/ADEChallengeData2016',
    'demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py': 'demo_shapes/',
    'demo/mask-rcnn_r18-fdconv_fpn_demo-shapes.py': 'demo_shapes/',
    'demo/upernet_r18-fdconv_demo-shapes.py': 'demo_shapes/',
}


def data_paths(cfg):
    """Every dataset ``data_root`` and evaluator ``ann_file`` of a config."""
    paths = [cfg[f'{split}_dataloader'].dataset.data_root for split in ('train', 'val', 'test')]
    paths += [cfg[f'{split}_evaluator'].get('ann_file') for split in ('val', 'test')]
    return [path for path in paths if path is not None]


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_data_and_weights_folders_follow_the_variables(name, monkeypatch):
    monkeypatch.setenv('FDCONV_DATA_ROOT', '/datasets')
    monkeypatch.setenv('FDCONV_PRETRAINED', '/weights')
    cfg = Config.fromfile(REPO_CONFIGS / name)
    paths = data_paths(cfg)
    assert len(paths) >= 3
    assert all(path.startswith(f'/datasets/{EXPERIMENTS[name]}') for path in paths), paths
    checkpoint = (cfg.model.backbone.get('init_cfg') or {}).get('checkpoint')
    assert checkpoint is None or checkpoint.startswith('/weights/')
    assert (checkpoint is None) == name.startswith('demo/')


def test_the_package_ships_the_repository_configs():
    shipped = sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.rglob('*.py'))
    assert shipped == sorted(p.relative_to(REPO_CONFIGS) for p in REPO_CONFIGS.rglob('*.py'))
    assert {f'{name}' for name in EXPERIMENTS} <= {p.as_posix() for p in shipped}
