"""From a config file and the tools' flags to a ready mmengine Runner, for mmdet and mmseg.

``tools/train.py`` and ``tools/test.py`` parse their flags and call
:func:`setup_train_config` / :func:`setup_test_config`, then :func:`build_runner`. The flags
mean what they mean in mmdet 3.3.0's tools; the config's ``default_scope`` picks the library.
"""

import importlib
import os.path as osp
from typing import Any, Dict, Optional

from mmengine.config import Config
from mmengine.runner import Runner

from ..compat import destroy_process_group, prepare_distributed
from .eval_options import dump_predictions, enable_tta, enable_visualization
from .hook_config import check_checkpoint_keys, use_atomic_checkpoints
from .resume import is_remote, resolve_resume
from .scope import register_scope_modules
from .train_options import enable_amp, enable_auto_scale_lr

WORK_DIRS = './work_dirs'


def default_work_dir(config_path: str) -> str:
    """``./work_dirs/<config file name without extension>``."""
    return osp.join(WORK_DIRS, osp.splitext(osp.basename(config_path))[0])


def load_config(
    config_path: str,
    cfg_options: Optional[Dict[str, Any]] = None,
    launcher: str = 'none',
    work_dir: Optional[str] = None,
) -> Config:
    """Read a config, apply ``--cfg-options`` and register its library's modules.

    The work dir is, by priority, ``work_dir``, the config's ``work_dir``, then
    :func:`default_work_dir`.

    Args:
        config_path (str): The config file.
        cfg_options (dict, optional): ``--cfg-options`` as parsed by mmengine's ``DictAction``.
            Defaults to None.
        launcher (str): 'none', 'pytorch', 'slurm' or 'mpi'. Defaults to 'none'.
        work_dir (str, optional): ``--work-dir``. Defaults to None.

    Returns:
        Config: The config, with ``launcher`` and ``work_dir`` set.
    """
    cfg = Config.fromfile(config_path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config_path)
    register_scope_modules(cfg)
    return cfg


def setup_train_config(
    config_path: str,
    work_dir: Optional[str] = None,
    amp: bool = False,
    auto_scale_lr: bool = False,
    resume: Optional[str] = None,
    cfg_options: Optional[Dict[str, Any]] = None,
    launcher: str = 'none',
) -> Config:
    """The config ``tools/train.py`` builds its Runner from.

    A config whose ``default_hooks.checkpoint`` is mmengine's ``CheckpointHook`` gets
    :class:`~fdconv_mm.engine.hooks.AtomicCheckpointHook` (checkpoints are never left
    half-written; the shipped configs name it themselves).

    Args:
        config_path (str): The config file.
        work_dir (str, optional): ``--work-dir``. Defaults to None.
        amp (bool): ``--amp``: mixed precision. Defaults to False.
        auto_scale_lr (bool): ``--auto-scale-lr``. Defaults to False.
        resume (str, optional): ``--resume``: 'auto' (latest checkpoint of the work dir) or a
            checkpoint; a :class:`~fdconv_mm.engine.ResumeError` when there is none.
            Defaults to None.
        cfg_options (dict, optional): ``--cfg-options``. Defaults to None.
        launcher (str): ``--launcher``. Defaults to 'none'.

    Returns:
        Config: The config.
    """
    cfg = load_config(config_path, cfg_options, launcher, work_dir)
    if amp:
        enable_amp(cfg)
    if auto_scale_lr:
        enable_auto_scale_lr(cfg)
    resolve_resume(cfg, resume)
    use_atomic_checkpoints(cfg)
    return cfg


def setup_test_config(
    config_path: str,
    checkpoint: str,
    work_dir: Optional[str] = None,
    out: Optional[str] = None,
    show: bool = False,
    show_dir: Optional[str] = None,
    wait_time: float = 2.0,
    tta: bool = False,
    cfg_options: Optional[Dict[str, Any]] = None,
    launcher: str = 'none',
    allow_partial_load: bool = False,
) -> Config:
    """The config ``tools/test.py`` builds its Runner from.

    A checkpoint with missing, unexpected or mis-shaped keys is refused before anything is
    evaluated (:class:`~fdconv_mm.engine.hooks.CheckpointKeyCheckHook`, added to configs
    that do not name it) unless ``allow_partial_load``.

    Args:
        config_path (str): The config file.
        checkpoint (str): The checkpoint to test; ``FileNotFoundError`` if a local one is missing.
        work_dir (str, optional): ``--work-dir``. Defaults to None.
        out (str, optional): ``--out``, see :func:`~fdconv_mm.engine.dump_predictions`.
            Defaults to None.
        show (bool): ``--show``. Defaults to False.
        show_dir (str, optional): ``--show-dir``. Defaults to None.
        wait_time (float): ``--wait-time``. Defaults to 2.0.
        tta (bool): ``--tta``: test-time augmentation. Defaults to False.
        cfg_options (dict, optional): ``--cfg-options``. Defaults to None.
        launcher (str): ``--launcher``. Defaults to 'none'.
        allow_partial_load (bool): ``--allow-partial-load``: test a checkpoint whose keys
            do not all fit the model (mmengine only logs a warning). Defaults to False.

    Returns:
        Config: The config.
    """
    if not is_remote(checkpoint) and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    cfg = load_config(config_path, cfg_options, launcher, work_dir)
    cfg.load_from = checkpoint
    if show or show_dir:
        enable_visualization(cfg, show, show_dir, wait_time)
    if tta:
        enable_tta(cfg)
    if out is not None:
        dump_predictions(cfg, out)
    check_checkpoint_keys(cfg, allow_partial_load)
    return cfg


def build_runner(cfg: Config) -> Runner:
    """Build the Runner of ``cfg`` (``runner_type`` if set).

    Prepares multi-process runs on CPUs (:func:`~fdconv_mm.engine.compat.prepare_distributed`)
    first; what that changed is written to the Runner's log. mmengine checkpoints load under
    torch>=2.6 because importing ``fdconv_mm`` allowlisted their contents.

    Args:
        cfg (Config): A config from :func:`setup_train_config` or :func:`setup_test_config`.

    Returns:
        Runner: The Runner.
    """
    notes = prepare_distributed(cfg)
    if 'runner_type' in cfg:
        registry = importlib.import_module(f'{cfg.default_scope}.registry')
        runner = registry.RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    for note in notes:
        runner.logger.warning(note)
    return runner


def run_train(cfg: Config) -> None:
    """Build the Runner of ``cfg`` and train; the process group is released afterwards."""
    build_runner(cfg).train()
    destroy_process_group()


def run_test(cfg: Config) -> Dict[str, Any]:
    """Build the Runner of ``cfg`` and test ``cfg.load_from``; returns the metrics.

    Args:
        cfg (Config): A config from :func:`setup_test_config`; a checkpoint that does not
            fit the model raises :class:`~fdconv_mm.engine.CheckpointMismatchError` before
            anything is evaluated, unless it allowed partial loads.

    Returns:
        dict: The metrics.
    """
    runner = build_runner(cfg)
    try:
        metrics = runner.test()
    finally:
        destroy_process_group()
    return metrics
