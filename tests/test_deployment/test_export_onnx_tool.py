"""tools/deployment/export_onnx.py end to end: configs to ONNX files that ONNX Runtime runs
as PyTorch does, checkpoints, images, the tolerance's exit status, bad arguments."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

from fdconv_mm.demo import write_demo_image  # noqa: E402
from fdconv_mm.deployment import (  # noqa: E402
    build_config_model,
    input_dims,
    random_inputs,
    run_onnxruntime,
)

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / 'tools' / 'deployment' / 'export_onnx.py'
DET_CONFIG = str(REPO / 'configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py')
SEG_CONFIG = str(REPO / 'configs/demo/upernet_r18-fdconv_demo-shapes.py')
# TorchScript tracing is the fastest exporter.
FASTEST = ['--exporter', 'torchscript']
PLAIN = ['model.backbone.conv_cfg=None']


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('export_onnx', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def largest_difference(text):
    """The figure of the tool's 'Largest relative difference: ...' line."""
    match = re.search(r'Largest relative difference: (\S+)', text)
    assert match, text
    return float(match.group(1))


def relative(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def randomized_checkpoint(path, config, seed=1):
    """An mmengine-style checkpoint of the config's model with random (non-neutral) FDConv
    attention heads and BN statistics, so that the file's weights change the outputs."""
    model, _ = build_config_model(config, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'KSM' in name or 'FBM' in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        for name, buffer in model.named_buffers():
            if name.endswith('running_var'):
                buffer.uniform_(0.5, 2.0, generator=generator)
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), path)
    return path


