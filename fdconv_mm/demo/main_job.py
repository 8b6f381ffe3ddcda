"""The main job, ``make demo``: train, evaluate and test an FDConv detector on the CPU.

Each step runs the project's own tools as a user would (``tools/train.py``,
``tools/test.py``), so the demo also checks them; this module only chains them, draws the
predictions and training curves from what they wrote, and ends with the FDConv figures of
the trained detector on a validation image (:func:`fdconv_mm.analysis.visualize.visualize_config`,
what ``tools/analysis_tools/visualize_fdconv.py`` runs), with an ``index.md`` and
``index.html`` showing all of them.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.logging import MMLogger

from ..analysis.visualize import Section, Visualization, visualize_config
from .plots import plot_predictions, plot_training_curves
from .synthetic_shapes import DEMO_CLASSES, generate_demo_dataset

DEMO_CONFIG = 'configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py'
TARGET_METRIC, TARGET_VALUE = 'coco/bbox_mAP_50', 0.5


def _run_tool(args: Sequence[str]) -> None:
    """Run a ``tools/`` script with this interpreter; its output streams to the terminal."""
    subprocess.run([sys.executable, *args], check=True)


def _newest(pattern: str, folder: Path) -> Path:
    matches = sorted(folder.glob(pattern), key=lambda path: path.stat().st_mtime)
    if not matches:
        raise FileNotFoundError(f'no {pattern} under {folder}')
    return matches[-1]


def read_test_metrics(test_dir: Path) -> Dict[str, float]:
    """The metrics ``tools/test.py`` logged in ``<test_dir>/<timestamp>/<timestamp>.json``."""
    log = _newest('*/*.json', test_dir)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {k: v for k, v in lines[-1].items() if '/' in k}


def draw_predictions(config: str, checkpoint: str, images: Sequence[Path], out_png: Path) -> Path:
    """Run the trained detector on ``images`` and draw its boxes (score >= 0.3)."""
    from mmdet.apis import inference_detector, init_detector
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    model = init_detector(config, checkpoint, device='cpu')
    pictures, predictions = [], []
    for path in images:
        result = inference_detector(model, str(path)).pred_instances
        pictures.append(_read_rgb(path))
        predictions.append((result.bboxes.numpy(), result.scores.numpy(), result.labels.numpy()))
    return plot_predictions(pictures, predictions, DEMO_CLASSES, out_png)


def draw_fdconv_figures(
    config: str, checkpoint: str, image: Path, work_dir: Path, predictions: Path, curves: Path
) -> Visualization:
    """The FDConv figures of the trained detector on ``image``, into ``work_dir``, with an
    index that also shows the predictions and the training curves."""
    demo_sections = (
        Section(
            'Predictions',
            'The trained detector on validation images: boxes scoring at least 0.3.',
            (predictions,),
        ),
        Section(
            'Training curves',
            'Training losses over iterations and the validation mAP after each epoch.',
            (curves,),
        ),
    )
    return visualize_config(
        config, work_dir, checkpoint, image=image, leading_sections=demo_sections
    )


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert('RGB'))


def run_demo(
    work_dir: Union[str, Path] = 'work_dirs/demo',
    config: str = DEMO_CONFIG,
    data_root: Union[str, Path] = 'data/demo_shapes',
    cfg_options: Optional[List[str]] = None,
    num_previews: int = 8,
    num_train: int = 400,
    num_val: int = 80,
) -> Dict[str, float]:
    """Generate the data, train, test from the checkpoint, draw the figures.

    Args:
        work_dir: Where the training writes its logs and checkpoint; the test writes
            under ``<work_dir>/test``, the figures beside them.
        config: The demo config; paths in it are relative to the repository root, where
            this runs.
        data_root: The demo dataset's folder (created on first use).
        cfg_options: ``--cfg-options`` for both tools, e.g. ``['train_cfg.max_epochs=1']``.
        num_previews: Validation images in the predictions figure.
        num_train, num_val: Size of the generated dataset.

    Returns:
        Dict[str, float]: The test metrics.
    """
    logger = MMLogger.get_current_instance()
    work_dir, data_root = Path(work_dir), Path(data_root)
    generate_demo_dataset(data_root, num_train=num_train, num_val=num_val)
    options = ['--cfg-options', *cfg_options] if cfg_options else []
    _run_tool(['tools/train.py', config, '--work-dir', str(work_dir), *options])
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    test_dir = work_dir / 'test'
    _run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(test_dir), *options])
    metrics = read_test_metrics(test_dir)
    curves = plot_training_curves(
        _newest('*/vis_data/scalars.json', work_dir),
        work_dir / 'training_curves.png',
        target=TARGET_VALUE,
    )
    previews = sorted((data_root / 'images' / 'val').glob('*.png'))[:num_previews]
    predictions = draw_predictions(config, checkpoint, previews, work_dir / 'predictions.png')
    fdconv = draw_fdconv_figures(config, checkpoint, previews[0], work_dir, predictions, curves)
    logger.info(
        f'demo figures: {curves}, {predictions} and {len(fdconv.figures)} FDConv figures, '
        f'all in {fdconv.index_md}; checkpoint: {checkpoint}'
    )
    return metrics
