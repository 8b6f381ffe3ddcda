"""What an FDConv layer learned and what it does with an input, as numbers.

Chen et al. (CVPR 2025, Fig. 1) argue that FDConv's parallel weights are frequency-diverse
(their frequency responses differ, their cosine similarity is near 0) where other dynamic
convolutions' are not, and that it adapts per image (KSM) and per pixel (FBM). This module
computes those quantities for one layer; :mod:`.figures` draws them.

* Weights: the ``K * P`` group kernels (each group's share of ``dft_weight`` taken to the
  spatial domain by the layer's own :meth:`~fdconv_mm.layers.FDConv.dynamic_kernel`), their
  frequency responses and radial profile, their cosine similarity, and for comparison that
  of a dynamic conv's independent weights.
* Inputs: the attentions the layer computed (recorded with forward hooks on the layer and
  its ``KSM_Global``), the statistics of KSM-local's modulation (its own module) and FBM's
  band weights (FBM's own function), at the resolution of the layer's input.

Why the group kernels are orthogonal, and exactly where they are not: the kernel matrix is
``irfft2`` of the mixed spectrum, so by Parseval the inner product of two group kernels is
that of their Hermitian-extended spectra. Group ``g``'s half spectrum ``Y_g`` is non-zero
only on its own positions. On an ordinary column ``v`` (``0 < v < n2 / 2``) the extension
adds the mirror ``conj(Y_g[u, v])`` at column ``n2 - v``, outside the half spectrum, so
groups stay disjoint there. A self-conjugate column (``v = 0``, and ``v = n2 / 2`` for even
``n2``) is its own mirror: ``irfft2`` keeps only the real part of the row-transformed
column, i.e. it uses ``(Y[u, v] + conj(Y[-u, v])) / 2`` at both ``(u, v)`` and, conjugated,
at ``(-u, v)``. Positions ``(u, v)`` and ``(-u, v)`` have the same radius, and when a group
boundary falls between them (group ``g`` owns one, ``h`` the other) both kernels have energy
at both, and ``<W_g, W_h> = sum Re(Y_g[u, v] * Y_h[-u, v]) / (2 * n1 * n2)`` over such split
pairs: :func:`mirrored_group_pairs` lists them. Every other pair of groups of one copy is
exactly orthogonal; groups of different copies (``param_ratio > 1``) share positions and are
not.
"""

import fnmatch
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import FDConv, FDConvLinear
from ..layers.fbm import BandModulation
from .fdconv_flops import is_active_fdconv

DEFAULT_GRID = 16
KERNEL_CHUNK = 16


def num_group_kernels(layer: FDConv) -> int:
    """``K * P``, the number of group kernels (and of group attentions) of an active layer."""
    return layer.kernel_num * layer.param_ratio


def group_kernels(layer: FDConv, chunk: int = KERNEL_CHUNK) -> Tensor:
    """The layer's ``K * P`` group kernels: kernel ``p * K + g`` is group ``g`` of copy ``p``.

    Each is ``layer.dynamic_kernel`` at the one-hot attention ``e_j / (K * P)``: the
    layer's transform of its ``alpha / (K * P) = min(Cin, Cout) // 2``-scaled spectrum
    restricted to one group. Their sum is the layer's kernel at the uniform attention
    ``1 / (K * P)`` (the neutral init), and the kernel of an attention ``a`` is
    ``sum_j a_j * K * P * kernels[j]``. With a single group, it is the layer's only kernel.

    Args:
        layer (FDConv): An active FDConv (or FDConvLinear).
        chunk (int): Kernels built at once (bounds the memory of the spectra).
            Defaults to 16.

    Returns:
        Tensor: (K*P, Cout, Cin, k, k), float32 (float64 for a float64 weight).
    """
    count = num_group_kernels(layer)
    with torch.no_grad():
        if count == 1:
            return layer.dynamic_kernel(None).contiguous()
        spectrum = layer.fourier_weight()
        one_hot = torch.eye(count, dtype=spectrum.dtype, device=spectrum.device) / count
        return torch.cat([layer.dynamic_kernel(part).contiguous() for part in one_hot.split(chunk)])


