from fdconv_mm.benchmark import format_table, layer_table, model_table


def test_format_table_aligns_numbers_right_and_text_left():
    table = format_table(['name', 'ms'], [['a', 1.5], ['long name', 123.4]]).splitlines()
    assert table[0] == '| name      |   ms |'
    assert table[1] == '|-----------|-----:|'
    assert table[2] == '| a         | 1.50 |'
    assert table[3] == '| long name |  123 |'


def test_layer_table_has_one_row_per_shape_and_the_geometric_means():
    row = dict(in_channels=8, out_channels=16, kernel_size=3, height=5, width=7)
    for layer in ('Conv2d', 'FDConv', 'floor'):
        row.update({f'{layer}_forward_ms': 1.0, f'{layer}_train_ms': 2.0})
        row[f'{layer}_train_peak_mb'] = 3.0
    row.update(forward_ms_ratio=1.0, train_ms_ratio=1.0, train_peak_mb_ratio=1.0)
    row.update(floor_train_ratio=1.5)
    result = dict(
        rows=[row],
        batch_size=2,
        train_ratio_geomean=1.0,
        forward_ratio_geomean=1.0,
        floor_train_ratio_geomean=1.5,
    )
    lines = layer_table(result).splitlines()
    assert len(lines) == 5 and '| 5 x 7 ' in lines[2] and '|    1.50 |' in lines[2]
    assert 'training step 1.00x, forward 1.00x' in lines[-1]
    assert 'per-sample conv only) training step 1.50x' in lines[-1]


def test_model_table_adds_a_ratio_row_per_model():
    row = dict(model='M', image_size=64, train_batch=2, infer_batch=1)
    for variant, value in (('baseline', 1.0), ('FDConv', 2.0)):
        for metric in ('params_m', 'train_ms', 'infer_ms', 'train_peak_mb'):
            row[f'{variant}_{metric}'] = value
    row.update(train_ms_ratio=2.0, infer_ms_ratio=2.0, train_peak_mb_ratio=2.0)
    lines = model_table([row]).splitlines()
    assert len(lines) == 5 and 'FDConv / baseline' in lines[-1]
