"""From a config, a checkpoint and an image to a folder of FDConv figures with an index.

What ``tools/analysis_tools/visualize_fdconv.py`` and the demo run: build the config's model
(:func:`~.model_from_config.build_model`: eval mode, no init), load the checkpoint if given
(else the weights stay as constructed: random kernels, neutral attentions), run the image
through the config's test pipeline (annotation loaders removed) and the model's data
preprocessor, record what every active FDConv computes (:mod:`.inspection`), draw the
figures (:mod:`.figures`) and write ``index.md`` and ``index.html`` showing them all.
"""

import html
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import Tensor, nn

from . import figures
from .inspection import (
    DEFAULT_GRID,
    AttentionRecord,
    attention_summary,
    band_ranges,
    cosine_similarity_matrix,
    fdconv_layers,
    group_kernels,
    independent_kernels,
    kernel_power_spectra,
    layer_mirrored_group_pairs,
    non_orthogonal_pairs,
    radial_profile,
    record_attentions,
    select_layer_names,
)
from .model_from_config import build_model, read_config

PathLike = Union[str, Path]
INDEX_TITLE = 'What the FDConv layers learned'


@dataclass(frozen=True)
class Section:
    """One entry of the index: a heading, one or two sentences, the figures it shows.

    Attributes:
        title (str): Heading.
        text (str): What the figures show and how to read them.
        images (tuple[Path, ...]): Figures, shown relative to the index's folder.
    """

    title: str
    text: str
    images: Tuple[Path, ...] = ()


@dataclass
class Visualization:
    """What :func:`visualize_config` wrote.

    Attributes:
        index_md (Path): ``index.md``.
        index_html (Path): ``index.html``.
        figures (list[Path]): Every PNG it drew, in index order.
        numbers (dict): Per selected layer, the similarity figures
            (``mean_abs_cos``, ``independent_mean_abs_cos``, ``max_abs_cos_orthogonal``,
            ``mirrored_pairs``).
        attentions (dict): Per active layer, :func:`~.inspection.attention_summary` of
            the image.
    """

    index_md: Path
    index_html: Path
    figures: List[Path] = field(default_factory=list)
    numbers: Dict[str, Dict[str, float]] = field(default_factory=dict)
    attentions: Dict[str, Dict[str, Tuple[float, ...]]] = field(default_factory=dict)


def image_pipeline_steps(cfg: Config) -> List[Dict[str, Any]]:
    """The config's test pipeline without its annotation loaders (an image has none)."""
    from mmdet.utils import get_test_pipeline_cfg

    steps = [dict(step) for step in get_test_pipeline_cfg(cfg)]
    return [step for step in steps if 'Annotations' not in str(step.get('type'))]


def model_input(cfg: Config, model: nn.Module, image_path: PathLike) -> Tuple[Tensor, np.ndarray]:
    """An image as the model sees it, and as a picture.

    The config's test pipeline (:func:`image_pipeline_steps`) and the model's data
    preprocessor (resize, normalization, padding). If a step still needs annotations (a
    ``KeyError``), only the pipeline's first step (the loader) and last (the packer) run:
    the image at its own size, normalized by the preprocessor, with a warning.

    Returns:
        tuple: the input (1, 3, H, W) float, and the same pixels (H, W, 3) uint8 RGB,
        de-normalized (padding included).
    """
    from mmengine.dataset import Compose, pseudo_collate

    steps = image_pipeline_steps(cfg)
    sample = dict(img_path=str(image_path), img_id=0)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        try:
            packed = Compose(steps)(dict(sample))
        except (KeyError, AssertionError) as error:
            warnings.warn(
                f'the test pipeline needs {error} beyond the image; running only its '
                f'first and last steps (the image at its own size)',
                stacklevel=2,
            )
            packed = Compose([steps[0], steps[-1]])(dict(sample))
        with torch.no_grad():
            data = model.data_preprocessor(pseudo_collate([packed]), False)
    inputs = data['inputs']
    preprocessor = model.data_preprocessor
    pixels = inputs[0].float()
    mean, std = getattr(preprocessor, 'mean', None), getattr(preprocessor, 'std', None)
    if mean is not None and std is not None:
        pixels = pixels * std.view(-1, 1, 1) + mean.view(-1, 1, 1)
    # Images load as BGR; the preprocessor turns them to RGB when the config asks for it.
    if not cfg.model.get('data_preprocessor', {}).get('bgr_to_rgb', False):
        pixels = pixels.flip(0)
    picture = pixels.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return inputs, picture


