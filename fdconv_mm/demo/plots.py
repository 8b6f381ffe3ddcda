"""The demo's two figures: training curves from mmengine's log and a grid of detections.

Both draw on a ``matplotlib`` figure bound to the Agg canvas, without ``pyplot``: nothing is
displayed, and the process-wide backend and figure registry are left alone.
"""

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.patches import Rectangle

from ..analysis.figures import new_figure, save_figure
from .synthetic_shapes import DEMO_PALETTE

Record = Dict[str, float]
# (boxes (N, 4) xyxy, scores (N,), labels (N,)); anything np.asarray accepts.
Prediction = Tuple[np.ndarray, np.ndarray, np.ndarray]
# (boxes (M, 4) xyxy, labels (M,)).
GroundTruth = Tuple[np.ndarray, np.ndarray]

DEFAULT_METRIC_KEYS: Tuple[str, ...] = ('coco/bbox_mAP', 'coco/bbox_mAP_50')


def read_scalars(scalars_json: Union[str, Path]) -> Tuple[List[Record], List[Record]]:
    """Split mmengine's ``vis_data/scalars.json`` into training and validation records.

    The file holds one JSON object per line. Training lines carry ``lr`` or a ``loss*``
    key, with ``iter`` (the global iteration) and ``step``; validation lines carry the
    metrics (``coco/bbox_mAP``, ``mIoU``, ...) and ``step`` (the epoch, with mmengine's
    default ``log_metric_by_epoch=True``). Blank lines are skipped.

    Args:
        scalars_json (str | Path): Path of the file.

    Returns:
        tuple[list[dict], list[dict]]: Training records and validation records, in file
        order.

    Raises:
        ValueError: If a line is not a JSON object, naming the line.
    """
    train, val = [], []
    lines = Path(scalars_json).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise ValueError(f'{scalars_json}:{number} is not valid JSON: {error}') from None
        if not isinstance(record, dict):
            raise ValueError(f'{scalars_json}:{number} is not a JSON object')
        if 'lr' in record or any(key.startswith('loss') for key in record):
            train.append(record)
        else:
            val.append(record)
    return train, val


def plot_training_curves(
    scalars_json: Union[str, Path],
    out_png: Union[str, Path],
    metric_keys: Sequence[str] = DEFAULT_METRIC_KEYS,
    target: Optional[float] = None,
    title: Optional[str] = None,
) -> Path:
    """Two panels: training losses over iterations, validation metrics over epochs.

    The left panel draws the total ``loss`` (bold) and its ``loss_*`` parts (thin) against
    ``iter`` (or ``step`` where ``iter`` is missing); the right panel draws each of
    ``metric_keys`` found in the validation records against ``step``. A panel without
    data says so instead of staying empty.

    Args:
        scalars_json (str | Path): mmengine's ``<work_dir>/<timestamp>/vis_data/scalars.json``.
        out_png (str | Path): Where to write the PNG; parent folders are created.
        metric_keys (Sequence[str]): Validation metrics to draw. Defaults to
            ``('coco/bbox_mAP', 'coco/bbox_mAP_50')``.
        target (float, optional): Draw a dashed horizontal line at this metric value
            (e.g. 0.5, the demo's bbox_mAP_50 goal). Defaults to None.
        title (str, optional): Figure title. Defaults to None.

    Returns:
        Path: ``out_png``.

    Raises:
        ValueError: If the file holds neither losses nor any of ``metric_keys``.
    """
    train, val = read_scalars(scalars_json)
    loss_keys = sorted({key for record in train for key in record if key.startswith('loss')})
    val = [record for record in val if any(key in record for key in metric_keys)]
    if not loss_keys and not val:
        raise ValueError(
            f'{scalars_json} holds no loss and none of the metrics {list(metric_keys)}'
        )

    figure = new_figure(10, 4)
    loss_axes, metric_axes = figure.subplots(1, 2)
    for key in loss_keys:
        points = [
            (record.get('iter', record.get('step', index)), record[key])
            for index, record in enumerate(train, start=1)
            if key in record
        ]
        xs, ys = zip(*points)
        is_total = key == 'loss'
        loss_axes.plot(
            xs,
            ys,
            label=key,
            linewidth=2.0 if is_total else 0.8,
            alpha=1.0 if is_total else 0.7,
            zorder=3 if is_total else 2,
        )
    loss_axes.set(xlabel='iteration', ylabel='loss', title='training loss')
    if loss_keys:
        loss_axes.legend(fontsize='small')
        loss_axes.grid(alpha=0.3)
    else:
        loss_axes.text(0.5, 0.5, 'no training records', ha='center', va='center')

    highest = 1.0 if target is None else max(1.0, target)
    for key in metric_keys:
        points = [(record['step'], record[key]) for record in val if key in record]
        if points:
            xs, ys = zip(*points)
            metric_axes.plot(xs, ys, marker='o', label=key)
            highest = max(highest, *ys)
    if target is not None:
        metric_axes.axhline(target, color='grey', linestyle='--', label=f'target {target:g}')
    # COCO metrics lie in [0, 1]; others (mmseg's mIoU) are percentages.
    metric_axes.set(xlabel='epoch', ylabel='metric', title='validation')
    metric_axes.set_ylim(0.0, 1.0 if highest <= 1.0 else 1.05 * highest)
    if val:
        metric_axes.legend(fontsize='small')
        metric_axes.grid(alpha=0.3)
    else:
        metric_axes.text(0.5, 0.5, 'no validation records', ha='center', va='center')
    if title:
        figure.suptitle(title)
    return save_figure(figure, out_png)


