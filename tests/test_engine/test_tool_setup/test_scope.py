"""register_scope_modules: the config's default_scope picks mmdet or mmseg."""

import pytest
from mmengine.config import Config
from mmengine.registry import MODELS

from fdconv_mm.engine import register_scope_modules


@pytest.mark.parametrize('scope, model', [('mmdet', 'RetinaNet'), ('mmseg', 'EncoderDecoder')])
def test_scope_registers_its_library(scope, model):
    assert register_scope_modules(Config(dict(default_scope=scope))) == scope
    with MODELS.switch_scope_and_registry(scope) as registry:
        assert registry.get(model) is not None


@pytest.mark.parametrize('options', [dict(), dict(default_scope='mmpretrain')])
def test_other_scopes_are_refused(options):
    with pytest.raises(ValueError, match=r"default_scope must be one of \('mmdet', 'mmseg'\)"):
        register_scope_modules(Config(options))