def load_weights(model: nn.Module, checkpoint: PathLike) -> None:
    """Load an mmengine checkpoint (or a bare state dict) into ``model``.

    Raises:
        ValueError: If it holds no weight for some active FDConv layer (the wrong model's
            checkpoint would otherwise leave them random), naming them.
    """
    from mmengine.runner import load_checkpoint

    loaded = load_checkpoint(model, str(checkpoint), map_location='cpu', strict=False)
    state = loaded.get('state_dict', loaded)
    keys = {re.sub(r'^module\.', '', key) for key in state}
    missing = [
        name
        for name in fdconv_layers(model)
        if f'{name}.dft_weight' not in keys and f'{name}.weight' not in keys
    ]
    if missing:
        raise ValueError(
            f'{checkpoint} holds no weight for {len(missing)} FDConv layer(s) of the model, '
            f'e.g. {missing[:3]}: is it a checkpoint of this config?'
        )


def short_name(name: str) -> str:
    """A layer name without its leading ``backbone.``, for labels."""
    return name[len('backbone.') :] if name.startswith('backbone.') else name


def describe_layer(name: str, layer: nn.Module) -> str:
    """``backbone.layer1.0.conv2: 32 -> 32, 3x3, K = 64, FBM``."""
    k = layer.kernel_size[0]
    copies = f' x P = {layer.param_ratio}' if layer.param_ratio > 1 else ''
    fbm = ', FBM' if layer.FBM is not None else ''
    return (
        f'{name}: {layer.in_channels} -> {layer.out_channels}, {k}x{k}, '
        f'K = {layer.kernel_num}{copies}{fbm}'
    )