def _class_colour(label: int, palette: Sequence[Sequence[int]]) -> Tuple[float, ...]:
    return tuple(channel / 255 for channel in palette[label % len(palette)])


def plot_predictions(
    images: Sequence[np.ndarray],
    predictions: Sequence[Prediction],
    class_names: Sequence[str],
    out_png: Union[str, Path],
    score_thr: float = 0.3,
    ground_truth: Optional[Sequence[GroundTruth]] = None,
    palette: Sequence[Sequence[int]] = DEMO_PALETTE,
    num_cols: int = 4,
    title: Optional[str] = None,
) -> Path:
    """A grid of images with their predicted boxes, class names and scores.

    Predictions scoring below ``score_thr`` are not drawn. Ground-truth boxes, when
    given, are drawn as dashed white outlines beneath the predictions.

    Args:
        images (Sequence[np.ndarray]): Images, each (H, W, 3) uint8 RGB.
        predictions (Sequence[tuple]): Per image ``(boxes, scores, labels)``: boxes
            (N, 4) ``x1, y1, x2, y2`` in pixels, scores (N,), labels (N,) indices into
            ``class_names``. numpy arrays, lists or CPU tensors.
        class_names (Sequence[str]): Name of each label.
        out_png (str | Path): Where to write the PNG; parent folders are created.
        score_thr (float): Least score drawn. Defaults to 0.3.
        ground_truth (Sequence[tuple], optional): Per image ``(boxes, labels)``, boxes
            (M, 4) xyxy. Defaults to None.
        palette (Sequence[Sequence[int]]): RGB colour of each label, cycled. Defaults to
            ``DEMO_PALETTE``.
        num_cols (int): Images per row. Defaults to 4.
        title (str, optional): Figure title. Defaults to None.

    Returns:
        Path: ``out_png``.

    Raises:
        ValueError: If there are no images, or ``predictions`` or ``ground_truth`` do
            not have one entry per image.
    """
    if not images:
        raise ValueError('plot_predictions needs at least one image')
    if len(predictions) != len(images):
        raise ValueError(
            f'predictions has {len(predictions)} entries for {len(images)} images; '
            'give one (boxes, scores, labels) per image'
        )
    if ground_truth is not None and len(ground_truth) != len(images):
        raise ValueError(
            f'ground_truth has {len(ground_truth)} entries for {len(images)} images; '
            'give one (boxes, labels) per image'
        )
    if num_cols < 1:
        raise ValueError(f'num_cols must be >= 1, got {num_cols}')

    num_cols = min(num_cols, len(images))
    num_rows = -(-len(images) // num_cols)
    figure = new_figure(2.6 * num_cols, 2.6 * num_rows + (0.4 if title else 0.0))
    axes_grid = figure.subplots(num_rows, num_cols, squeeze=False).ravel()
    for index, axes in enumerate(axes_grid):
        axes.set_axis_off()
        if index >= len(images):
            continue
        image = np.asarray(images[index])
        axes.imshow(image, interpolation='nearest')
        if ground_truth is not None:
            gt_boxes, _ = ground_truth[index]
            for x1, y1, x2, y2 in np.asarray(gt_boxes, dtype=float).reshape(-1, 4):
                axes.add_patch(
                    Rectangle(
                        (x1, y1),
                        x2 - x1,
                        y2 - y1,
                        fill=False,
                        edgecolor='white',
                        linestyle='--',
                        linewidth=1.0,
                    )
                )
        boxes, scores, labels = predictions[index]
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        scores = np.asarray(scores, dtype=float).reshape(-1)
        labels = np.asarray(labels).reshape(-1).astype(int)
        kept = 0
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels):
            if score < score_thr:
                continue
            kept += 1
            colour = _class_colour(label, palette)
            axes.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5)
            )
            name = class_names[label] if 0 <= label < len(class_names) else str(label)
            axes.text(
                x1,
                y1,
                f'{name} {score:.2f}',
                fontsize=7,
                color='white',
                va='bottom',
                bbox=dict(facecolor=colour, edgecolor='none', pad=1.0, alpha=0.85),
                clip_on=True,
            )
        # Boxes and labels reaching past the border must not widen the view.
        axes.set(xlim=(-0.5, image.shape[1] - 0.5), ylim=(image.shape[0] - 0.5, -0.5))
        axes.set_title(f'#{index}: {kept} detections', fontsize=8)
    if title:
        figure.suptitle(title)
    return save_figure(figure, out_png)