def test_upernet_segmentor_exports_its_logits(tool, tmp_path, capsys):
    out = tmp_path / 'upernet.onnx'
    status = tool.main([SEG_CONFIG, '--shape', '64', '96', '--out', str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    assert 'EncoderDecoder.encode_decode' in text and 'seg_logits (1, 4, 64, 96)' in text
    assert largest_difference(text) < 1e-4
    # Independently: the file against mmseg's own predict (no data samples: unpadded input).
    model, _ = build_config_model(SEG_CONFIG)
    inputs = random_inputs(1, (64, 96))
    with torch.no_grad():
        expected = model.predict(inputs)[0].seg_logits.data
    (logits,) = run_onnxruntime(out, inputs)
    assert logits.shape == (1, 4, 64, 96)
    assert relative(logits[0], expected) < 1e-4


def test_cli_exports_the_detector_features_of_real_images(tmp_path):
    images = [write_demo_image(tmp_path / f'{seed}.png', seed) for seed in (0, 1)]
    out = tmp_path / 'detector.onnx'
    run = subprocess.run(
        [sys.executable, str(TOOL), DET_CONFIG, '--shape', '64', '64', '--batch', '2',
         '--image', *map(str, images), '--out', str(out), *FASTEST],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'FasterRCNN.extract_feat' in run.stdout
    # The narrow FPN: 64 channels at strides 4 to 64.
    for index, size in enumerate((16, 8, 4, 2, 1)):
        assert f'neck_{index} (2, 64, {size}, {size}):' in run.stdout
    assert largest_difference(run.stdout) < 1e-4
    import onnx

    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ['inputs']
    assert [o.name for o in graph.output] == [f'neck_{i}' for i in range(5)]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [2, 3, 64, 64]


def test_checkpoint_round_trip_through_the_backbone(tool, tmp_path, capsys):
    checkpoint = randomized_checkpoint(tmp_path / 'random.pth', DET_CONFIG)
    out = tmp_path / 'backbone.onnx'
    argv = [DET_CONFIG, str(checkpoint), '--part', 'backbone', '--shape', '32', '32',
            '--out', str(out), *FASTEST]  # fmt: skip
    assert tool.main(argv) == 0
    text = capsys.readouterr().out
    assert 'ResNetFDConv (the backbone)' in text and str(checkpoint) in text
    assert largest_difference(text) < 1e-4
    inputs = random_inputs(1, (32, 32), seed=3)
    outputs = run_onnxruntime(out, inputs)
    assert [o.shape for o in outputs] == [(1, 32 * 2**i, 8 >> i, 8 >> i) for i in range(4)]
    loaded, _ = build_config_model(DET_CONFIG, checkpoint, seed=5)
    fresh, _ = build_config_model(DET_CONFIG, seed=5)
    with torch.no_grad():
        expected, untrained = loaded.backbone(inputs), fresh.backbone(inputs)
    for output, reference, other in zip(outputs, expected, untrained):
        assert relative(output, reference) < 1e-4
        assert relative(output, other) > 1e-2  # the file holds the checkpoint's weights


def test_exit_status_is_one_above_the_tolerance(tool, tmp_path, capsys, monkeypatch):
    from fdconv_mm.deployment import config_export

    def off_by_a_thousandth(path, inputs, threads=None):
        return [output * 1.001 for output in run_onnxruntime(path, inputs, threads)]

    monkeypatch.setattr(config_export, 'run_onnxruntime', off_by_a_thousandth)
    out = tmp_path / 'backbone.onnx'
    # Plain convs: the exit status, not the exporter, is under test here.
    argv = [DET_CONFIG, '--part', 'backbone', '--shape', '32', '32', '--out', str(out),
            '--cfg-options', *PLAIN]  # fmt: skip
    assert tool.main(argv) == 1
    captured = capsys.readouterr()
    assert 'ABOVE the tolerance 0.0001' in captured.out
    assert 'differs from PyTorch above --tolerance' in captured.err
    assert 9e-4 < largest_difference(captured.out) < 1.1e-3
    assert out.is_file()  # kept for inspection


@pytest.fixture
def backbone_only_config(tmp_path):
    """An mmdet config whose model is a bare backbone: nothing to export whole."""
    path = tmp_path / 'bare_backbone.py'
    path.write_text(
        "default_scope = 'mmdet'\n"
        "custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)\n"
        "model = dict(type='ResNetFDConv', depth=18, base_channels=16)\n"
    )
    return str(path)


@pytest.mark.parametrize(
    'argv, message',
    [
        (['--part', 'neck'], "argument --part: invalid choice: 'neck'"),
        (['--shape', '0', '64'], '--shape must be two positive integers H W'),
        (['--batch', '0'], '--batch must be a positive integer'),
        (['--tolerance', '-1'], '--tolerance must be >= 0'),
        (['--check-shape', '64', '64'], '--check-shape needs --dynamic-hw'),
        (['CHECKPOINT=missing.pth'], 'checkpoint missing.pth: no such file'),
        (['--image', 'missing.png'], 'image missing.png: no such file'),
        (['--batch', '3', '--image', 'a.png', 'b.png'], '--image: give 1 image or --batch (3)'),
        # mmdet's preprocessor pads to multiples of 32.
        (['--shape', '48', '64', '--image', 'DEMO'], 'pads 48 x 64 images to 64 x 64'),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(tool, tmp_path, capsys, argv, message):
    args = [DET_CONFIG, '--shape', '32', '32', '--out', str(tmp_path / 'x.onnx')]
    for item in argv:
        if item.startswith('CHECKPOINT='):
            args.insert(1, str(tmp_path / item.split('=', 1)[1]))
            message = message.replace('missing.pth', str(tmp_path / 'missing.pth'))
        elif item == 'DEMO':
            args.append(str(write_demo_image(tmp_path / 'demo.png')))
        else:
            args.append(item)
    with pytest.raises(SystemExit) as exit_info:
        tool.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'x.onnx').exists()


def test_missing_config_and_models_that_cannot_be_exported(
    tool, tmp_path, capsys, backbone_only_config
):
    out = str(tmp_path / 'x.onnx')
    cases = [
        (['nowhere.py', '--shape', '32', '32'], 'config nowhere.py: no such file'),
        ([backbone_only_config, '--shape', '32', '32'], 'cannot be exported whole'),
        (
            [backbone_only_config, '--shape', '32', '32', '--part', 'backbone'],
            'the model ResNetFDConv has no backbone',
        ),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            tool.main([*argv, '--out', out])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_exporter_failure_exits_one_with_its_message(tool, tmp_path, capsys, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError('Unsupported operator aten::boom\nlong traceback of the exporter')

    monkeypatch.setattr(torch.onnx, 'export', unsupported)
    argv = [DET_CONFIG, '--part', 'backbone', '--shape', '32', '32',
            '--out', str(tmp_path / 'x.onnx')]  # fmt: skip
    assert tool.main(argv) == 1
    assert capsys.readouterr().err.strip() == (
        'export_onnx.py: error: torch.onnx.export of ResNetFDConv (the backbone) failed: '
        'RuntimeError: Unsupported operator aten::boom'
    )


def test_report_says_when_only_the_export_size_is_right():
    from fdconv_mm.deployment import ExportReport

    report = ExportReport(
        path=Path('x.onnx'), part='model', exported='EncoderDecoder.encode_decode',
        input_shape=(1, 3, 64, 64), input_source='random', output_names=['seg_logits'],
        output_shapes=[(1, 4, 64, 64)], differences=[5e-7], tolerance=1e-4,
        dynamic_hw=True, other_inputs=[((1, 3, 96, 96), [4e-2])],
    )  # fmt: skip
    assert not report.passed and report.max_difference == 4e-2
    text = '\n'.join(report.lines())
    assert 'Input (1, 3, 96, 96) (random normal): 4.000e-02' in text
    assert 'right at the export size only' in text
    report.other_inputs = [((1, 3, 96, 96), [3e-6])]
    assert report.passed and 'export size only' not in '\n'.join(report.lines())


def test_dynamic_height_and_width_are_checked_at_other_sizes(tool, tmp_path, capsys, monkeypatch):
    # Plain convs: an FDConv detector's dynamic export takes minutes (docs/deployment.md);
    # a file whose sizes the exporter fixed is refused (the second half).
    out = tmp_path / 'dynamic.onnx'
    argv = [DET_CONFIG, '--shape', '64', '64', '--out', str(out), '--dynamic-hw',
            '--check-shape', '96', '32', '--cfg-options', *PLAIN]  # fmt: skip
    assert tool.main(argv) == 0
    text = capsys.readouterr().out
    assert 'batch fixed, height and width dynamic' in text
    assert re.search(r'Input \(1, 3, 96, 32\) \(random normal\): (\S+, ){4}\S+\n', text)
    assert largest_difference(text) < 1e-4
    assert input_dims(out)[:2] == [1, 3] and all(isinstance(d, str) for d in input_dims(out)[2:])

    from fdconv_mm.deployment import config_export

    monkeypatch.setattr(config_export, 'input_dims', lambda path: [1, 3, 64, 64])
    assert tool.main(argv) == 1
    assert 'the exporter fixed the input of' in capsys.readouterr().err
