"""The config changes behind ``tools/train.py --amp`` and ``--auto-scale-lr``."""

import logging

from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log

AMP_WRAPPER = 'AmpOptimWrapper'
PLAIN_WRAPPER = 'OptimWrapper'


def enable_amp(cfg: Config) -> None:
    """Switch ``cfg.optim_wrapper`` to mmengine's ``AmpOptimWrapper`` with a dynamic loss scale.

    Args:
        cfg (Config): A training config whose ``optim_wrapper`` is an ``OptimWrapper``.
    """
    if get_device() == 'cpu':
        raise ValueError(
            "--amp needs a GPU (or NPU/MLU/MUSA): mmengine's AmpOptimWrapper refuses to run "
            'on the CPU'
        )
    wrapper_type = cfg.optim_wrapper.get('type', PLAIN_WRAPPER)
    if wrapper_type == AMP_WRAPPER:
        print_log(
            'AMP training is already enabled in the config.',
            logger='current',
            level=logging.WARNING,
        )
        return
    if wrapper_type != PLAIN_WRAPPER:
        raise ValueError(
            f"--amp works on optim_wrapper type '{PLAIN_WRAPPER}', the config has "
            f"'{wrapper_type}'"
        )
    cfg.optim_wrapper['type'] = AMP_WRAPPER
    cfg.optim_wrapper['loss_scale'] = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    """Turn on the Runner's linear learning-rate scaling by the total batch size.

    Args:
        cfg (Config): A config with ``auto_scale_lr = dict(enable=..., base_batch_size=...)``.
    """
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
        raise ValueError(
            '--auto-scale-lr needs auto_scale_lr = dict(enable=False, base_batch_size=N) in '
            'the config, N being the total batch size its learning rate was set for'
        )
    auto_scale_lr['enable'] = True
