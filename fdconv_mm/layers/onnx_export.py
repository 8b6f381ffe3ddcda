"""FDConv's ONNX export path: the layer's function in real arithmetic and plain ONNX ops.

The training and inference paths use ``torch.fft`` on complex tensors, hand-written
autograd and shape-dependent Python (cached masks, ``.tolist()``), none of which the ONNX
exporters take. Under an export (:func:`is_exporting`) FDConv runs :func:`fdconv_forward`
instead: the same function (SPEC sections 3-6) built only from MatMul, Mul, Add,
Reshape, Transpose, Gather, Cos/Sin of ``arange``, Conv and the attention heads' ops.
No complex tensor, no DFT op and no custom op appear, so the graph runs in any ONNX
runtime (ONNX Runtime, TensorRT and OpenVINO have no complex types; TensorRT has no DFT),
and both exporters take it: ``torch.onnx.export(..., dynamo=True)`` (torch 2.13's
default) and the TorchScript-based ``dynamo=False`` (mmdeploy's).

How each transform is built, and why:

* FDW (SPEC section 4), ``W_b = irfft2(S_b)`` of the ``(Cout*k, Cin*k)`` kernel matrix:
  spectra are real tensors with the real and imaginary parts as a trailing pair, as
  ``dft_weight`` stores them. ``irfft2`` is an inverse DFT along the rows and one along
  the columns of the one-sided spectrum, each column weighted by 1 or 2 (the conjugate
  columns it stands for) and the real part taken: exactly torch's ``c2r``. Each DFT is a
  mixed-radix (Cooley-Tukey, four-step) transform: the length ``n`` splits into factors
  of at most :data:`MAX_RADIX`, each factor a small dense DFT (one MatMul with a real
  ``(2r, 2r)`` matrix) between twiddle products. Dense ``n x n`` DFT matrices would cost
  ``n`` multiply-adds per element instead of the sum of the factors (1536 against 27 at
  ``n = 1536``, ResNet's 512 -> 512 3x3 layers), and 16 MB each as constants at ResNet-50
  sizes. The matrices and twiddles are built in the graph from ``arange`` (integer
  phases ``j*k mod n``, then Cos/Sin): a few kB of constants per layer once folded.
  The kernels are not expanded into per-group spatial bases (``K`` times the weights).
* Frequency groups: each Fourier position's group, a shape-only constant, gathers the
  group attention; it is stored as uint8 (int16 for ``K*P > 256``) and cast in the graph:
  1/8 of ``dft_weight``'s size rather than as much again as int64.
* FBM (SPEC section 6): the low-pass masks are separable (``max(|fy|, |fx|) < t``) and
  symmetric in the frequency's sign, so each ``irfft2(rfft2(x) * M_i)`` is the real
  projection ``E_H E_H^T x E_W E_W^T / (H*W)`` with ``E`` the kept frequencies' cosines and
  sines. The bases are built in the graph from the map's size, the count of kept
  frequencies being an integer expression of it (the float32 threshold is a dyadic
  rational ``p / q``: ``f = v / n < p / q`` iff ``v * q < p * n``), so height and width
  may stay dynamic; the masks are nested, so one forward projection onto the widest band
  serves every band. The cost is ``O(H W (H + W))`` multiply-adds per channel, about that
  of the layer's own 3x3 conv at detection sizes.

Batch size is fixed at export: the per-sample kernels run as one grouped conv with
``groups = B``. Height and width may be dynamic (``dynamic_shapes``, dynamo exporter).
"""

import math
from functools import lru_cache
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .frequency import matrix_to_kernel

MAX_RADIX = 16
DEFAULT_OPSET = 18


def is_exporting() -> bool:
    """Whether an ONNX (or ``torch.export``) export is tracing the model.

    ``torch.onnx.is_in_onnx_export()`` is set by both ONNX exporters of torch 2.13
    (``dynamo=False`` also sets ``torch.jit.is_tracing()``, ``dynamo=True`` also
    ``torch.compiler.is_exporting()`` and ``is_compiling()``); ``is_exporting()`` alone
    marks a plain ``torch.export.export``, which cannot take the training path either.
    """
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


# ---------------------------------------------------------------- complex as real pairs


@lru_cache(maxsize=None)
def _dft_matrix(n: int, sign: float, dtype: str) -> np.ndarray:
    """Real ``(2n, 2n)`` matrix of the DFT ``X[k] = sum_j x[j] exp(sign 2 pi i jk / n)``
    on flattened pairs: row ``2j + c`` (input part c), column ``2k + c'``."""
    phase = 2 * np.pi * (np.outer(np.arange(n), np.arange(n)) % n) / n
    cos, sin = np.cos(phase), np.sin(phase) * sign
    # [re_out, im_out] = [re cos - im sin, re sin + im cos]
    block = np.stack((np.stack((cos, sin), -1), np.stack((-sin, cos), -1)), 1)
    return block.reshape(2 * n, 2 * n).astype(dtype)


