"""Figures of what FDConv layers learned, one idea each (numbers from :mod:`.inspection`).

Every figure is drawn on a ``matplotlib`` figure bound to the Agg canvas, without ``pyplot``:
nothing is displayed, no display is needed, and the process-wide backend and figure
registry are left alone. Inputs are numpy arrays (or anything ``np.asarray`` accepts).
"""

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PathLike = Union[str, Path]
# Neutral attention: a modulation of 1 leaves the kernel or band as it is.
NEUTRAL = 1.0
# Least half-range of the colour scales around NEUTRAL: an untrained layer's 1e-6 deviations
# must not fill the scale.
MIN_SPREAD = 0.05
SUMMARY_KEYS = ('group', 'channel', 'filter', 'spatial', 'local')
SUMMARY_LABELS = {
    'group': 'group attention x K*P',
    'channel': 'channel attention',
    'filter': 'filter attention',
    'spatial': 'spatial attention',
    'local': 'KSM-local modulation',
}


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on the Agg canvas (no ``pyplot``), ``width x height`` in."""
    figure = Figure(figsize=(width, height), dpi=100, layout='constrained')
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, out_png: PathLike) -> Path:
    """Write ``figure`` as a PNG on a white background; parent folders are created."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, format='png', facecolor='white')
    return out_png


