"""Fourier transforms in real arithmetic: what FDConv's ONNX export runs instead of ``torch.fft``
(and the fast path's FBM low-pass maps, :func:`cached_band_bases`).

ONNX Runtime, TensorRT and OpenVINO have no complex types, and TensorRT has no DFT op, so
the export backend of :mod:`.reference` builds every transform from MatMul, Mul, Add,
Reshape, Transpose, Slice and Gather on real tensors. How each is built, and why (times
measured with 2 CPU threads, torch 2.13 and ONNX Runtime 1.32):

* Complex numbers are real tensors with the real and imaginary parts stacked on a leading
  axis of size 2. Multiplying by ``i`` or by a twiddle then swaps two contiguous halves;
  with the parts as a trailing pair (tried first) that swap is an element-wise strided
  copy, which took a fifth of a layer's ONNX Runtime time.
* ``irfft2`` of the ``(Cout*kh, Cin*kw)`` kernel matrix (:func:`irfft2_stacked`): an
  inverse DFT along the rows of the one-sided spectrum, then torch's ``c2r`` along the
  columns, for an even width as one complex inverse DFT of half the width. Each DFT is a
  mixed-radix (Cooley-Tukey, four-step) transform: the length splits into factors of at
  most :data:`MAX_RADIX` (:func:`radix_plan`), each a small dense DFT (MatMuls with ``cos``
  and ``sin`` matrices, numpy constants of the graph) between twiddle products. A dense
  ``n x n`` DFT would cost ``n`` multiply-adds per element instead of the sum of the
  factors (1536 against 80 at ``n = 1536``) and 16 MB per matrix at ResNet-50 sizes; radix
  64 ran 1.4x faster than radix 16. ONNX's DFT op is not used: ONNX Runtime 1.32 runs a
  naive ``O(n^2)`` DFT for lengths that are not powers of two, as every 3x3 layer's
  ``n = 3 * 2^j`` (769 inverse DFTs of length 1536: 251 ms, of length 2048: 59 ms).
* FBM's low-pass maps (:func:`lowpass_maps`): the masks are separable
  (``max(|fy|, |fx|) < t``) and symmetric in the frequency's sign, so each
  ``irfft2(rfft2(x) * M_i)`` is the real projection ``E_H E_H^T x E_W E_W^T`` with ``E`` the
  kept frequencies' cosines and sines over ``sqrt(n)``. The bases are built in the graph
  from the map's size (the count of kept frequencies is an integer expression of it,
  :func:`lowpass_count`), so height and width may stay dynamic; the masks are nested, so
  one projection onto the widest band serves every band. ``O(H W (H + W))`` multiply-adds
  per channel against ``O(H W log(H W))`` for FFTs: measured 1.3x torch's FFT-based FBM at
  25 x 42, 1.5x at 50 x 84.
"""

import math
from functools import lru_cache
from typing import Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MAX_RADIX = 64


def _dtype_name(x: Tensor) -> str:
    return str(x.dtype).replace('torch.', '')


@lru_cache(maxsize=None)
def _dft_factors(n: int, sign: float, dtype: str) -> np.ndarray:
    """``cos`` and ``sign * sin`` of ``2 pi jk / n``: (2, n, n), symmetric matrices."""
    phase = 2 * np.pi * (np.outer(np.arange(n), np.arange(n)) % n) / n
    return np.stack((np.cos(phase), np.sin(phase) * sign)).astype(dtype)


