"""FLOP handles for the FFT operators of a traced model, for mmengine's ``FlopAnalyzer``.

mmengine's analyzer (fvcore's method) counts one multiply-add as one flop and has no handle
for FFTs, so they would be reported as unsupported and counted as zero. The cost model here
states an FFT in the same unit, multiply-add equivalents (MACs):

* a complex transform of ``n`` points costs the classic radix-2 ``5 * n * log2(n)`` real
  operations (``n/2 * log2(n)`` butterflies of one complex multiply and two complex adds);
* a real transform (real-to-complex or complex-to-real) of ``n`` real points costs half;
* one MAC is two real operations, so a real transform costs ``1.25 * n * log2(n)`` and a
  complex one ``2.5 * n * log2(n)`` flops, ``n`` being the product of the transformed sizes
  (the real side's for a real transform), times the number of transforms (the product of
  the other dimensions). ``log2(n)`` is used for every ``n``: the extra cost of mixed-radix
  or Bluestein transforms for sizes that are not powers of two is not modelled.
"""

import math
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.analysis.jit_handles import get_shape

REAL_FFT_FLOPS_PER_POINT_LOG2 = 1.25
COMPLEX_FFT_FLOPS_PER_POINT_LOG2 = 2.5
FFT_OPERATOR = 'fft'

# op -> (transform kind, position of its ``dim`` argument, default number of dims (None: all))
# 'r2c': real input; 'c2r': real output; 'c2c': complex in and out.
_FFT_OPS: Dict[str, Tuple[str, int, Optional[int]]] = {
    'aten::fft_fft': ('c2c', 2, 1),
    'aten::fft_ifft': ('c2c', 2, 1),
    'aten::fft_rfft': ('r2c', 2, 1),
    'aten::fft_ihfft': ('r2c', 2, 1),
    'aten::fft_irfft': ('c2r', 2, 1),
    'aten::fft_hfft': ('c2r', 2, 1),
    'aten::fft_fft2': ('c2c', 2, 2),
    'aten::fft_ifft2': ('c2c', 2, 2),
    'aten::fft_rfft2': ('r2c', 2, 2),
    'aten::fft_ihfft2': ('r2c', 2, 2),
    'aten::fft_irfft2': ('c2r', 2, 2),
    'aten::fft_hfft2': ('c2r', 2, 2),
    'aten::fft_fftn': ('c2c', 2, None),
    'aten::fft_ifftn': ('c2c', 2, None),
    'aten::fft_rfftn': ('r2c', 2, None),
    'aten::fft_ihfftn': ('r2c', 2, None),
    'aten::fft_irfftn': ('c2r', 2, None),
    'aten::fft_hfftn': ('c2r', 2, None),
    'aten::_fft_r2c': ('r2c', 1, None),
    'aten::_fft_c2r': ('c2r', 1, None),
    'aten::_fft_c2c': ('c2c', 1, None),
}


def fft_flops(sizes: Sequence[int], num_transforms: int = 1, real: bool = True) -> float:
    """MAC-equivalent cost of ``num_transforms`` FFTs over ``sizes`` (see the module doc).

    Args:
        sizes (Sequence[int]): The transformed sizes (real side for a real transform).
        num_transforms (int): How many such transforms. Defaults to 1.
        real (bool): A real-to-complex or complex-to-real transform. Defaults to True.

    Returns:
        float: ``num_transforms * c * n * log2(n)``, ``n = prod(sizes)``, ``c`` 1.25 for a
        real and 2.5 for a complex transform.
    """
    points = math.prod(sizes)
    if points <= 1:
        return 0.0
    per_point = REAL_FFT_FLOPS_PER_POINT_LOG2 if real else COMPLEX_FFT_FLOPS_PER_POINT_LOG2
    return num_transforms * per_point * points * math.log2(points)


def _constant(value: Any) -> Any:
    """The Python value of a traced constant or list of constants; None if not constant."""
    node = value.node()
    if node.kind() == 'prim::Constant':
        return value.toIValue()
    if node.kind() == 'prim::ListConstruct':
        items = [_constant(item) for item in node.inputs()]
        return None if any(item is None for item in items) else items
    return None


def _list_length(value: Any) -> Optional[int]:
    """Length of a traced list argument (``s``), whether its items are constant or not."""
    node = value.node()
    if node.kind() == 'prim::ListConstruct':
        return len(list(node.inputs()))
    constant = _constant(value)
    return len(constant) if isinstance(constant, (list, tuple)) else None


def _transformed_dims(
    inputs: List[Any], dim_index: int, default_ndim: Optional[int], rank: int
) -> List[int]:
    dims = _constant(inputs[dim_index]) if len(inputs) > dim_index else None
    if isinstance(dims, int):
        dims = [dims]
    if dims is None:
        ndim = default_ndim
        if ndim is None and dim_index == 2:
            ndim = _list_length(inputs[1])  # fftn(s=...) transforms the last len(s) dims
        dims = range(rank - (ndim or rank), rank)
    return sorted(d % rank for d in dims)


def fft_flop_handle(op_name: str) -> Callable[[List[Any], List[Any]], Counter]:
    """A ``FlopAnalyzer`` handle for one FFT operator, counted under ``'fft'``.

    Args:
        op_name (str): An operator of ``FFT_OP_HANDLES``, e.g. 'aten::fft_rfft2'.
    """
    kind, dim_index, default_ndim = _FFT_OPS[op_name]

    def handle(inputs: List[Any], outputs: List[Any]) -> Counter:
        shape = get_shape(inputs[0] if kind == 'r2c' else outputs[0])
        if shape is None:
            return Counter({FFT_OPERATOR: 0})
        shape = list(shape)
        dims = _transformed_dims(inputs, dim_index, default_ndim, len(shape))
        if kind == 'r2c' and dim_index == 2:
            # The real signal is cropped or zero-padded to ``s`` (``n`` for 1-D) if given.
            requested = _constant(inputs[1])
            if isinstance(requested, int):
                requested = [requested]
            if requested is not None and len(requested) == len(dims):
                for d, size in zip(dims, requested):
                    shape[d] = size if size != -1 else shape[d]
        sizes = [shape[d] for d in dims]
        transforms = math.prod(s for d, s in enumerate(shape) if d not in dims)
        flops = fft_flops(sizes, transforms, real=kind != 'c2c')
        return Counter({FFT_OPERATOR: int(round(flops))})

    return handle


FFT_OP_HANDLES: Dict[str, Callable[[List[Any], List[Any]], Counter]] = {
    name: fft_flop_handle(name) for name in _FFT_OPS
}