def tile_maps(maps: np.ndarray, num_cols: int, gap: int = 1) -> np.ndarray:
    """Lay ``J`` maps out as one mosaic, row by row, separated by NaN gaps.

    Args:
        maps (np.ndarray): (J, h, w).
        num_cols (int): Maps per row.
        gap (int): NaN pixels between maps. Defaults to 1.

    Returns:
        np.ndarray: (rows * (h + gap) - gap, cols * (w + gap) - gap) float.
    """
    count, height, width = maps.shape
    num_cols = min(num_cols, count)
    num_rows = -(-count // num_cols)
    mosaic = np.full(
        (num_rows * (height + gap) - gap, num_cols * (width + gap) - gap), np.nan, dtype=float
    )
    for index, tile in enumerate(maps):
        row, col = divmod(index, num_cols)
        top, left = row * (height + gap), col * (width + gap)
        mosaic[top : top + height, left : left + width] = tile
    return mosaic


def plot_frequency_responses(
    responses: np.ndarray, out_png: PathLike, title: str, num_cols: int = 8
) -> Path:
    """A grid of each group kernel's 2-D magnitude response, each scaled to its own peak.

    Args:
        responses (np.ndarray): (J, g, g), zero frequency at the centre
            (:func:`~.inspection.frequency_responses`).
        out_png (str | Path): Where to write the PNG.
        title (str): Figure title.
        num_cols (int): Groups per row. Defaults to 8.
    """
    responses = np.asarray(responses, dtype=float)
    count, grid = responses.shape[0], responses.shape[-1]
    peaks = responses.reshape(count, -1).max(axis=1)
    scaled = responses / np.where(peaks > 0, peaks, 1.0)[:, None, None]
    gap = max(1, grid // 8)
    mosaic = tile_maps(scaled, num_cols, gap)
    num_cols = min(num_cols, count)
    num_rows = -(-count // num_cols)
    figure = new_figure(1.0 + 1.1 * num_cols, 1.0 + 1.1 * num_rows)
    axes = figure.subplots()
    image = axes.imshow(mosaic, cmap='magma', vmin=0.0, vmax=1.0, interpolation='nearest')
    for index in range(count):
        row, col = divmod(index, num_cols)
        axes.text(
            col * (grid + gap) + 0.3,
            row * (grid + gap) + 0.3,
            str(index),
            color='white',
            fontsize=6,
            va='top',
        )
    axes.set_axis_off()
    axes.set_title(
        f'{title}\neach tile: one group kernel, zero frequency at its centre, '
        'edges at +-0.5 cycles/pixel',
        fontsize=9,
    )
    figure.colorbar(image, ax=axes, shrink=0.6, label="magnitude / the group's peak")
    return save_figure(figure, out_png)


def plot_similarity(
    matrices: Sequence[Tuple[str, np.ndarray]], out_png: PathLike, title: str
) -> Path:
    """Cosine-similarity matrices side by side, on one colour scale from -1 to 1.

    Args:
        matrices (Sequence[tuple]): ``(label, (J, J) matrix)`` per panel; each panel's
            title adds the mean ``|cos|`` of its distinct pairs.
        out_png (str | Path): Where to write the PNG.
        title (str): Figure title.
    """
    figure = new_figure(0.6 + 4.2 * len(matrices), 4.6)
    axes_row = np.atleast_1d(figure.subplots(1, len(matrices)))
    image = None
    for axes, (label, matrix) in zip(axes_row, matrices):
        matrix = np.asarray(matrix, dtype=float)
        image = axes.imshow(matrix, cmap='coolwarm', vmin=-1.0, vmax=1.0, interpolation='nearest')
        axes.set(xlabel='kernel', ylabel='kernel')
        axes.set_title(
            f'{label}\nmean |cos| of distinct pairs {mean_off_diagonal(matrix):.2g}', fontsize=9
        )
    figure.colorbar(image, ax=list(axes_row), shrink=0.8, label='cosine similarity')
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, out_png)


def mean_off_diagonal(matrix: np.ndarray) -> float:
    """Mean absolute value of the entries off the diagonal of a square matrix (0 for 1x1)."""
    matrix = np.abs(np.asarray(matrix, dtype=float))
    count = matrix.shape[0]
    if count < 2:
        return 0.0
    return float((matrix.sum() - np.trace(matrix)) / (count * (count - 1)))


def plot_radial_energy(
    radii: np.ndarray, profiles: np.ndarray, out_png: PathLike, title: str
) -> Path:
    """Each group's radially averaged power, scaled to its own peak, and its mean radius.

    Args:
        radii (np.ndarray): (R,) ring radii in cycles per pixel.
        profiles (np.ndarray): (J, R) radial power (:func:`~.inspection.radial_profile`).
        out_png (str | Path): Where to write the PNG.
        title (str): Figure title.
    """
    radii, profiles = np.asarray(radii, dtype=float), np.asarray(profiles, dtype=float)
    count = profiles.shape[0]
    peaks = profiles.max(axis=1, keepdims=True)
    scaled = profiles / np.where(peaks > 0, peaks, 1.0)
    totals = profiles.sum(axis=1)
    centroid = (profiles * radii).sum(axis=1) / np.where(totals > 0, totals, 1.0)
    step = radii[1] - radii[0] if len(radii) > 1 else 1.0
    figure = new_figure(7.0, 1.5 + min(0.08 * count, 6.0))
    axes = figure.subplots()
    image = axes.imshow(
        scaled,
        aspect='auto',
        cmap='viridis',
        vmin=0.0,
        vmax=1.0,
        interpolation='nearest',
        origin='lower',
        extent=(radii[0] - step / 2, radii[-1] + step / 2, -0.5, count - 0.5),
    )
    axes.plot(centroid, np.arange(count), color='white', linewidth=1.2, label='mean radius')
    axes.axvline(0.5, color='white', linestyle=':', linewidth=0.8)
    axes.set(xlabel='radius (cycles/pixel; 0.5 = Nyquist)', ylabel='group (0: lowest)')
    axes.legend(loc='lower right', fontsize='small')
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="radial power / the group's peak")
    return save_figure(figure, out_png)


def plot_group_attention(
    names: Sequence[str], attentions: Sequence[np.ndarray], out_png: PathLike, title: str
) -> Path:
    """Group attention of one image per layer (times ``K * P``: uniform is 1).

    Args:
        names (Sequence[str]): Layer names, one row each.
        attentions (Sequence[np.ndarray]): Per layer its (K*P,) attention times K*P; rows
            of different lengths are padded (grey).
        out_png (str | Path): Where to write the PNG.
        title (str): Figure title.
    """
    if not names or len(names) != len(attentions):
        raise ValueError(
            f'plot_group_attention needs one attention per layer, got {len(attentions)} '
            f'for {len(names)} layers'
        )
    width = max(len(a) for a in attentions)
    table = np.full((len(names), width), np.nan)
    for row, values in enumerate(attentions):
        table[row, : len(values)] = values
    spread = max(float(np.nanmax(np.abs(table - NEUTRAL))), MIN_SPREAD)
    figure = new_figure(8.0, 1.6 + 0.22 * len(names))
    axes = figure.subplots()
    image = axes.imshow(
        table,
        aspect='auto',
        cmap='coolwarm',
        vmin=NEUTRAL - spread,
        vmax=NEUTRAL + spread,
        interpolation='nearest',
    )
    axes.set_yticks(range(len(names)), labels=list(names), fontsize=7)
    axes.set_xlabel('frequency group (0: lowest frequencies)')
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label='attention x K*P (1: uniform)')
    return save_figure(figure, out_png)


