"""Markdown tables of the benchmark results (readable in a terminal and in docs/)."""

from typing import Any, Dict, List, Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; numbers right-aligned, text left-aligned, columns padded."""
    cells = [[str(h) for h in headers]] + [[_format_cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], (int, float)) for row in rows) if rows else False
        for i in range(len(headers))
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if is_number else v.ljust(w)
            for v, w, is_number in zip(values, widths, numeric)
        ]
        return '| ' + ' | '.join(padded) + ' |'

    rule = '|' + '|'.join(
        '-' * (w + 1) + ':' if is_number else '-' * (w + 2) for w, is_number in zip(widths, numeric)
    )
    return '\n'.join([line(cells[0]), rule + '|'] + [line(c) for c in cells[1:]])


def _format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.2f}' if abs(value) < 100 else f'{value:.0f}'
    return str(value)


def layer_table(result: Dict[str, Any]) -> str:
    """FDConv / Conv2d per shape, then the geometric means of the time ratios.

    *floor* is :class:`~.layer_benchmark.FourierKernelFloor`'s training step.
    """
    headers = [
        'Cin', 'Cout', 'k', 'H x W',
        'Conv2d fwd ms', 'FDConv fwd ms', 'fwd x',
        'Conv2d train ms', 'FDConv train ms', 'train x', 'floor train ms', 'floor x',
        'Conv2d peak MB', 'FDConv peak MB', 'mem x',
    ]  # fmt: skip
    rows: List[List[Any]] = []
    for r in result['rows']:
        rows.append(
            [
                r['in_channels'], r['out_channels'], r['kernel_size'],
                f"{r['height']} x {r['width']}",
                r['Conv2d_forward_ms'], r['FDConv_forward_ms'], r['forward_ms_ratio'],
                r['Conv2d_train_ms'], r['FDConv_train_ms'], r['train_ms_ratio'],
                r['floor_train_ms'], r['floor_train_ratio'],
                r['Conv2d_train_peak_mb'], r['FDConv_train_peak_mb'], r['train_peak_mb_ratio'],
            ]
        )  # fmt: skip
    summary = (
        f"Geometric mean of FDConv / Conv2d over {len(rows)} shapes (batch "
        f"{result['batch_size']}): training step {result['train_ratio_geomean']:.2f}x, "
        f"forward {result['forward_ratio_geomean']:.2f}x; floor (kernel irfft2 + per-sample "
        f"conv only) training step {result['floor_train_ratio_geomean']:.2f}x"
    )
    return format_table(headers, rows) + '\n\n' + summary


def model_table(results: Sequence[Dict[str, Any]]) -> str:
    """Baseline and FDConv model per row pair, with the FDConv / baseline ratios."""
    headers = [
        'model', 'variant', 'image', 'params M',
        'train iter ms', 'inference ms', 'train peak MB',
    ]  # fmt: skip
    rows: List[List[Any]] = []
    for r in results:
        image = f"{r['image_size']}^2, b{r['train_batch']}/b{r['infer_batch']}"
        for variant in ('baseline', 'FDConv'):
            rows.append(
                [
                    r['model'], variant, image, r[f'{variant}_params_m'],
                    r[f'{variant}_train_ms'], r[f'{variant}_infer_ms'],
                    r[f'{variant}_train_peak_mb'],
                ]
            )  # fmt: skip
        rows.append(
            [
                r['model'], 'FDConv / baseline', image,
                r['FDConv_params_m'] / r['baseline_params_m'],
                r['train_ms_ratio'], r['infer_ms_ratio'], r['train_peak_mb_ratio'],
            ]
        )  # fmt: skip
    return format_table(headers, rows)
