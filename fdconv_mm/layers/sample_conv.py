"""Per-sample convolution: each sample of a batch convolved with its own kernel.

The ``B`` samples run as one grouped ``conv2d`` (``groups=B``); it was faster here than
one conv per sample and than convolving the row-unfolded input with the kernels in
their ``irfft2`` layout (measured: 131 against 147 ms for a 512 -> 512 3x3 training step
on 13 x 19 maps). The kernels arrive as FDConv builds them, matrices ``(B, Cout*kh,
Cin*kw)`` laid out ``(co, i, ci, j)``, and are permuted to ``conv2d``'s ``(co, ci, i, j)``.

Two autograd functions, one per memory mode of FDConv's ``keep_for_backward``:
:class:`RebuildingSampleConv` (the default) keeps neither the kernels nor the convolved
features for the backward pass: it saves their inputs and rebuilds them there (activation
checkpointing). A network of FDConvs would otherwise hold, per layer until the backward
pass, several batch-sized kernels and FBM's bands of the input.
:class:`KeepingSampleConv` holds them instead and skips the rebuild: faster, more memory.
"""

from dataclasses import dataclass
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .frequency import kernel_to_matrix, matrix_to_kernel
from .kernel_synthesis import KernelInputs, KernelSynthesis

Pair = Tuple[int, int]


class FeatureInputs(NamedTuple):
    """What the convolved features are built from, besides the input ``x``.

    Attributes:
        fbm_weight (Tensor | None): FBM's stacked weight convs (G*n, C/G, s, s).
        fbm_bias (Tensor | None): (G*n,).
        channel_scale (Tensor | None): (B, Cin, 1, 1), the channel attention where it
            scales the features instead of the kernels.
    """

    fbm_weight: Optional[Tensor]
    fbm_bias: Optional[Tensor]
    channel_scale: Optional[Tensor]


# make_features(x, *FeatureInputs) -> the features the kernels convolve (B, Cin, H, W).
MakeFeatures = Callable[..., Tensor]