def independent_kernels(shape: Sequence[int], count: int, seed: int = 0) -> Tensor:
    """``count`` independent conv weights, each initialized as ``nn.Conv2d`` does.

    The comparison of the paper's Fig. 1: a dynamic conv (CondConv, ODConv) keeps ``K``
    independent weights of the layer's shape. Drawn independently (Kaiming uniform,
    ``a = sqrt(5)``), their cosine similarity is about ``N(0, 1 / D)`` (``D`` weights each)
    by chance; training made ODConv's similar (above 0.88 in the paper), which a random
    draw cannot show. FDConv's group kernels are orthogonal by construction, trained or not.

    Args:
        shape (Sequence[int]): (Cout, Cin, k, k).
        count (int): Number of weights.
        seed (int): Seed. Defaults to 0.

    Returns:
        Tensor: (count, Cout, Cin, k, k) float32.
    """
    generator = torch.Generator().manual_seed(seed)
    kernels = torch.empty(count, *shape)
    for kernel in kernels:
        nn.init.kaiming_uniform_(kernel, a=math.sqrt(5), generator=generator)
    return kernels


def cosine_similarity_matrix(kernels: Tensor) -> Tensor:
    """Cosine similarity of every pair of kernels (a zero kernel has similarity 0).

    Args:
        kernels (Tensor): (J, ...), computed in its dtype (float32: about 1e-7 rounding).

    Returns:
        Tensor: (J, J) float64.
    """
    flat = F.normalize(kernels.flatten(1), dim=1)
    return (flat @ flat.T).double()


