"""Every shipped config names fdconv_mm's hooks, so that any mm tool running it gets them."""

import ast
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import HOOKS

from fdconv_mm.engine import AtomicCheckpointHook, CheckpointKeyCheckHook

REPO_CONFIGS = Path(__file__).parents[2] / 'configs'
CONFIGS = sorted(p for p in REPO_CONFIGS.rglob('*.py') if '_base_' not in p.parts)


def library_base(config: Path):
    """The ``mmdet::``/``mmseg::`` config a file inherits directly (None for a list)."""
    for node in ast.parse(config.read_text()).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == '_base_':
            base = ast.literal_eval(node.value)
            return base if isinstance(base, str) and '::' in base else None
    return None


@pytest.mark.parametrize('config', CONFIGS, ids=lambda path: path.name)
def test_config_names_both_hooks_and_imports_fdconv_mm(config, tmp_path):
    cfg = Config.fromfile(config)
    assert 'fdconv_mm' in cfg.custom_imports.imports
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.type == 'AtomicCheckpointHook'
    assert [hook.type for hook in cfg.custom_hooks] == ['CheckpointKeyCheckHook']
    with HOOKS.switch_scope_and_registry(cfg.default_scope) as registry:
        assert registry.get(checkpoint.type) is AtomicCheckpointHook
        assert registry.get('CheckpointKeyCheckHook') is CheckpointKeyCheckHook
    base = library_base(config)
    if base is not None:  # only the type differs from the library's config
        (tmp_path / 'base.py').write_text(f'_base_ = {base!r}\n')
        expected = dict(Config.fromfile(tmp_path / 'base.py').default_hooks.checkpoint)
        assert dict(checkpoint) == dict(expected, type='AtomicCheckpointHook')
