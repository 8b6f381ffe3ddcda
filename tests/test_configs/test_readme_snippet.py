"""The README's mm-config snippet builds the paper's backbone."""

import re
from pathlib import Path

from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope

import fdconv_mm  # noqa: F401  (registers FDConv and the backbones)
from fdconv_mm import FDConv

README = Path(__file__).parents[2] / 'README.md'


def readme_python_block(section: str) -> str:
    """The first python code block under the README heading ``## section``."""
    body = README.read_text().split(f'\n## {section}\n', 1)[1]
    return re.search(r'```python\n(.*?)```', body, re.S)[1]


def test_readme_mm_config_snippet_builds_the_papers_backbone(tmp_path):
    config = tmp_path / 'snippet.py'
    config.write_text(
        "_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'\n"
        + readme_python_block('Quick start: mm configs')
    )
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope('mmdet'):
        backbone = MODELS.build(cfg.model.backbone)
    assert type(backbone).__name__ == 'ResNetFDConv'
    active = [n for n, m in backbone.named_modules() if isinstance(m, FDConv) and m.fdconv_active]
    # conv1..conv3 of the 16 bottlenecks; the stem and the 4 downsample shortcuts stay plain.
    assert len(active) == 48
    assert all(re.fullmatch(r'layer\d\.\d+\.conv[123]', name) for name in active)
    # mmdet's base freezes stage 1 (frozen_stages=1); its KSM and FBM still train.
    attention = [
        p.requires_grad
        for n, p in backbone.named_parameters()
        if n.startswith('layer1.') and ('KSM' in n or 'FBM' in n)
    ]
    assert attention and all(attention)