def layer_sections(
    name: str,
    layer: nn.Module,
    record: Optional[AttentionRecord],
    picture: np.ndarray,
    out_dir: Path,
    grid: int = DEFAULT_GRID,
    seed: int = 0,
) -> Tuple[List[Section], Dict[str, float]]:
    """The figures of one layer: frequency responses, radial energy, similarity, bands.

    Returns:
        tuple: the sections, and the layer's similarity numbers (see :class:`Visualization`).
    """
    stem = out_dir / name.replace('/', '_')
    label = describe_layer(name, layer)
    kernels = group_kernels(layer)
    count = kernels.shape[0]
    sections = []
    if layer.kernel_size[0] > 1:
        power = kernel_power_spectra(kernels, grid)
        responses = figures.plot_frequency_responses(
            power.sqrt().numpy(), f'{stem}_frequency_responses.png', f'{label}: frequency responses'
        )
        radii, profiles = radial_profile(power)
        radial = figures.plot_radial_energy(
            radii.numpy(), profiles.numpy(), f'{stem}_radial_energy.png', f'{label}: radial energy'
        )
        sections += [
            Section(
                f'{short_name(name)}: frequency responses',
                f"{label}. Each tile is one frequency group's kernel, its 2-D magnitude "
                f'spectrum ({grid} x {grid} zero-padded DFT, root mean square over channels), '
                'scaled to its own peak: groups of low index hold the smooth kernels, higher '
                'groups oscillate faster.',
                (responses,),
            ),
            Section(
                f'{short_name(name)}: radial energy',
                "Each row is a group's radially averaged power over spatial frequency, "
                'scaled to its peak; the white line is its mean radius, rising with the '
                'group index when the groups keep to their frequency bands.',
                (radial,),
            ),
        ]
    similarity = cosine_similarity_matrix(kernels)
    independent = cosine_similarity_matrix(
        independent_kernels(tuple(kernels.shape[1:]), count, seed)
    )
    orthogonal = ~non_orthogonal_pairs(layer) & ~torch.eye(count, dtype=torch.bool)
    numbers = dict(
        mean_abs_cos=figures.mean_off_diagonal(similarity.numpy()),
        independent_mean_abs_cos=figures.mean_off_diagonal(independent.numpy()),
        max_abs_cos_orthogonal=float(similarity[orthogonal].abs().max())
        if orthogonal.any()
        else 0.0,
        mirrored_pairs=float(len(layer_mirrored_group_pairs(layer))),
    )
    similarity_png = figures.plot_similarity(
        [
            (f'FDConv: {count} group kernels', similarity.numpy()),
            (f'{count} independent weights (a dynamic conv at init)', independent.numpy()),
        ],
        f'{stem}_similarity.png',
        f'{label}: cosine similarity',
    )
    sections.append(
        Section(
            f'{short_name(name)}: cosine similarity',
            f'Left: the group kernels, orthogonal by construction (largest |cos| of the pairs '
            f'that must be orthogonal: {numbers["max_abs_cos_orthogonal"]:.1e}; '
            f'{int(numbers["mirrored_pairs"])} pair(s) of groups share a mirrored position '
            'of a self-conjugate rfft column and overlap slightly). Right: independent '
            'weights of the same shape, as a CondConv/ODConv-style dynamic conv starts; '
            'their similarity is chance, which training raises (the paper: above 0.88 '
            'for ODConv).',
            (similarity_png,),
        )
    )
    if record is not None and record.bands is not None:
        maps = record.bands[0].mean(0).numpy()  # the first sample, groups averaged
        ranges = band_ranges(layer.FBM.k_list, layer.FBM.lowfreq_att)
        labels = [f'w_{i + 1}: f {low:g} - {high:g}' for i, (low, high) in enumerate(ranges)]
        bands_png = figures.plot_band_maps(
            picture, maps, labels, f'{stem}_band_maps.png', f'{label}: FBM band weights'
        )
        sections.append(
            Section(
                f'{short_name(name)}: FBM band maps',
                f"FBM's weight of each frequency band at every pixel of the "
                f'{record.input_size[0]} x {record.input_size[1]} input of the layer, over the '
                'image (f: max(|fy|, |fx|) in cycles/pixel): red boosts the band there, blue '
                'damps it, white (1) leaves it.',
                (bands_png,),
            )
        )
    return sections, numbers


def model_sections(records: Dict[str, AttentionRecord], out_dir: Path) -> List[Section]:
    """The figures over every recorded layer: group attention and KSM's modulation."""
    names = list(records)
    sections = []
    with_groups = [name for name in names if records[name].group is not None]
    if with_groups:
        attentions = [
            (records[name].group[0] * records[name].group.shape[1]).numpy() for name in with_groups
        ]
        png = figures.plot_group_attention(
            [short_name(name) for name in with_groups],
            attentions,
            out_dir / 'group_attention.png',
            'Group attention of the image in each FDConv layer',
        )
        sections.append(
            Section(
                'Group attention per layer',
                'Each row is a layer, each column a frequency group (lowest first): how much '
                "of that group the image's kernel takes, 1 being the uniform mix; red groups "
                'are boosted for this image, blue ones damped.',
                (png,),
            )
        )
    summaries = [attention_summary(records[name]) for name in names]
    if any(summaries):
        png = figures.plot_ksm_modulation(
            [short_name(name) for name in names],
            summaries,
            out_dir / 'ksm_modulation.png',
            'How much each attention modulates the kernels, per layer',
        )
        sections.append(
            Section(
                'KSM modulation per layer',
                'For the image, the spread of each attention over its entries (channels, '
                'filters, kernel positions, kernel elements for KSM-local): the further from '
                'the dotted line at 1, the more the layer adapts its kernel to this image.',
                (png,),
            )
        )
    return sections


