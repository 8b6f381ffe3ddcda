"""enable_amp and enable_auto_scale_lr: the config changes of --amp and --auto-scale-lr."""

import pytest
from mmengine.config import Config

from fdconv_mm.engine.tool_setup import enable_amp, enable_auto_scale_lr, train_options


def optim_config(wrapper_type: str = 'OptimWrapper') -> Config:
    return Config(dict(optim_wrapper=dict(type=wrapper_type, optimizer=dict(type='SGD', lr=0.1))))


@pytest.fixture
def on_gpu(monkeypatch):
    monkeypatch.setattr(train_options, 'get_device', lambda: 'cuda')


def test_amp_switches_the_optim_wrapper(on_gpu):
    cfg = optim_config()
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_amp_twice_keeps_the_config(on_gpu):
    cfg = optim_config('AmpOptimWrapper')
    cfg.optim_wrapper.loss_scale = 512.0
    enable_amp(cfg)
    assert cfg.optim_wrapper.loss_scale == 512.0


def test_amp_refuses_other_wrappers(on_gpu):
    with pytest.raises(ValueError, match="optim_wrapper type 'OptimWrapper'.*'ApexOptimWrapper'"):
        enable_amp(optim_config('ApexOptimWrapper'))


def test_amp_on_cpu_is_refused_up_front(monkeypatch):
    monkeypatch.setattr(train_options, 'get_device', lambda: 'cpu')
    with pytest.raises(ValueError, match='--amp needs a GPU'):
        enable_amp(optim_config())


def test_auto_scale_lr_enables_the_configs_setting():
    cfg = Config(dict(auto_scale_lr=dict(enable=False, base_batch_size=16)))
    enable_auto_scale_lr(cfg)
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)


@pytest.mark.parametrize('options', [dict(), dict(auto_scale_lr=dict(enable=False))])
def test_auto_scale_lr_needs_a_base_batch_size(options):
    with pytest.raises(ValueError, match='base_batch_size'):
        enable_auto_scale_lr(Config(options))