def plot_band_maps(
    image: np.ndarray,
    maps: np.ndarray,
    labels: Sequence[str],
    out_png: PathLike,
    title: str,
) -> Path:
    """The image, then each FBM band weight map overlaid on it (1: band unchanged).

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB, the image as the model saw it.
        maps (np.ndarray): (n, h, w) band weights at the layer's resolution, stretched
            over the image.
        labels (Sequence[str]): One per map (its frequency range).
        out_png (str | Path): Where to write the PNG.
        title (str): Figure title.
    """
    image, maps = np.asarray(image), np.asarray(maps, dtype=float)
    if len(labels) != len(maps):
        raise ValueError(f'plot_band_maps got {len(labels)} labels for {len(maps)} maps')
    height, width = image.shape[:2]
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    grey = image.astype(float).mean(axis=-1)
    spread = max(float(np.abs(maps - NEUTRAL).max()), MIN_SPREAD)
    figure = new_figure(2.8 * (len(maps) + 1) + 0.8, 3.3)
    axes_row = figure.subplots(1, len(maps) + 1)
    axes_row[0].imshow(image, interpolation='nearest')
    axes_row[0].set_title('input', fontsize=9)
    overlay = None
    for axes, band, label in zip(axes_row[1:], maps, labels):
        axes.imshow(grey, cmap='gray', extent=extent, interpolation='nearest')
        overlay = axes.imshow(
            band,
            cmap='coolwarm',
            vmin=NEUTRAL - spread,
            vmax=NEUTRAL + spread,
            alpha=0.65,
            extent=extent,
            interpolation='nearest',
        )
        axes.set_title(label, fontsize=9)
    for axes in axes_row:
        axes.set_axis_off()
    figure.colorbar(overlay, ax=list(axes_row), shrink=0.8, label='band weight w_i')
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, out_png)


def plot_ksm_modulation(
    names: Sequence[str],
    summaries: Sequence[Dict[str, Tuple[float, ...]]],
    out_png: PathLike,
    title: Optional[str] = None,
) -> Path:
    """How far each attention moves the kernel from 1, per layer: mean +- std and min-max.

    Args:
        names (Sequence[str]): Layer names.
        summaries (Sequence[dict]): Per layer
            :func:`~.inspection.attention_summary` (key -> (mean, std, min, max)).
        out_png (str | Path): Where to write the PNG.
        title (str, optional): Figure title. Defaults to None.
    """
    if not names or len(names) != len(summaries):
        raise ValueError(
            f'plot_ksm_modulation needs one summary per layer, got {len(summaries)} '
            f'for {len(names)} layers'
        )
    keys = [key for key in SUMMARY_KEYS if any(key in s for s in summaries)]
    if not keys:
        raise ValueError('plot_ksm_modulation: the layers have no attention to draw')
    figure = new_figure(max(6.0, 0.35 * len(names) + 2.0), 1.2 + 1.5 * len(keys))
    axes_column = np.atleast_1d(figure.subplots(len(keys), 1, sharex=True))
    positions = np.arange(len(names))
    for axes, key in zip(axes_column, keys):
        rows = [(i, s[key]) for i, s in zip(positions, summaries) if key in s]
        xs = np.array([i for i, _ in rows])
        mean, std, low, high = (np.array([r[j] for _, r in rows]) for j in range(4))
        axes.vlines(xs, low, high, color='grey', linewidth=1.0, label='min - max')
        axes.errorbar(xs, mean, yerr=std, fmt='o', markersize=3, capsize=2, label='mean +- std')
        axes.axhline(NEUTRAL, color='black', linestyle=':', linewidth=0.8)
        axes.set_ylabel(SUMMARY_LABELS[key], fontsize=8)
        axes.grid(alpha=0.3)
    axes_column[0].legend(fontsize='x-small', loc='upper right')
    axes_column[-1].set_xticks(positions, labels=list(names), rotation=60, ha='right', fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, out_png)
