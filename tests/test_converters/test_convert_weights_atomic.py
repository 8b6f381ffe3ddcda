"""tools/convert_weights.py writes --save_path whole or not at all."""

import importlib.util
import io
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]


def small_resnet_state():
    return {
        'conv1.weight': torch.randn(64, 3, 7, 7),
        'layer1.0.conv1.weight': torch.randn(64, 64, 1, 1),
        'layer1.0.conv2.weight': torch.randn(64, 64, 3, 3),
        'fc.weight': torch.randn(10, 2048),
    }


def test_interrupted_conversion_leaves_no_partial_file(tmp_path, monkeypatch):
    """Ctrl-C while the tool writes: no truncated --save_path, so the rerun is not refused."""
    spec = importlib.util.spec_from_file_location(
        'convert_weights', ROOT / 'tools' / 'convert_weights.py'
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    source, target = tmp_path / 'plain.pth', tmp_path / 'fdconv.pth'
    torch.save({'state_dict': small_resnet_state()}, source)
    flags = ['--model_type', 'resnet', '--weight_path', str(source), '--save_path', str(target)]
    real_save = torch.save

    def save_half_then_interrupt(obj, path):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        with open(path, 'wb') as file:
            file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', save_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        tool.main(flags)
    assert sorted(os.listdir(tmp_path)) == ['plain.pth']
    monkeypatch.undo()
    assert tool.main(flags) == 0
    assert 'layer1.0.conv2.dft_weight' in torch.load(target, weights_only=True)['state_dict']
