"""Parameters and FLOPs of a model, FDConv's own work included, and their text report.

FLOPs follow mmengine's ``FlopAnalyzer`` (fvcore's jit-trace method): one multiply-add is
one flop; convolutions, linear layers, matmuls, norms and a few resampling ops are
counted, element-wise ops and activations are not. Two additions make FDConv's work
visible, with nothing counted twice:

* FFTs get a handle (:mod:`.fft_flops`): a real transform of ``n`` points costs
  ``1.25 * n * log2(n)``, a complex one ``2.5 * n * log2(n)``, wherever they run (kernel
  generation, FBM);
* the element-wise products that define FDConv, which the tracer skips, are added per
  active FDConv call by forward hooks (:mod:`.fdconv_flops`).

FDConv's convolutions (the per-sample conv, KSM's and FBM's small convs) are left to the
tracer's conv handle.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.complexity_analysis import parameter_count
from torch import Tensor, nn

from .fdconv_flops import ELEMENTWISE_TERMS, is_active_fdconv, record_fdconv_elementwise
from .fft_flops import FFT_OP_HANDLES, FFT_OPERATOR

ATTENTION_CHILDREN = ('KSM_Global', 'KSM_Local', 'FBM')
# Rows of the FDConv breakdown: key -> label.
FDCONV_ROWS = {
    'conv': 'per-sample convolutions (as the plain convs)',
    'attention_layers': 'KSM and FBM convs and norms',
    'kernel_fft': 'kernel-generation FFTs (irfft2)',
    'fbm_fft': 'FBM FFTs (rfft2 + irfft2)',
    'spectrum_mixing': 'spectrum mixing (group attention)',
    'kernel_modulation': 'kernel modulation (attentions)',
    'band_weighting': 'FBM band weighting',
}


def _is_under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + '.')


def _child(name: str, child: str) -> str:
    return f'{name}.{child}' if name else child


def _total(counter: Optional[Counter]) -> int:
    return int(sum(counter.values())) if counter else 0


def plain_conv_params(layer: nn.Module) -> int:
    """Parameters of the ``nn.Conv2d`` an FDConv layer replaces (weight and bias)."""
    k_h, k_w = layer.kernel_size
    weight = layer.out_channels * layer.in_channels // layer.groups * k_h * k_w
    return weight + (layer.out_channels if layer.bias is not None else 0)


@dataclass
class ComplexityReport:
    """What :func:`analyze_complexity` measured on one input.

    Attributes:
        params (dict): module name -> parameters in it ('' is the model).
        traced (dict): module name -> Counter of the tracer's flops by operator, FFTs
            under 'fft'; each module includes its descendants.
        elementwise (dict): active FDConv name -> Counter of ``ELEMENTWISE_TERMS``.
        unsupported_ops (Counter): operators the tracer met and did not count.
        module_names (list): the model's module names, in definition order.
        fdconv_layers (list): names of the active FDConv layers.
        fdconv_params (int): parameters of the active FDConv layers beyond the plain
            convs they replace.
        notes (list): extra lines about the input (e.g. the number of RoIs).
    """

    params: Dict[str, int]
    traced: Dict[str, Counter]
    elementwise: Dict[str, Counter]
    unsupported_ops: Counter
    module_names: List[str]
    fdconv_layers: List[str]
    fdconv_params: int
    notes: List[str] = field(default_factory=list)

    def flops(self, module: str = '') -> int:
        """FLOPs of ``module`` ('' for the model): traced plus FDConv's element-wise work."""
        elementwise = sum(
            _total(counts) for name, counts in self.elementwise.items() if _is_under(name, module)
        )
        return _total(self.traced.get(module)) + elementwise

    def fdconv_breakdown(self, module: str = '') -> Dict[str, int]:
        """FLOPs of the active FDConv layers under ``module``, by the keys of FDCONV_ROWS."""
        rows = dict.fromkeys(FDCONV_ROWS, 0)
        for name in self.fdconv_layers:
            if not _is_under(name, module):
                continue
            layer = self.traced.get(name, Counter())
            fft = layer[FFT_OPERATOR]
            fbm_fft = self.traced.get(_child(name, 'FBM'), Counter())[FFT_OPERATOR]
            attention = sum(_total(self.traced.get(_child(name, c))) for c in ATTENTION_CHILDREN)
            attention -= fbm_fft
            rows['conv'] += _total(layer) - fft - attention
            rows['attention_layers'] += attention
            rows['kernel_fft'] += fft - fbm_fft
            rows['fbm_fft'] += fbm_fft
            for term in ELEMENTWISE_TERMS:
                rows[term] += self.elementwise.get(name, Counter())[term]
        return rows

    def fdconv_extra_flops(self, module: str = '') -> int:
        """FLOPs FDConv adds to the plain convs: everything in it but the per-sample convs."""
        rows = self.fdconv_breakdown(module)
        return sum(rows.values()) - rows['conv']