@dataclass(frozen=True)
class SampleConvGeometry:
    """Kernel size, stride, zero padding and dilation of a per-sample conv.

    Args:
        kernel_size, stride, padding, dilation (tuple[int, int]): As ``nn.Conv2d``'s.
    """

    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair

    def conv_weight(self, kernels: Tensor, batch: int) -> Tensor:
        """Kernel matrices (B or 1, Cout*kh, Cin*kw) -> grouped weight (B*Cout, Cin, kh, kw)."""
        rows, cols = kernels.shape[-2:]
        kernel_h, kernel_w = self.kernel_size
        kernels = matrix_to_kernel(kernels.expand(batch, rows, cols), self.kernel_size)
        if kernel_h * kernel_w == 1:
            return kernels.reshape(-1, *kernels.shape[-3:])
        # One copy per kernel row i: 2-4x faster here than one permuted copy (whose
        # innermost loop runs over only kw elements), e.g. 1.5 against 5.4 ms at 512 -> 512.
        weight = kernels.new_empty(kernels.shape)
        for i in range(kernel_h):
            weight[..., i, :].copy_(kernels[..., i, :])
        return weight.view(-1, *weight.shape[-3:])

    def kernel_grad(self, grad_weight: Tensor, batch: int) -> Tensor:
        """Gradient of :meth:`conv_weight`'s output -> kernel matrices (B, Cout*kh, Cin*kw)."""
        return kernel_to_matrix(grad_weight.view(batch, -1, *grad_weight.shape[1:]))

    @staticmethod
    def conv_input(features: Tensor) -> Tensor:
        """(B, Cin, H, W) -> (1, B*Cin, H, W), the grouped conv's input."""
        grouped = features.reshape(1, -1, *features.shape[-2:])
        if torch.compiler.is_compiling():
            # Inductor (torch 2.13) cannot order the strides of this view under dynamic
            # shapes ("cannot determine truth value of Relational", from the second input
            # size on; pytorch/pytorch#185510): a pointwise op gives the conv its own buffer.
            grouped = grouped + 0
        return grouped

    @staticmethod
    def per_sample(out: Tensor, batch: int) -> Tensor:
        """The grouped conv's output (1, B*Cout, H', W') -> (B, Cout, H', W'), a view."""
        return out.view(batch, -1, *out.shape[-2:])

    def grouped_run(self, features: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
        """(B, Cin, H, W) with kernels (B or 1, Cout*kh, Cin*kw) -> (1, B*Cout, H', W')."""
        batch = features.shape[0]
        weight = self.conv_weight(kernels.to(features.dtype), batch)
        return self.grouped_conv(self.conv_input(features), weight, bias, batch)

    def grouped_conv(
        self, conv_input: Tensor, weight: Tensor, bias: Optional[Tensor], batch: int
    ) -> Tensor:
        """(1, B*Cin, H, W), :meth:`conv_weight` (B*Cout, Cin, kh, kw) -> (1, B*Cout, H', W')."""
        if bias is not None:
            bias = bias.to(conv_input.dtype).repeat(batch)
        return F.conv2d(conv_input, weight, bias, self.stride, self.padding, self.dilation, batch)

    def run(self, features: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
        """(B, Cin, H, W) with kernels (B or 1, Cout*kh, Cin*kw) -> (B, Cout, H', W')."""
        return self.per_sample(self.grouped_run(features, kernels, bias), features.shape[0])


def differentiable_conv_input(
    make_features: MakeFeatures,
    geometry: SampleConvGeometry,
    x: Tensor,
    feature_inputs: FeatureInputs,
    needs_x: bool,
    needs_features: FeatureInputs,
) -> Tuple[Tensor, Optional[Callable[[Tensor], Tuple[Tensor, ...]]], List[int]]:
    """The grouped conv's input ``geometry.conv_input(make_features(x, *feature_inputs))``,
    with its vector-Jacobian product in the arguments that need a gradient.

    ``torch.func.vjp`` differentiates it without grad mode (an autograd function's backward
    runs without it), and ``torch.compile`` traces it, where ``torch.autograd.grad`` would
    break the graph.

    Returns:
        tuple: The conv input (1, B*Cin, H, W); the vjp (None if no argument needs a
        gradient), which maps the conv input's gradient to those arguments' gradients; and
        their positions in ``(x, *feature_inputs)``.
    """
    arguments = [x, *feature_inputs]
    needs = [needs_x, *needs_features]
    wanted = [i for i, (t, need) in enumerate(zip(arguments, needs)) if t is not None and need]

    def conv_input_of(*differentiable: Tensor) -> Tensor:
        args = list(arguments)
        for index, tensor in zip(wanted, differentiable):
            args[index] = tensor
        return geometry.conv_input(make_features(*args))

    if not wanted:
        return conv_input_of(), None, wanted
    conv_input, vjp = torch.func.vjp(conv_input_of, *[arguments[i] for i in wanted])
    return conv_input, vjp, wanted


def _conv_and_kernel_backward(
    synthesis: KernelSynthesis,
    geometry: SampleConvGeometry,
    batch: int,
    grad_output: Tensor,
    conv_input: Tensor,
    take_weight: Callable[[], Tuple[Tensor, Any]],
    bias: Optional[Tensor],
    kernel_inputs: KernelInputs,
    needs_input: bool,
    needs_bias: bool,
    needs_kernels: KernelInputs,
) -> Tuple[Optional[Tensor], Optional[Tensor], KernelInputs]:
    """The grouped conv's backward, then the kernels' (``synthesis.backward``).

    Args:
        grad_output (Tensor): (1, B*Cout, H', W'), the grouped conv's output gradient.
        take_weight: Returns the conv weight (B*Cout, Cin, kh, kw) and the synthesis
            cache, which nothing else then holds: the weight is freed right after the
            conv's backward, before the kernels' (the peak of the step).

    Returns:
        tuple: Gradients of the conv input (1, B*Cin, H, W), of the bias and of the
        kernel inputs (None where not needed).
    """
    any_kernel = any(needs_kernels)
    weight, cache = take_weight()
    grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
        grad_output.reshape(1, -1, *grad_output.shape[-2:]).to(conv_input.dtype),
        conv_input,
        weight,
        None if bias is None else [bias.numel() * batch],
        geometry.stride,
        geometry.padding,
        geometry.dilation,
        False,
        [0, 0],
        batch,
        [needs_input, any_kernel, needs_bias],
    )
    del weight
    kernel_grads = KernelInputs(*([None] * len(KernelInputs._fields)))
    if any_kernel:
        grad_kernels = geometry.kernel_grad(grad_weight, batch)
        del grad_weight
        kernel_grads = synthesis.backward(kernel_inputs, cache, grad_kernels, needs_kernels)
    if needs_bias:
        grad_bias = grad_bias.view(batch, -1).sum(0).to(bias.dtype)
    return grad_input, grad_bias if needs_bias else None, kernel_grads


FEATURE_COUNT = len(FeatureInputs._fields)


class RebuildingSampleConv(torch.autograd.Function):
    """Per-sample conv whose backward pass rebuilds its features and kernels.

    ``apply(make_features, synthesis, geometry, x, bias, *feature_inputs, *kernel_inputs)``
    (:class:`FeatureInputs`, :class:`~.kernel_synthesis.KernelInputs`) returns
    ``geometry.grouped_run(make_features(x, *feature_inputs),
    synthesis.build(kernel_inputs)[0], bias)``, (1, B*Cout, H', W'). It saves ``x``,
    ``bias`` and the inputs, neither the features (e.g. FBM's output and its bands) nor
    the kernels: the backward pass rebuilds the features under the autocast state of the
    forward pass (as ``torch.utils.checkpoint`` does), differentiated by
    :func:`differentiable_conv_input`, and the kernels with ``synthesis.build``, whose
    ``synthesis.backward`` back-propagates into the kernel inputs.
    """

    @staticmethod
    def forward(
        ctx: Any,
        make_features: MakeFeatures,
        synthesis: KernelSynthesis,
        geometry: SampleConvGeometry,
        x: Tensor,
        bias: Optional[Tensor],
        *inputs: Optional[Tensor],
    ) -> Tensor:
        device = x.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.functions = (make_features, synthesis, geometry)
        ctx.save_for_backward(x, bias, *inputs)
        features = make_features(x, *inputs[:FEATURE_COUNT])
        kernels, _ = synthesis.build(KernelInputs(*inputs[FEATURE_COUNT:]))
        return geometry.grouped_run(features, kernels, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, bias, *inputs = ctx.saved_tensors
        make_features, synthesis, geometry = ctx.functions
        needs_x, needs_bias, *needs_inputs = ctx.needs_input_grad[3:]
        feature_inputs = FeatureInputs(*inputs[:FEATURE_COUNT])
        kernel_inputs = KernelInputs(*inputs[FEATURE_COUNT:])
        needs_features = FeatureInputs(*needs_inputs[:FEATURE_COUNT])
        needs_kernels = KernelInputs(*needs_inputs[FEATURE_COUNT:])
        device, autocast, autocast_dtype = ctx.autocast
        with torch.autocast(device, autocast_dtype, enabled=autocast):
            conv_input, conv_input_vjp, wanted = differentiable_conv_input(
                make_features, geometry, x, feature_inputs, needs_x, needs_features
            )
        batch = x.shape[0]

        def rebuilt_weight() -> Tuple[Tensor, Any]:
            kernels, cache = synthesis.build(kernel_inputs, keep=any(needs_kernels))
            return geometry.conv_weight(kernels.to(conv_input.dtype), batch), cache

        grad_input, grad_bias, kernel_grads = _conv_and_kernel_backward(
            synthesis,
            geometry,
            batch,
            grad_output,
            conv_input,
            rebuilt_weight,
            bias,
            kernel_inputs,
            bool(wanted),
            needs_bias,
            needs_kernels,
        )
        argument_grads: List[Optional[Tensor]] = [None] * (1 + FEATURE_COUNT)
        if wanted:
            for index, grad in zip(wanted, conv_input_vjp(grad_input)):
                argument_grads[index] = grad
        return (None, None, None, argument_grads[0], grad_bias, *argument_grads[1:], *kernel_grads)


class KeepingSampleConv(torch.autograd.Function):
    """Per-sample conv that keeps its kernels from the forward pass to the backward pass
    (FDConv's ``keep_for_backward``).

    ``apply(synthesis, geometry, features, bias, *kernel_inputs)`` returns
    ``geometry.grouped_run(features, synthesis.build(kernel_inputs)[0], bias)``,
    (1, B*Cout, H', W'). The features are built by autograd outside (which keeps what FBM's
    backward needs); the conv weight and the synthesis cache are held until the backward
    pass, which therefore runs once: ``retain_graph`` needs the rebuilding mode.
    """

    @staticmethod
    def forward(
        ctx: Any,
        synthesis: KernelSynthesis,
        geometry: SampleConvGeometry,
        features: Tensor,
        bias: Optional[Tensor],
        *kernel_inputs: Optional[Tensor],
    ) -> Tensor:
        ctx.functions = (synthesis, geometry)
        ctx.save_for_backward(features, bias, *kernel_inputs)
        keep = any(ctx.needs_input_grad[4:])
        kernels, cache = synthesis.build(KernelInputs(*kernel_inputs), keep=keep)
        weight = geometry.conv_weight(kernels.to(features.dtype), features.shape[0])
        del kernels
        ctx.kept = (weight, cache)
        return geometry.grouped_conv(geometry.conv_input(features), weight, bias, features.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        features, bias, *kernel_inputs = ctx.saved_tensors
        synthesis, geometry = ctx.functions
        needs_features, needs_bias, *needs_kernels = ctx.needs_input_grad[2:]
        if ctx.kept is None:
            raise RuntimeError(
                'FDConv(keep_for_backward=True) runs one backward pass per forward pass; '
                'for retain_graph=True use keep_for_backward=False'
            )
        batch = features.shape[0]

        def kept_weight() -> Tuple[Tensor, Any]:
            kept, ctx.kept = ctx.kept, None  # synthesis.backward overwrites the cache
            return kept

        grad_input, grad_bias, kernel_grads = _conv_and_kernel_backward(
            synthesis,
            geometry,
            batch,
            grad_output,
            geometry.conv_input(features),
            kept_weight,
            bias,
            KernelInputs(*kernel_inputs),
            needs_features,
            needs_bias,
            KernelInputs(*needs_kernels),
        )
        grad_features = grad_input.view_as(features) if needs_features else None
        return (None, None, grad_features, grad_bias, *kernel_grads)


def sample_conv(
    make_features: MakeFeatures,
    synthesis: KernelSynthesis,
    geometry: SampleConvGeometry,
    x: Tensor,
    bias: Optional[Tensor],
    feature_inputs: FeatureInputs,
    kernel_inputs: KernelInputs,
    keep_for_backward: bool = False,
) -> Tensor:
    """Per-sample conv of ``make_features(x, *feature_inputs)`` with the kernels
    ``synthesis.build(kernel_inputs)``, both rebuilt for the backward pass
    (:class:`RebuildingSampleConv`), or kept from the forward pass with
    ``keep_for_backward`` (:class:`KeepingSampleConv`).

    Without autograd (inference, or nothing requiring a gradient) they are built and
    used once, with no graph. Under ``torch.compile`` they are kept.

    Returns:
        Tensor: (B, Cout, H', W'), a view of the grouped conv's output taken here, outside
        the autograd function and no-grad mode: autograd refuses in-place changes (an
        in-place ReLU, ``+=``) of a view made inside either.
    """
    tensors = [x, bias, *feature_inputs, *kernel_inputs]
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)):
        with torch.no_grad():
            features = make_features(x, *feature_inputs)
            out = geometry.grouped_run(features, synthesis.build(kernel_inputs)[0], bias)
    elif keep_for_backward or torch.compiler.is_compiling():
        # Compiled, the features are built by autograd outside: inductor (torch 2.13, CPU)
        # miscomputes the input gradient of FBM rebuilt under torch.func.vjp in a backward
        # (0.1-0.3 relative at some map sizes; outputs and parameter gradients right).
        features = make_features(x, *feature_inputs)
        out = KeepingSampleConv.apply(synthesis, geometry, features, bias, *kernel_inputs)
    else:
        out = RebuildingSampleConv.apply(
            make_features, synthesis, geometry, x, bias, *feature_inputs, *kernel_inputs
        )
    return geometry.per_sample(out, x.shape[0])
