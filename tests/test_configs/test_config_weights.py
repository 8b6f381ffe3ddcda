"""Each experiment config starts from the file its header's conversion command writes.

The header of every config names a ``tools/convert_weights.py`` command. The test plays it on
random plain weights of the config's own backbone (as an mmpretrain-style file, under
``backbone.``), points the config's ``init_cfg`` at the result and checks that the backbone
then holds every converted tensor: a wrong prefix or model type loads nothing and only logs.
"""

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

import fdconv_mm  # noqa: F401  (registers the backbones)
from fdconv_mm.converters.imagenet import FILE_PREFIX

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / 'configs'
COMMAND = re.compile(r'--model_type (?P<type>\w+).*?--save_path (?P<save>\S+)', re.S)


def experiment_configs():
    return sorted(
        str(path.relative_to(CONFIGS))
        for path in CONFIGS.glob('*/*.py')
        if path.parent.name not in ('_base_', 'demo')
    )


def header(path: Path) -> str:
    lines = path.read_text().splitlines()
    return '\n'.join(line for line in lines if line.startswith('#'))


def build_backbone(cfg: Config, backbone: dict):
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    registry = DET_MODELS if cfg.default_scope == 'mmdet' else SEG_MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.build(backbone)


@pytest.fixture(scope='module')
def convert_weights():
    """``tools/convert_weights.py``'s ``main``."""
    spec = importlib.util.spec_from_file_location(
        'convert_weights', ROOT / 'tools/convert_weights.py'
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_every_experiment_config_is_checked():
    assert len(experiment_configs()) >= 8


@pytest.mark.slow
@pytest.mark.parametrize('config', experiment_configs())
def test_config_loads_what_its_conversion_command_writes(config, tmp_path, convert_weights):
    cfg = Config.fromfile(CONFIGS / config)
    command = COMMAND.search(header(CONFIGS / config))
    assert command, f'{config}: no convert_weights.py command in the header'
    backbone_cfg = copy.deepcopy(cfg.model.backbone)  # a ConfigDict, as mmdet's Swin needs
    assert Path(backbone_cfg['init_cfg']['checkpoint']) == Path(command['save'])

    plain = build_backbone(cfg, ConfigDict(backbone_cfg, conv_cfg=None, init_cfg=None))
    torch.manual_seed(0)
    plain_state = {
        f'backbone.{key}': value + torch.randn_like(value) if value.is_floating_point() else value
        for key, value in plain.state_dict().items()
    }
    source, target = tmp_path / 'imagenet.pth', tmp_path / Path(command['save']).name
    torch.save({'state_dict': plain_state}, source)
    argv = ['--model_type', command['type'], '--weight_path', str(source)]
    assert convert_weights([*argv, '--save_path', str(target)]) == 0
    converted = torch.load(target, weights_only=True)['state_dict']
    file_prefix = FILE_PREFIX[command['type']]

    backbone_cfg['init_cfg']['checkpoint'] = str(target)
    backbone = build_backbone(cfg, backbone_cfg)
    backbone.init_weights()
    loaded = backbone.state_dict()
    assert any(key.endswith('dft_weight') for key in converted)
    for key, value in converted.items():
        assert torch.equal(loaded[key[len(file_prefix) :]], value), f'{config}: {key} not loaded'
    not_in_file = {key for key in loaded if file_prefix + key not in converted}
    assert not_in_file and all(('KSM_' in key or 'FBM' in key) for key in not_in_file)