@lru_cache(maxsize=None)
def _twiddles(n: int, radix: int, sign: float, dtype: str) -> np.ndarray:
    """Twiddles ``w_n^(k1 j2)`` of one four-step level, (2, 2, radix, n / radix), as the
    two factors of ``x w = x [cos, cos] + flip(x) [-sin, sin]`` on stacked parts."""
    phase = 2 * np.pi * (np.outer(np.arange(radix), np.arange(n // radix)) % n) / n
    cos, sin = np.cos(phase), np.sin(phase) * sign
    return np.stack((np.stack((cos, cos)), np.stack((-sin, sin)))).astype(dtype)


def _constant(array: np.ndarray, like: Tensor, dims: int = 0, after: int = 1) -> Tensor:
    """A shape-only constant of the graph (numpy: the exporters record it as data), with
    ``dims`` axes of size 1 inserted after its first ``after`` axes (for broadcasting)."""
    tensor = torch.from_numpy(array).to(like.device)
    shape = tensor.shape
    return tensor.view(*shape[:after], *([1] * dims), *shape[after:])


def _times_i(x: Tensor) -> Tensor:
    """``i x`` for stacked parts (2, ...): ``(-im, re)``."""
    return x.flip(0) * _constant(np.array([-1.0, 1.0], _dtype_name(x)), x, x.dim() - 1)


@lru_cache(maxsize=None)
def radix_plan(n: int, max_radix: int = MAX_RADIX) -> Tuple[int, ...]:
    """Factors of ``n`` (their product), each at most ``max_radix`` where ``n`` allows:
    the smallest number of factors, then the most balanced (a prime factor above
    ``max_radix`` stays one factor)."""
    primes, rest, p = [], n, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    factors: List[int] = []
    for prime in sorted(primes, reverse=True):  # first fit decreasing
        for i, factor in enumerate(factors):
            if factor * prime <= max_radix:
                factors[i] *= prime
                break
        else:
            factors.append(prime)
    return tuple(sorted(factors, reverse=True)) or (1,)


def complex_dft(x: Tensor, inverse: bool = False) -> Tensor:
    """Unnormalized DFT along dim -2 of ``x`` (2, ..., n, t): real and imaginary parts
    stacked first, ``t`` trailing columns transformed alike.

    ``X[k] = sum_j x[j] exp(-+ 2 pi i jk / n)`` (``+`` if ``inverse``), as a mixed-radix
    transform of :func:`radix_plan`'s factors; float32 or float64.
    """
    return _dft(x, radix_plan(int(x.shape[-2])), -1.0 + 2.0 * inverse)


def _dft(x: Tensor, plan: Tuple[int, ...], sign: float) -> Tensor:
    """Four-step DFT along dim -2 of (2, ..., n, t), ``n = prod(plan)``.

    With ``j = M j1 + j2`` and ``k = k1 + r k2`` (``n = r M``):
    ``X[k1 + r k2] = sum_j2 w_M^(j2 k2) w_n^(j2 k1) sum_j1 w_r^(j1 k1) x[M j1 + j2]``:
    the ``r``-point DFTs multiply from the left (no transpose), one transpose per level
    puts ``k`` in order.
    """
    *lead, n, columns = x.shape
    n, columns = int(n), int(columns)  # weights' sizes: static (traced tensors in TorchScript)
    dtype = _dtype_name(x)
    radix = plan[0]
    if len(plan) == 1:
        cos, sin = _constant(_dft_factors(n, sign, dtype), x).unbind(0)
        if columns == 1:  # one long GEMM, not many matrix-vector products
            flat = x.squeeze(-1)
            real, imag = torch.matmul(flat, cos), torch.matmul(flat, sin)
            return (real + _times_i(imag)).unsqueeze(-1)
        return torch.matmul(cos, x) + _times_i(torch.matmul(sin, x))
    rest = n // radix
    x = _dft(x.reshape(*lead, radix, rest * columns), (radix,), sign)  # (..., k1, j2 t)
    same, swapped = _constant(_twiddles(n, radix, sign, dtype), x, len(lead) - 1, after=2).unbind(0)
    x = x.view(*lead, radix, rest, columns)
    x = x * same[..., None] + x.flip(0) * swapped[..., None]
    x = _dft(x, plan[1:], sign)  # (..., k1, k2, t)
    return x.transpose(-3, -2).reshape(*lead, n, columns)


def irfft2_stacked(spectrum: Tensor, size: Tuple[int, int]) -> Tensor:
    """``torch.fft.irfft2`` of a one-sided spectrum with its parts stacked first.

    The inverse DFT along the rows runs on the one-sided columns; the real inverse along
    the columns (``c2r``) ignores the imaginary parts of the DC and Nyquist columns, as
    torch's does. For an even width it is a complex inverse DFT of half the width: the
    even and odd outputs are the real and imaginary parts of ``IDFT_{N/2}(E + i O)``,
    ``E[v] = X[v] + X[v + N/2]``, ``O[v] = (X[v] - X[v + N/2]) exp(2 pi i v / N)``, with
    ``X[v + N/2] = conj(X[N/2 - v])``. For an odd width the columns, doubled where they
    stand for two, are zero-padded to the full width and the real part taken.

    Args:
        spectrum (Tensor): (2, ..., rows, cols // 2 + 1), real and imaginary parts,
            float32 or float64.
        size (tuple[int, int]): ``(rows, cols)``.

    Returns:
        Tensor: (..., rows, cols), real.
    """
    rows, cols = size
    half = cols // 2 + 1
    dtype = _dtype_name(spectrum)
    columns = complex_dft(spectrum, inverse=True)
    weight = np.full((2, half), 1.0 / (rows * cols))
    weight[1, 0] = 0  # c2r ignores the imaginary parts of the DC and Nyquist columns
    if cols % 2:
        weight[:, 1:] *= 2  # each column stands for v and cols - v
        columns = columns * _constant(weight.astype(dtype), columns, columns.dim() - 2)
        padded = F.pad(columns, (0, cols - half))
        return complex_dft(padded.unsqueeze(-1), inverse=True)[0, ..., 0]
    weight[1, -1] = 0
    columns = columns * _constant(weight.astype(dtype), columns, columns.dim() - 2)
    lower = columns[..., :-1]  # X[v], v < N/2
    conjugate = _constant(np.array([1.0, -1.0], dtype), columns, columns.dim() - 1)
    upper = columns[..., 1:].flip(-1) * conjugate  # X[v + N/2] = conj(X[N/2 - v])
    twiddles = _twiddles(cols, cols // 2, 1.0, dtype)[..., 1]
    same, swapped = _constant(twiddles, columns, columns.dim() - 2, after=2).unbind(0)
    odd = lower - upper
    odd = odd * same + odd.flip(0) * swapped  # times exp(2 pi i v / N)
    packed = (lower + upper + _times_i(odd)).unsqueeze(-1)
    out = complex_dft(packed, inverse=True)[..., 0]  # (2, ..., rows, N/2): x[2j], x[2j+1]
    return out.movedim(0, -1).reshape(*out.shape[1:-1], cols)


def rfft2_stacked(matrix: Tensor) -> Tensor:
    """``torch.fft.rfft2`` of a real matrix, parts stacked first.

    Args:
        matrix (Tensor): (..., rows, cols), float32 or float64.

    Returns:
        Tensor: (2, ..., rows, cols // 2 + 1).
    """
    half = matrix.shape[-1] // 2 + 1
    stacked = torch.stack((matrix, torch.zeros_like(matrix)))
    columns = complex_dft(stacked.unsqueeze(-1))[..., :half, 0]
    return complex_dft(columns)


def compact_group_index(groups: np.ndarray, kernel_num: int, param_ratio: int) -> np.ndarray:
    """Index into the (B, K*P) group attentions of every (copy, position), flat, in the
    smallest integer type: the shape-only constant of an exported layer (numpy, which an
    export does not trace).

    Args:
        groups (np.ndarray): (Cout*kh, Cin*kw // 2 + 1) frequency group of each position.
        kernel_num, param_ratio (int): ``K``, ``P``.

    Returns:
        np.ndarray: (P * Cout*kh * (Cin*kw // 2 + 1),) uint8, int16 or int32.
    """
    flat = groups.reshape(-1)
    index = (np.arange(param_ratio)[:, None] * kernel_num + flat[None]).reshape(-1)
    count = kernel_num * param_ratio
    dtype = np.uint8 if count <= 256 else np.int16 if count <= 32768 else np.int32
    return index.astype(dtype)


# ------------------------------------------------------------------------------- FBM


def _threshold(k: float) -> np.float32:
    """FBM's float32 threshold ``t = float32(0.5 / k + 1e-8)``."""
    return np.float32(0.5 / k + 1e-8)


def _threshold_ratio(k: float) -> Tuple[int, int]:
    """``float32(f) < t`` holds exactly when ``f < p / q``: the midpoint between ``t`` and
    the float32 below it (a value rounds below ``t`` iff it lies below that midpoint)."""
    t = _threshold(k)
    below = np.nextafter(t, np.float32(0))
    return ((float(t) + float(below)) / 2).as_integer_ratio()


def lowpass_count(n: Any, k: float) -> Any:
    """How many non-negative frequencies ``v / n`` (``v = 0, 1, ...``) pass FBM's mask of
    ``k``: ``ceil(p n / q)`` (:func:`_threshold_ratio`), an integer expression of ``n``
    (an int or a symbolic size).

    The spec's float32 comparison (:func:`~.frequency.lowpass_masks`) for ``t <= 0.5``,
    except if ``v / n`` fell exactly on the midpoint, whose denominator is ``2**25`` or
    more.
    """
    p, q = _threshold_ratio(k)
    return (p * n + q - 1) // q


def _band_basis(n: Any, count: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Orthonormal basis of the frequencies ``|v| < count`` on ``n`` points: (n, 2 count - 1).

    Columns ``1, sqrt2 cos(2 pi v l / n), sqrt2 sin(...)`` for ``v = 1 .. count - 1``,
    interleaved, so the basis of a smaller count is a prefix, all over ``sqrt(n)``:
    ``E E^T`` is the low-pass projection along that axis. ``n`` and ``count`` may be
    symbolic sizes; ``n`` enters the arithmetic as a tensor (``arange(n)[-1] + 1``).
    """
    points = torch.arange(n, device=device)
    size = points[-1:] + 1
    frequencies = torch.arange(1, count, device=device)
    phase = torch.remainder(points[:, None] * frequencies, size).to(dtype)
    phase = phase * (2 * math.pi) / size.to(dtype)
    scale = torch.rsqrt(size.to(dtype))
    waves = torch.stack((torch.cos(phase), torch.sin(phase)), dim=-1) * (scale * math.sqrt(2))
    constant = scale.expand(points.shape[0])[:, None]
    return torch.cat((constant, waves.flatten(1)), dim=1)


class BandBases(NamedTuple):
    """The low-pass projections of FBM's masks on an ``H x W`` map (:func:`band_bases`).

    Attributes:
        rows (Tensor | None): (H, r_H), the widest band's row basis (None if no mask cuts).
        cols (Tensor | None): (W, r_W), its column basis.
        ranks (list): per mask ``(rank_h, rank_w)``, the prefixes of ``rows`` and ``cols``
            that span it, or None where every frequency passes.
    """

    rows: Optional[Tensor]
    cols: Optional[Tensor]
    ranks: List[Optional[Tuple[Any, Any]]]


def band_bases(
    height: Any, width: Any, k_list: Sequence[float], dtype: torch.dtype, device: torch.device
) -> BandBases:
    """:class:`BandBases` of FBM's masks; ``height`` and ``width`` may be symbolic sizes."""
    thresholds = [float(_threshold(k)) for k in k_list]
    counts = [
        None if t > 0.5 else (lowpass_count(height, k), lowpass_count(width, k))
        for k, t in zip(k_list, thresholds)
    ]
    ranks = [None if count is None else (2 * count[0] - 1, 2 * count[1] - 1) for count in counts]
    banded = [i for i, count in enumerate(counts) if count is not None]
    if not banded:
        return BandBases(None, None, ranks)
    # The widest band (highest threshold); the others take prefixes of its bases.
    rows, cols = counts[max(banded, key=thresholds.__getitem__)]
    return BandBases(
        _band_basis(height, rows, dtype, device), _band_basis(width, cols, dtype, device), ranks
    )


@lru_cache(maxsize=256)
def cached_band_bases(
    height: int, width: int, k_list: Tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> BandBases:
    """:func:`band_bases` for fixed sizes, built once (the fast path's); never inference
    tensors, which a later training step could not use."""
    with torch.inference_mode(False):
        return band_bases(height, width, k_list, dtype, device)


def lowpass_maps(
    x: Tensor, k_list: Sequence[float], bases: Optional[BandBases] = None
) -> List[Tensor]:
    """``irfft2(rfft2(x, norm='ortho') * M_i, s=(H, W), norm='ortho')`` for each ``M_i``.

    Args:
        x (Tensor): (B, C, H, W), float32 or float64.
        k_list (Sequence[float]): FBM's cut-offs.
        bases (BandBases | None): Of x's size, dtype and device; None builds them.

    Returns:
        list[Tensor]: ``len(k_list)`` maps (B, C, H, W).
    """
    if bases is None:
        bases = band_bases(*_map_size(x), k_list, x.dtype, x.device)
    if bases.rows is None:
        return [x for _ in k_list]
    basis_h, basis_w = bases.rows, bases.cols
    coefficients = torch.matmul(basis_h.t(), torch.matmul(x, basis_w))
    lows = []
    for rank in bases.ranks:
        if rank is None:  # t > 0.5: every frequency passes
            lows.append(x)
            continue
        part = coefficients[..., : rank[0], : rank[1]]
        lows.append(
            torch.matmul(basis_h[:, : rank[0]], torch.matmul(part, basis_w[:, : rank[1]].t()))
        )
    return lows


def lowpass_maps_sum(maps: Iterable[Tensor], bases: BandBases) -> Tensor:
    """``sum_i irfft2(rfft2(maps[i]) * M_i)`` (ortho), the adjoint of :func:`lowpass_maps`:
    each map projected onto its band's coefficients, the coefficients summed, one synthesis.

    Args:
        maps (Iterable[Tensor]): one map (B, C, H, W) per mask, consumed one at a time.
        bases (BandBases): Of the maps' size, dtype and device.

    Returns:
        Tensor: (B, C, H, W).
    """
    basis_h, basis_w = bases.rows, bases.cols
    total = coefficients = None
    for rank, values in zip(bases.ranks, maps):
        if rank is None:
            total = values if total is None else total + values
            continue
        if coefficients is None:
            coefficients = values.new_zeros(*values.shape[:-2], basis_h.shape[1], basis_w.shape[1])
        rows, cols = basis_h[:, : rank[0]], basis_w[:, : rank[1]]
        coefficients[..., : rank[0], : rank[1]] += torch.matmul(
            rows.t(), torch.matmul(values, cols)
        )
    if coefficients is not None:
        low = torch.matmul(basis_h, torch.matmul(coefficients, basis_w.t()))
        total = low if total is None else total + low
    return total


def _map_size(x: Tensor) -> Tuple[Any, Any]:
    """``(H, W)`` of a map, as ints under ``torch.jit.trace``."""
    height, width = x.shape[-2:]
    if torch.jit.is_tracing():
        # Traced sizes are tensors, whose integer division the TorchScript exporter
        # rounds through float32; its graphs have fixed sizes anyway.
        height, width = int(height), int(width)
    return height, width