@lru_cache(maxsize=None)
def _twiddles(n: int, radix: int, sign: float, dtype: str) -> np.ndarray:
    """Twiddles ``w_n^(j2 k1)`` of one four-step level as two (n / radix, radix, 2) factors:
    ``x * w = x * [cos, cos] + flip(x) * [-sin, sin]`` on real/imaginary pairs."""
    phase = 2 * np.pi * (np.outer(np.arange(n // radix), np.arange(radix)) % n) / n
    cos, sin = np.cos(phase), np.sin(phase) * sign
    return np.stack((np.stack((cos, cos), -1), np.stack((-sin, sin), -1))).astype(dtype)


def _constant(array: np.ndarray, like: Tensor) -> Tensor:
    """A shape-only constant of the graph (numpy: the exporters record it as data)."""
    return torch.from_numpy(array).to(like.device)


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


def complex_dft(x: Tensor, inverse: bool = False, real_part: bool = False) -> Tensor:
    """Unnormalized DFT along dim -2 of ``x`` (..., n, 2) (trailing real/imaginary pair).

    ``X[k] = sum_j x[j] exp(-+ 2 pi i jk / n)`` (``+`` if ``inverse``), as a mixed-radix
    transform of :func:`radix_plan`'s factors; float32 or float64.

    Returns:
        Tensor: (..., n, 2), or (..., n) with ``real_part`` (the last factor's matrix
        then only computes the real parts).
    """
    return _dft(x, radix_plan(int(x.shape[-2])), -1.0 + 2.0 * inverse, real_part)


def _dft(x: Tensor, plan: Tuple[int, ...], sign: float, real_part: bool) -> Tensor:
    """Four-step DFT along dim -2 of (..., n, 2), ``n = prod(plan)``.

    With ``j = M j1 + j2`` and ``k = k1 + r k2`` (``n = r M``):
    ``X[k1 + r k2] = sum_j2 w_M^(j2 k2) w_n^(j2 k1) sum_j1 w_r^(j1 k1) x[M j1 + j2]``.
    """
    *lead, n, _ = x.shape
    n = int(n)  # a weight's size: static (a traced tensor under the TorchScript exporter)
    dtype = str(x.dtype).replace('torch.', '')
    radix = plan[0]
    if len(plan) == 1:
        matrix = _constant(_dft_matrix(n, sign, dtype), x)
        if real_part:
            return torch.matmul(x.reshape(*lead, 2 * n), matrix[:, 0::2])
        return torch.matmul(x.reshape(*lead, 2 * n), matrix).view(*lead, n, 2)
    rest = n // radix
    x = x.reshape(*lead, radix, rest, 2).transpose(-3, -2)  # (..., j2, j1, 2)
    x = _dft(x, (radix,), sign, False)  # (..., j2, k1, 2)
    same, swapped = _constant(_twiddles(n, radix, sign, dtype), x).unbind(0)
    x = x * same + x.flip(-1) * swapped
    x = _dft(x.transpose(-3, -2), plan[1:], sign, real_part)  # (..., k1, k2[, 2])
    if real_part:
        return x.transpose(-2, -1).reshape(*lead, n)
    return x.transpose(-3, -2).reshape(*lead, n, 2)


def irfft2_pairs(spectrum: Tensor, size: Tuple[int, int]) -> Tensor:
    """``torch.fft.irfft2`` of a one-sided spectrum given as real pairs.

    Args:
        spectrum (Tensor): (..., rows, cols // 2 + 1, 2), real and imaginary parts,
            float32 or float64.
        size (tuple[int, int]): ``(rows, cols)``.

    Returns:
        Tensor: (..., rows, cols), real.
    """
    rows, cols = size
    half = cols // 2 + 1
    # The inverse along the rows, on the one-sided columns.
    columns = complex_dft(spectrum.transpose(-3, -2), inverse=True).transpose(-3, -2)
    # c2r: column v stands for v and cols - v (once for the DC and Nyquist columns); the
    # imaginary parts of those two drop out of the real part taken at the end.
    weight = np.full(half, 2.0 / (rows * cols))
    weight[0] /= 2
    if cols % 2 == 0:
        weight[-1] /= 2
    weight = _constant(weight.astype(str(spectrum.dtype).replace('torch.', '')), spectrum)
    padded = F.pad(columns * weight[:, None], (0, 0, 0, cols - half))  # (..., rows, cols, 2)
    return complex_dft(padded, inverse=True, real_part=True)


# ----------------------------------------------------------------------- FDW kernels


def compact_group_index(groups: Tensor, kernel_num: int, param_ratio: int) -> np.ndarray:
    """Index into the (B, K*P) group attentions of every (copy, position), flat, in the
    smallest integer type: the shape-only constant of an exported layer.

    FDConv computes it when it is built: an export traces with fake tensors, whose data
    cannot be read.

    Args:
        groups (Tensor): (Cout*k, Cin*k // 2 + 1) frequency group of each position.
        kernel_num, param_ratio (int): ``K``, ``P``.

    Returns:
        np.ndarray: (P * Cout*k * (Cin*k // 2 + 1),) uint8, int16 or int32.
    """
    flat = groups.cpu().numpy().reshape(-1)
    index = (np.arange(param_ratio)[:, None] * kernel_num + flat[None]).reshape(-1)
    count = kernel_num * param_ratio
    dtype = np.uint8 if count <= 256 else np.int16 if count <= 32768 else np.int32
    return index.astype(dtype)


def fourier_kernels(conv: nn.Module, group_attention: Optional[Tensor]) -> Tensor:
    """FDW of SPEC section 4 in real arithmetic: the kernel matrices of each sample.

    Args:
        conv (FDConv): An active layer.
        group_attention (Tensor | None): (B, K*P), or None for a single group.

    Returns:
        Tensor: (B or 1, Cout*k, Cin*k) float32 (float64 for a float64 weight), laid
        out ``(co, i, ci, j)``.
    """
    spectrum = conv.fourier_weight()
    spectrum = spectrum.to(torch.promote_types(spectrum.dtype, torch.float32))
    ratio, rows, half = spectrum.shape[:3]
    size = conv.synthesis.matrix_size
    if group_attention is None:
        mixed = spectrum.sum(0, keepdim=True) * conv.alpha
    else:
        index = torch.from_numpy(conv.export_group_index).to(group_attention.device).long()
        attention = group_attention.to(spectrum.dtype) * conv.alpha
        group_map = torch.index_select(attention, 1, index).view(-1, ratio, rows, half, 1)
        mixed = (spectrum * group_map).sum(1)
    return irfft2_pairs(mixed, size)


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


def lowpass_maps(x: Tensor, k_list: Sequence[float]) -> List[Tensor]:
    """``irfft2(rfft2(x, norm='ortho') * M_i, s=(H, W), norm='ortho')`` for each ``M_i``.

    Args:
        x (Tensor): (B, C, H, W), float32 or float64.
        k_list (Sequence[float]): FBM's cut-offs.

    Returns:
        list[Tensor]: ``len(k_list)`` maps (B, C, H, W).
    """
    height, width = x.shape[-2:]
    if torch.jit.is_tracing():
        # Traced sizes are tensors, whose integer division the TorchScript exporter
        # rounds through float32; its graphs have fixed sizes anyway.
        height, width = int(height), int(width)
    thresholds = [float(_threshold(k)) for k in k_list]
    counts = [
        None if t > 0.5 else (lowpass_count(height, k), lowpass_count(width, k))
        for k, t in zip(k_list, thresholds)
    ]
    banded = [i for i, count in enumerate(counts) if count is not None]
    if not banded:
        return [x for _ in k_list]
    # The widest band (highest threshold); the others take prefixes of its bases.
    widest = max(banded, key=thresholds.__getitem__)
    rows, cols = counts[widest]
    basis_h = _band_basis(height, rows, x.dtype, x.device)
    basis_w = _band_basis(width, cols, x.dtype, x.device)
    coefficients = torch.matmul(basis_h.t(), torch.matmul(x, basis_w))
    lows = []
    for count in counts:
        if count is None:  # t > 0.5: every frequency passes
            lows.append(x)
            continue
        rank_h, rank_w = 2 * count[0] - 1, 2 * count[1] - 1
        part = coefficients[..., :rank_h, :rank_w]
        low = torch.matmul(basis_h[:, :rank_h], torch.matmul(part, basis_w[:, :rank_w].t()))
        lows.append(low)
    return lows


def fbm_forward(fbm: nn.Module, x: Tensor) -> Tensor:
    """FBM of SPEC section 6 in real arithmetic: (B, C, H, W) -> (B, C, H, W).

    Args:
        fbm (FrequencyBandModulation): The module.
        x (Tensor): (B, C, H, W).
    """
    fft_dtype = torch.promote_types(x.dtype, torch.float32)
    lows = lowpass_maps(x.to(fft_dtype), fbm.k_list)
    previous = [x.to(fft_dtype), *lows[:-1]]
    bands = torch.stack([p - low for p, low in zip(previous, lows)] + [lows[-1]], dim=1)
    return fbm.combine_bands(x, bands)


# ---------------------------------------------------------------------------- FDConv


def fdconv_forward(conv: nn.Module, x: Tensor) -> Tensor:
    """An active FDConv (SPEC sections 3-6) in real arithmetic: (B, Cin, H, W) ->
    (B, Cout, H', W'), the kernels of the ``B`` samples in one grouped conv.

    Args:
        conv (FDConv): An active layer.
        x (Tensor): (B, Cin, H, W), ``B`` fixed by the export.
    """
    batch, k = x.shape[0], conv.kernel_size[0]
    cin, cout = conv.in_channels, conv.out_channels
    pooled = x.mean(dim=(2, 3), keepdim=True)
    channel_att, filter_att, spatial_att, group_att = conv.KSM_Global(pooled)
    kernel = matrix_to_kernel(fourier_kernels(conv, group_att), k)
    if conv.KSM_Local is not None:
        kernel = kernel * conv.KSM_Local(pooled, spatial_att)
    elif spatial_att is not None:
        kernel = kernel * spatial_att.view(batch, 1, 1, k, k)
    if channel_att is not None:
        kernel = kernel * channel_att.view(batch, 1, cin, 1, 1)
    if filter_att is not None:
        kernel = kernel * filter_att.view(batch, cout, 1, 1, 1)
    features = fbm_forward(conv.FBM, x) if conv.FBM is not None else x
    features = conv.conv_features(features, None, None, None)
    weight = kernel.expand(batch, -1, -1, -1, -1).reshape(batch * cout, cin, k, k)
    geometry = conv.conv_geometry
    grouped = features.reshape(1, batch * cin, *features.shape[-2:])
    out = geometry.grouped_conv(grouped, weight.to(features.dtype), conv.bias, batch)
    return out.view(batch, cout, *out.shape[-2:])


# ---------------------------------------------------------------------------- export


def export_onnx(
    model: nn.Module,
    args: Tuple[Any, ...],
    f: Any,
    *,
    dynamic_hw: bool = False,
    dynamo: bool = True,
    opset_version: int = DEFAULT_OPSET,
    input_names: Sequence[str] = ('input',),
    output_names: Optional[Sequence[str]] = None,
    keep_metadata: bool = False,
    **kwargs: Any,
) -> Any:
    """``torch.onnx.export`` with what FDConv models need; pure torch.

    The model is exported in eval mode, without gradients, and left in its mode
    afterwards; the file holds its weights (no external data). Every FDConv
    in it takes the export path (:func:`fdconv_forward`) by itself: these are only the
    exporter's arguments. The batch size of ``args[0]`` is fixed in the file.

    Args:
        model (nn.Module): Any model; its FDConv layers export through this module.
        args (tuple): Example inputs; ``args[0]`` is the image batch (B, C, H, W).
        f (str | PathLike): The ``.onnx`` file, written with its weights inside.
        dynamic_hw (bool): Export height and width of ``args[0]`` as dynamic
            (dynamo exporter only). Defaults to False.
        dynamo (bool): The exporter: True (torch's default, ``torch.export``) or False
            (TorchScript tracing, as mmdeploy). Defaults to True.
        opset_version (int): ONNX opset. Defaults to 18.
        input_names (Sequence[str]): Names of the graph inputs. Defaults to ('input',).
        output_names (Sequence[str] | None): Names of the outputs. Defaults to None.
        keep_metadata (bool): Keep the dynamo exporter's per-node metadata (stack
            traces, module names: a third of the file of a small backbone).
            Defaults to False.
        **kwargs: Passed on to ``torch.onnx.export`` (``optimize`` defaults to False
            here: onnxscript's optimizer triples the export time).

    Returns:
        The ``ONNXProgram`` (dynamo) or None.
    """
    if dynamic_hw and not dynamo:
        raise ValueError(
            'export_onnx(dynamic_hw=True) needs dynamo=True: the TorchScript exporter '
            'traces FDConv at fixed sizes'
        )
    options = dict(
        opset_version=opset_version,
        input_names=list(input_names),
        output_names=None if output_names is None else list(output_names),
        dynamo=dynamo,
    )
    if dynamo:
        # onnxscript's graph rewriter takes most of the export time (49 of 78 s for the
        # demo ResNet-18) for a 5 % smaller file; ONNX Runtime optimizes at load anyway.
        options.update(optimize=False)
    if dynamo and dynamic_hw:
        height = torch.export.Dim('height', min=2)
        width = torch.export.Dim('width', min=2)
        options.update(dynamic_shapes=({2: height, 3: width}, *([None] * (len(args) - 1))))
    options.update(kwargs)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if not dynamo:
                return torch.onnx.export(model, tuple(args), f, **options)
            program = torch.onnx.export(model, tuple(args), **options)
    finally:
        model.train(training)
    if not keep_metadata:
        for node in program.model.graph.all_nodes():
            node.metadata_props.clear()
    program.save(f, external_data=False)
    return program