def analyze_complexity(
    model: nn.Module, inputs: Union[Tensor, Tuple[Tensor, ...]]
) -> ComplexityReport:
    """Trace ``model(*inputs)`` once and count its parameters and FLOPs.

    Args:
        model (nn.Module): The model, in the mode to measure (usually ``eval()``).
        inputs (Tensor | tuple): The positional inputs of ``model``.

    Returns:
        ComplexityReport: The counts, by module.
    """
    analyzer = FlopAnalyzer(model, inputs).set_op_handle(**FFT_OP_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with record_fdconv_elementwise(model) as elementwise:
        traced = analyzer.by_module_and_operator()
    fdconv_layers = [name for name, module in model.named_modules() if is_active_fdconv(module)]
    fdconv_params = sum(
        sum(p.numel() for p in module.parameters()) - plain_conv_params(module)
        for module in model.modules()
        if is_active_fdconv(module)
    )
    return ComplexityReport(
        params=dict(parameter_count(model)),
        traced=traced,
        elementwise=elementwise,
        unsupported_ops=analyzer.unsupported_ops(),
        module_names=[name for name, _ in model.named_modules()],
        fdconv_layers=fdconv_layers,
        fdconv_params=fdconv_params,
    )


def format_count(value: float, unit: str = '') -> str:
    """``207073000000`` -> ``'207.073 G'`` (three decimals, G/M/K)."""
    for scale, prefix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(value) >= scale:
            return f'{value / scale:.3f} {prefix}{unit}'
    return f'{value:.0f} {unit}'.rstrip()


def format_report(
    report: ComplexityReport,
    depth: int = 1,
    baseline: Optional[ComplexityReport] = None,
    header: Optional[List[str]] = None,
) -> str:
    """The report as text: a table by module, FDConv's breakdown, what was not counted.

    Args:
        report (ComplexityReport): The model's counts.
        depth (int): Module levels in the table (1: backbone, neck, heads). Defaults to 1.
        baseline (ComplexityReport, optional): The same model with plain convs, to show
            what FDConv adds. Defaults to None.
        header (list[str], optional): Lines printed first (config, input shape).
    """
    lines = list(header or [])
    rows = [('model', report.params.get('', 0), report.flops())]
    for name in report.module_names:
        if not name or name.count('.') >= depth:
            continue
        params, flops = report.params.get(name, 0), report.flops(name)
        if params or flops:
            rows.append(('  ' * name.count('.') + name, params, flops))
    width = max(len(row[0]) for row in rows) + 2
    lines.append(f'{"module":<{width}}{"params":>14}{"FLOPs":>14}')
    lines += [f'{n:<{width}}{format_count(p):>14}{format_count(f):>14}' for n, p, f in rows]
    lines.append('')
    lines.append(f'Params: {format_count(report.params.get("", 0))} ({report.params.get("", 0)})')
    lines.append(f'FLOPs: {format_count(report.flops())} ({report.flops()})')
    lines.append(
        '(1 flop = 1 multiply-add; FFT n points: real 1.25 n log2 n, complex 2.5 n log2 n)'
    )
    if report.fdconv_layers:
        with_fbm = sum(_child(name, 'FBM') in report.traced for name in report.fdconv_layers)
        lines.append('')
        lines.append(
            f'FDConv: {len(report.fdconv_layers)} active layers ({with_fbm} with FBM), '
            f'{format_count(report.fdconv_params)} params beyond the plain convs'
        )
        breakdown = report.fdconv_breakdown()
        label_width = max(len(label) for label in FDCONV_ROWS.values()) + 4
        for key, label in FDCONV_ROWS.items():
            lines.append(f'  {label:<{label_width}}{format_count(breakdown[key]):>14}')
        extra = report.fdconv_extra_flops()
        lines.append(
            f'  {"FDConv extra work (all but the convs)":<{label_width}}'
            f'{format_count(extra):>14}'
        )
    if baseline is not None:
        params, base_params = report.params.get('', 0), baseline.params.get('', 0)
        flops, base_flops = report.flops(), baseline.flops()
        lines.append('')
        lines.append(
            f'Baseline (plain convs): params {format_count(base_params)}, '
            f'FLOPs {format_count(base_flops)}; FDConv adds {format_count(params - base_params)} '
            f'params, {format_count(flops - base_flops)} FLOPs'
        )
    if report.notes:
        lines += [''] + report.notes
    unsupported = ', '.join(
        f'{op} x{count}'
        for op, count in sorted(
            report.unsupported_ops.items(), key=lambda item: (-item[1], item[0])
        )
    )
    lines.append('')
    lines.append(f'Not counted (no flop handle): {unsupported or "none"}')
    return '\n'.join(lines)