def mirrored_group_pairs(groups: Tensor, cols: int) -> Tensor:
    """Mirror pairs of a self-conjugate ``rfft2`` column that lie in different groups.

    ``irfft2`` mixes positions ``(u, v)`` and ``(-u, v)`` of a self-conjugate column
    (``v = 0``, and ``v = cols / 2`` for even ``cols``): see the module docstring. Where
    their groups differ, the two group kernels are not orthogonal.

    Args:
        groups (Tensor): (rows, cols // 2 + 1) group of every position
            (``frequency_group_index``, an FDConv's ``frequency_groups``).
        cols (int): Columns of the weight matrix (``Cin * k``).

    Returns:
        Tensor: (M, 4) int64 rows ``(u, v, group(u, v), group(-u, v))`` with
        ``0 < u < rows - u``, one per pair.
    """
    rows = groups.shape[0]
    columns = [0] + ([cols // 2] if cols % 2 == 0 else [])
    u = torch.arange(1, (rows + 1) // 2)
    found = []
    for v in columns:
        own, mirror = groups[u, v], groups[rows - u, v]
        split = own != mirror
        found.append(
            torch.stack([u[split], torch.full_like(u[split], v), own[split], mirror[split]], dim=1)
        )
    return torch.cat(found)


def layer_mirrored_group_pairs(layer: FDConv) -> Tensor:
    """:func:`mirrored_group_pairs` of an active layer's frequency groups (see there)."""
    return mirrored_group_pairs(
        layer.frequency_groups.cpu(), layer.in_channels * layer.kernel_size[0]
    )


def non_orthogonal_pairs(layer: FDConv) -> Tensor:
    """Which pairs of the layer's group kernels need not be orthogonal.

    Groups of one copy that share a mirrored pair (:func:`layer_mirrored_group_pairs`),
    and any two groups of different copies (``param_ratio > 1``). Every other pair of
    distinct group kernels is orthogonal (module docstring).

    Returns:
        Tensor: (K*P, K*P) bool, symmetric, False on the diagonal.
    """
    kernel_num = layer.kernel_num
    count = num_group_kernels(layer)
    copy = torch.arange(count) // kernel_num
    mask = copy[:, None] != copy[None, :]
    pairs = layer_mirrored_group_pairs(layer)
    for offset in range(0, count, kernel_num):
        own, mirror = pairs[:, 2] + offset, pairs[:, 3] + offset
        mask[own, mirror] = True
        mask[mirror, own] = True
    return mask


def spectrum_frequencies(grid: int) -> Tensor:
    """Frequencies (cycles per pixel) along each axis of :func:`kernel_power_spectra`'s maps:
    ``fftshift(fftfreq(grid))``, zero at index ``grid // 2``.

    Returns:
        Tensor: (grid,) float64.
    """
    return torch.fft.fftshift(torch.fft.fftfreq(grid, dtype=torch.float64))


def kernel_power_spectra(kernels: Tensor, grid: int = DEFAULT_GRID) -> Tensor:
    """Power spectrum of each kernel zero-padded to ``grid x grid``, averaged over channels.

    ``P_j[w] = mean_{co, ci} |DFT_grid(kernels[j, co, ci])[w]|^2``, computed without a
    per-channel FFT: ``|sum_x c_x e^{-2 pi i w.x}|^2`` averaged over channels is the
    quadratic form of the ``k^2 x k^2`` second-moment matrix of the kernels. A 1x1 kernel's
    spectrum is flat.

    Args:
        kernels (Tensor): (J, Cout, Cin, k, k); the moments are summed in its dtype.
        grid (int): Side of the zero-padded grid, at least ``k``. Defaults to 16.

    Returns:
        Tensor: (J, grid, grid) float64, zero frequency at ``[grid // 2, grid // 2]``
        (axes: vertical, horizontal frequency, :func:`spectrum_frequencies`).
    """
    count, _, _, kernel_h, kernel_w = kernels.shape
    if grid < max(kernel_h, kernel_w):
        raise ValueError(f'grid={grid} must be at least the kernel size {kernel_h}')
    flat = kernels.reshape(count, -1, kernel_h * kernel_w)
    moments = (flat.transpose(1, 2) @ flat).double() / flat.shape[1]  # (J, k*k, k*k)
    freq = spectrum_frequencies(grid)
    rows, cols = torch.meshgrid(torch.arange(kernel_h), torch.arange(kernel_w), indexing='ij')
    phase = freq[None, :, None] * rows.reshape(-1, 1, 1) + freq[None, None, :] * cols.reshape(
        -1, 1, 1
    )
    basis = torch.exp(-2j * math.pi * phase).reshape(kernel_h * kernel_w, -1)
    power = torch.einsum('jxy,xw,yw->jw', moments.to(basis.dtype), basis, basis.conj()).real
    return power.reshape(count, grid, grid)


def frequency_responses(kernels: Tensor, grid: int = DEFAULT_GRID) -> Tensor:
    """Magnitude response of each kernel: the root mean square over channels of
    ``|DFT_grid|``, ``sqrt(kernel_power_spectra(kernels, grid))``.

    Returns:
        Tensor: (J, grid, grid) float64, zero frequency at the centre.
    """
    return kernel_power_spectra(kernels, grid).clamp_min(0).sqrt()


def radial_profile(maps: Tensor) -> Tuple[Tensor, Tensor]:
    """Radial average of centred spectra: the mean over each ring of width ``1 / grid``.

    Ring ``b`` holds the grid points whose radius ``sqrt(fy^2 + fx^2)`` rounds to
    ``b / grid`` (frequencies of :func:`spectrum_frequencies`).

    Args:
        maps (Tensor): (J, grid, grid), zero frequency at the centre.

    Returns:
        tuple: radii (R,) in cycles per pixel, and profiles (J, R) float64.
    """
    grid = maps.shape[-1]
    freq = spectrum_frequencies(grid)
    radius = torch.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    ring = torch.round(radius * grid).long().flatten()
    rings = int(ring.max()) + 1
    counts = torch.bincount(ring, minlength=rings).double()
    totals = torch.zeros(maps.shape[0], rings, dtype=torch.float64)
    totals.index_add_(1, ring, maps.reshape(maps.shape[0], -1).double())
    return torch.arange(rings, dtype=torch.float64) / grid, totals / counts


@dataclass
class LocalModulationStats:
    """KSM-local's modulation ``hr`` of one batch (docs/spec.md section 5), one value per sample.

    Attributes:
        mean, std, minimum, maximum (Tensor): (B,) over all kernel elements.
        spatial_mean (Tensor): (B, k, k), the mean over ``Cout`` and ``Cin``.
    """

    mean: Tensor
    std: Tensor
    minimum: Tensor
    maximum: Tensor
    spatial_mean: Tensor


def local_modulation_stats(layer: FDConv, pooled: Tensor) -> Optional[LocalModulationStats]:
    """Statistics of KSM-local's per-element attention, from the layer's own ``KSM_Local``.

    Args:
        layer (FDConv): An active FDConv.
        pooled (Tensor): (B, Cin, 1, 1), the channel means of the layer's input.

    Returns:
        LocalModulationStats | None: None without KSM-local.
    """
    if layer.KSM_Local is None:
        return None
    with torch.no_grad():
        modulation = layer.KSM_Local(pooled)  # (B, Cout, Cin, k, k)
    flat = modulation.flatten(1)
    return LocalModulationStats(
        flat.mean(1), flat.std(1), flat.amin(1), flat.amax(1), modulation.mean(dim=(1, 2))
    )


def band_weights(layer: FDConv, x: Tensor) -> Optional[Tensor]:
    """FBM's per-pixel band weights ``w_i`` for the layer's input, by FBM's own function.

    Args:
        layer (FDConv): An active FDConv.
        x (Tensor): (B, Cin, H, W), the layer's input.

    Returns:
        Tensor | None: (B, G, n, H, W): ``G = spatial_group`` maps for each of the ``n``
        weighted bands (:func:`band_ranges`), at the input's resolution; None without FBM.
    """
    fbm = layer.FBM
    if fbm is None:
        return None
    with torch.no_grad():
        weight, bias = fbm.stacked_conv()
        settings = (fbm.k_list, fbm.act, fbm.spatial_group)
        return BandModulation.apply(x, weight, bias, settings)[1]


def band_ranges(k_list: Sequence[float], lowfreq_att: bool = False) -> List[Tuple[float, float]]:
    """Frequency range ``(low, high)`` of each weighted FBM band, in cycles per pixel.

    Band ``i`` (``high_i = low_{i-1} - low_i``) holds the positions whose
    ``max(|fy|, |fx|)`` lies between ``0.5 / k_i`` and ``0.5 / k_{i-1}`` (the first up to
    0.5); with ``lowfreq_att`` the last, ``low_n``, holds those below ``0.5 / k_n``. On
    which side a frequency exactly at a cut-off falls is decided by the float32 thresholds
    of ``frequency.lowpass_masks`` (docs/spec.md section 6).
    """
    edges = [0.5] + [0.5 / k for k in k_list]
    ranges = [(edges[i + 1], edges[i]) for i in range(len(k_list))]
    return ranges + ([(0.0, edges[-1])] if lowfreq_att else [])


@dataclass
class AttentionRecord:
    """What one FDConv layer computed from one input batch.

    Attributes:
        input_size (tuple): (H, W) of the layer's input; (L, 1) for FDConvLinear's tokens.
        group (Tensor | None): (B, K*P) group attention; None with one group.
        channel (Tensor | None): (B, Cin) channel attention.
        filter (Tensor | None): (B, Cout) filter attention.
        spatial (Tensor | None): (B, k, k) spatial attention.
        local (LocalModulationStats | None): KSM-local's statistics.
        bands (Tensor | None): (B, G, n, H, W) FBM's band weights.
    """

    input_size: Tuple[int, int]
    group: Optional[Tensor] = None
    channel: Optional[Tensor] = None
    filter: Optional[Tensor] = None
    spatial: Optional[Tensor] = None
    local: Optional[LocalModulationStats] = None
    bands: Optional[Tensor] = None


def fdconv_layers(model: nn.Module) -> Dict[str, FDConv]:
    """The active FDConv layers of ``model`` by name, in module order."""
    return {name: module for name, module in model.named_modules() if is_active_fdconv(module)}


def _stage(name: str) -> str:
    """The name up to its first part holding a digit: ``backbone.layer1``, ``backbone.stages.0``."""
    parts = name.split('.')
    for index, part in enumerate(parts):
        if re.search(r'\d', part):
            return '.'.join(parts[: index + 1])
    return name


def default_layer_names(layers: Dict[str, FDConv]) -> List[str]:
    """One layer per stage: its deepest FDConv with FBM, else its deepest FDConv."""
    stages: Dict[str, List[str]] = {}
    for name in layers:
        stages.setdefault(_stage(name), []).append(name)
    chosen = []
    for names in stages.values():
        with_fbm = [name for name in names if layers[name].FBM is not None]
        chosen.append((with_fbm or names)[-1])
    return chosen


def select_layer_names(layers: Dict[str, FDConv], patterns: Optional[Sequence[str]]) -> List[str]:
    """The layers named by ``patterns`` (names or ``fnmatch`` patterns), in model order.

    None or empty: :func:`default_layer_names`.

    Raises:
        ValueError: If a pattern matches no active FDConv layer, listing some that exist.
    """
    if not patterns:
        return default_layer_names(layers)
    chosen = set()
    for pattern in patterns:
        matches = fnmatch.filter(layers, pattern)
        if not matches:
            shown = ', '.join(list(layers)[:6]) + (', ...' if len(layers) > 6 else '')
            raise ValueError(
                f'--layers {pattern!r} matches no active FDConv layer; the model has '
                f'{len(layers)}: {shown}'
            )
        chosen.update(matches)
    return [name for name in layers if name in chosen]


@contextmanager
def record_attentions(
    model: nn.Module, names: Optional[Sequence[str]] = None
) -> Iterator[Dict[str, AttentionRecord]]:
    """Record what the active FDConv layers compute while ``model`` runs inside the block.

    Forward hooks: on each layer (its input: size, FBM's band weights) and on its
    ``KSM_Global`` (the channel means it got and the attentions it returned; KSM-local's
    statistics from them). A layer called several times keeps its last call.

    Args:
        model (nn.Module): Any module; itself when it is an FDConv (name ``''``).
        names (Sequence[str], optional): Layers to record; None: every active FDConv.

    Yields:
        dict: name -> :class:`AttentionRecord`, filled as the layers run.
    """
    layers = fdconv_layers(model)
    if names is not None:
        unknown = sorted(set(names) - set(layers))
        if unknown:
            raise ValueError(f'not active FDConv layers of the model: {unknown}')
        layers = {name: layers[name] for name in names}
    records: Dict[str, AttentionRecord] = {}
    handles = []

    def on_input(name: str, layer: FDConv):
        def hook(module: nn.Module, args: Tuple[Tensor, ...]) -> None:
            x = args[0]
            if isinstance(layer, FDConvLinear):
                records[name] = AttentionRecord((int(x.shape[1]), 1))
            else:
                records[name] = AttentionRecord(tuple(x.shape[-2:]), bands=band_weights(layer, x))

        return hook

    def on_attention(name: str, layer: FDConv):
        def hook(module: nn.Module, args: Tuple[Tensor, ...], output: Tuple) -> None:
            channel, filters, spatial, group = (None if t is None else t.detach() for t in output)
            record = records[name]
            record.channel, record.filter, record.spatial, record.group = (
                channel,
                filters,
                spatial,
                group,
            )
            record.local = local_modulation_stats(layer, args[0])

        return hook

    for name, layer in layers.items():
        handles.append(layer.register_forward_pre_hook(on_input(name, layer)))
        handles.append(layer.KSM_Global.register_forward_hook(on_attention(name, layer)))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def inspect_input(layer: FDConv, x: Tensor) -> AttentionRecord:
    """Run one active FDConv on ``x`` and return what it computed (:func:`record_attentions`).

    Args:
        layer (FDConv): An active FDConv; FDConvLinear takes tokens (B, L, Cin).
        x (Tensor): (B, Cin, H, W).

    Example:
        >>> import torch
        >>> from fdconv_mm.layers import FDConv
        >>> layer = FDConv(32, 32, 3, padding=1, kernel_num=8).eval()
        >>> record = inspect_input(layer, torch.rand(1, 32, 12, 20))
        >>> tuple(record.group.shape), tuple(record.bands.shape)
        ((1, 8), (1, 1, 3, 12, 20))
    """
    with torch.no_grad(), record_attentions(layer) as records:
        layer(x)
    return records['']


def attention_summary(record: AttentionRecord, sample: int = 0) -> Dict[str, Tuple[float, ...]]:
    """(mean, std, min, max) of each modulation of one sample: 1 means no change.

    Keys: 'group' (the group attention times ``K * P``, so that uniform is 1), 'channel',
    'filter', 'spatial', 'local' (KSM-local); an attention the layer does not have is
    left out.
    """
    summary = {}
    if record.group is not None:
        values = record.group[sample] * record.group.shape[1]
        summary['group'] = values
    for key in ('channel', 'filter', 'spatial'):
        values = getattr(record, key)
        if values is not None:
            summary[key] = values[sample].flatten()
    result = {
        key: (
            float(v.mean()),
            float(v.std()) if v.numel() > 1 else 0.0,
            float(v.min()),
            float(v.max()),
        )
        for key, v in summary.items()
    }
    local = record.local
    if local is not None:
        result['local'] = tuple(
            float(t[sample]) for t in (local.mean, local.std, local.minimum, local.maximum)
        )
    return result