def write_index(
    out_dir: PathLike, sections: Sequence[Section], header: Sequence[str], title: str = INDEX_TITLE
) -> Tuple[Path, Path]:
    """Write ``index.md`` and ``index.html`` showing every section's figures.

    Args:
        out_dir (str | Path): The folder of the figures and the index.
        sections (Sequence[Section]): In order.
        header (Sequence[str]): Lines under the title (config, checkpoint, ...).
        title (str): The page title. Defaults to ``INDEX_TITLE``.

    Returns:
        tuple: the paths of ``index.md`` and ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def relative(image: Path) -> str:
        image = Path(image)
        try:
            return image.resolve().relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            return image.resolve().as_posix()

    markdown = [f'# {title}', '', *(f'- {line}' for line in header), '']
    page = [
        '<!DOCTYPE html>',
        '<html><head><meta charset="utf-8">',
        f'<title>{html.escape(title)}</title></head><body>',
        f'<h1>{html.escape(title)}</h1>',
        '<ul>',
        *(f'<li>{html.escape(line)}</li>' for line in header),
        '</ul>',
    ]
    for section in sections:
        markdown += [f'## {section.title}', '', section.text, '']
        page += [f'<h2>{html.escape(section.title)}</h2>', f'<p>{html.escape(section.text)}</p>']
        for image in section.images:
            markdown += [f'![{section.title}]({relative(image)})', '']
            page.append(
                f'<p><img src="{html.escape(relative(image))}" '
                f'alt="{html.escape(section.title)}" style="max-width:100%"></p>'
            )
    page.append('</body></html>')
    index_md, index_html = out_dir / 'index.md', out_dir / 'index.html'
    index_md.write_text('\n'.join(markdown))
    index_html.write_text('\n'.join(page) + '\n')
    return index_md, index_html


def visualize_config(
    config: str,
    out_dir: PathLike,
    checkpoint: Optional[PathLike] = None,
    *,
    image: PathLike,
    layers: Optional[Sequence[str]] = None,
    cfg_options: Optional[Dict[str, Any]] = None,
    grid: int = DEFAULT_GRID,
    seed: int = 0,
    leading_sections: Sequence[Section] = (),
) -> Visualization:
    """Draw what a config's FDConv layers learned and do with an image, into ``out_dir``.

    Args:
        config (str): An mmdet or mmseg config (file or ``package::path``).
        out_dir (str | Path): Where the PNGs, ``index.md`` and ``index.html`` go.
        checkpoint (str | Path, optional): Weights to load; None keeps the weights as
            constructed (random kernels, neutral attentions). Defaults to None.
        image (str | Path): The image (``fdconv_mm.demo.write_demo_image`` writes one of
            the demo data's kind).
        layers (Sequence[str], optional): Layers for the per-layer figures, names or
            ``fnmatch`` patterns; None: one per stage
            (:func:`~.inspection.default_layer_names`). Defaults to None.
        cfg_options (dict, optional): ``--cfg-options``. Defaults to None.
        grid (int): Side of the frequency-response grid. Defaults to 16.
        seed (int): Seed of the independent weights compared with. Defaults to 0.
        leading_sections (Sequence[Section]): Sections put first in the index (the demo's
            own figures). Defaults to ().

    Returns:
        Visualization: The index files, the figures and the similarity numbers.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = read_config(config, cfg_options)
    torch.manual_seed(seed)
    model = build_model(cfg)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    active = fdconv_layers(model)
    if not active:
        raise ValueError(f'{config} builds a model without active FDConv layers')
    chosen = select_layer_names(active, layers)
    inputs, picture = model_input(cfg, model, image)
    with torch.no_grad(), record_attentions(model) as records:
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
            model.extract_feat(inputs)
    sections = model_sections(records, out_dir)
    numbers = {}
    for name in chosen:
        layer_part, numbers[name] = layer_sections(
            name, active[name], records.get(name), picture, out_dir, grid, seed
        )
        sections += layer_part
    header = [
        f'config: {config}',
        f'checkpoint: {checkpoint if checkpoint is not None else "none (weights as constructed)"}',
        f'image: {image}, model input {tuple(inputs.shape[-2:])}',
        f'{len(active)} active FDConv layers; per-layer figures for {len(chosen)}: '
        + ', '.join(short_name(name) for name in chosen),
    ]
    index_md, index_html = write_index(out_dir, [*leading_sections, *sections], header)
    pngs = [Path(path) for section in sections for path in section.images]
    attentions = {name: attention_summary(record) for name, record in records.items()}
    return Visualization(index_md, index_html, pngs, numbers, attentions)
