"""The config changes behind ``tools/test.py --show``, ``--show-dir``, ``--tta`` and ``--out``.

Each option keeps the meaning it has in its library's own ``tools/test.py`` (mmdet 3.3.0,
mmseg 1.2.2), chosen by the config's ``default_scope``.
"""

import copy
import inspect
import warnings
from typing import Any, Dict, Optional

from mmengine.config import Config, ConfigDict
from mmengine.registry import HOOKS

PICKLE_SUFFIXES = ('.pkl', '.pickle')
DET_TTA_MODEL = dict(
    type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
)
SEG_TTA_MODEL = dict(type='SegTTAModel')
DET_TTA_META_KEYS = (
    'img_id',
    'img_path',
    'ori_shape',
    'img_shape',
    'scale_factor',
    'flip',
    'flip_direction',
)


def hook_accepts(hook_type: Any, scope: str, argument: str) -> bool:
    """Whether the hook class that ``hook_type`` names in ``scope`` takes ``argument``."""
    if isinstance(hook_type, str):
        with HOOKS.switch_scope_and_registry(scope) as registry:
            hook_type = registry.get(hook_type)
    return hook_type is not None and argument in inspect.signature(hook_type).parameters


def enable_visualization(
    cfg: Config, show: bool = False, show_dir: Optional[str] = None, wait_time: float = 2.0
) -> None:
    """Make ``default_hooks.visualization`` draw the test predictions.

    ``show_dir`` goes where the library's test tool puts it: mmdet's
    ``DetVisualizationHook(test_out_dir=...)`` (relative paths land in
    ``<work_dir>/<timestamp>/``), or, for hooks without ``test_out_dir`` such as mmseg's
    ``SegVisualizationHook``, the visualizer's ``save_dir`` (images in
    ``<show_dir>/vis_data/vis_image/``).

    Args:
        cfg (Config): The full config, with ``default_scope``.
        show (bool): Show each image in a window. Defaults to False.
        show_dir (str, optional): Where to save the painted images. Defaults to None.
        wait_time (float): Seconds each shown image stays. Defaults to 2.0.
    """
    hooks = cfg.get('default_hooks') or {}
    if 'visualization' not in hooks:
        raise ValueError(
            '--show and --show-dir need default_hooks.visualization in the config, e.g. '
            "dict(type='DetVisualizationHook') or dict(type='SegVisualizationHook')"
        )
    hook = hooks['visualization']
    hook['draw'] = True
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time
    if show_dir:
        if hook_accepts(hook['type'], cfg.default_scope, 'test_out_dir'):
            hook['test_out_dir'] = show_dir
        else:
            cfg.visualizer['save_dir'] = show_dir


def innermost_dataset(dataloader: Dict[str, Any]) -> Dict[str, Any]:
    """The dataset config under any wrappers (``dataset=dict(dataset=...)``)."""
    dataset = dataloader['dataset']
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def det_flip_tta_pipeline(test_pipeline: Any) -> list:
    """mmdet's default TTA pipeline: the test pipeline, packed with and without a flip."""
    pipeline = copy.deepcopy(list(test_pipeline))
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='RandomFlip', prob=1.0), dict(type='RandomFlip', prob=0.0)],
            [dict(type='PackDetInputs', meta_keys=DET_TTA_META_KEYS)],
        ],
    )
    return pipeline


def enable_tta(cfg: Config) -> None:
    """Wrap ``cfg.model`` in ``cfg.tta_model`` and test with ``cfg.tta_pipeline``.

    mmdet configs without them get mmdet's defaults (``DetTTAModel``, horizontal flip); mmseg
    configs get ``SegTTAModel`` but must define ``tta_pipeline`` (mmseg has no default).

    Args:
        cfg (Config): The full config, with ``default_scope``.
    """
    dataset = innermost_dataset(cfg.test_dataloader)
    if 'tta_model' not in cfg:
        default = DET_TTA_MODEL if cfg.default_scope == 'mmdet' else SEG_TTA_MODEL
        warnings.warn(f'--tta: the config has no tta_model, using {default}', stacklevel=2)
        cfg.tta_model = copy.deepcopy(default)
    if 'tta_pipeline' not in cfg:
        if cfg.default_scope != 'mmdet':
            raise ValueError(
                '--tta needs tta_pipeline in the config (mmseg configs define it beside '
                'test_pipeline, e.g. with TestTimeAug over scales and flips)'
            )
        warnings.warn('--tta: the config has no tta_pipeline, using a flip TTA', stacklevel=2)
        cfg.tta_pipeline = det_flip_tta_pipeline(dataset['pipeline'])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset['pipeline'] = cfg.tta_pipeline


def dump_predictions(cfg: Config, out: str) -> None:
    """Save the test predictions as the library's test tool does with ``--out``.

    mmdet: ``out`` is a pickle file written by ``DumpDetResults``. mmseg: ``out`` is a directory
    where the ``IoUMetric`` writes one PNG of predicted labels per image.

    Args:
        cfg (Config): The full config, with ``default_scope``.
        out (str): The pickle file (mmdet) or directory (mmseg).
    """
    evaluator = cfg.test_evaluator
    if cfg.default_scope == 'mmdet':
        if not out.endswith(PICKLE_SUFFIXES):
            raise ValueError(f'--out must be a {"/".join(PICKLE_SUFFIXES)} file, got {out}')
        dump = dict(type='DumpDetResults', out_file_path=out)
        if isinstance(evaluator, dict) and 'metrics' in evaluator:
            metrics = evaluator['metrics']
            evaluator['metrics'] = [*(metrics if isinstance(metrics, list) else [metrics]), dump]
        elif isinstance(evaluator, dict):
            cfg.test_evaluator = [evaluator, dump]
        else:
            cfg.test_evaluator = [*evaluator, dump]
        return
    for metric in evaluator if isinstance(evaluator, list) else [evaluator]:
        metric['output_dir'] = out
        metric['keep_results'] = True
