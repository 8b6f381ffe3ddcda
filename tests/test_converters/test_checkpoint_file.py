"""load_checkpoint_file and tools/convert_weights.py: a file that is no checkpoint, in one line."""

import argparse
import importlib.util
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from fdconv_mm.converters import CheckpointFileError, load_checkpoint_file

ROOT = Path(__file__).parents[2]
TOOL = ROOT / 'tools' / 'convert_weights.py'
EXPECTED = "expected a state dict or a checkpoint dict with 'state_dict'/'model'"


def write_text(path):
    path.write_text('hello, not weights\n')


def write_list(path):
    torch.save([1, 2, 3], path)


def write_truncated(path):
    torch.save({'w': torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:100])


def write_namespace(path):
    torch.save({'state_dict': {}, 'args': argparse.Namespace(lr=0.1)}, path)


@pytest.mark.parametrize(
    'write, message',
    [
        (write_text, '{} is not a PyTorch checkpoint (torch.load: KeyError: 101)'),
        (write_list, '{} holds a list; ' + EXPECTED),
        (
            write_truncated,
            '{} is not a PyTorch checkpoint (torch.load: RuntimeError: PytorchStreamReader '
            'failed reading zip archive: failed finding central directory)',
        ),
        (
            write_namespace,
            '{} holds objects besides tensors (argparse.Namespace) that torch.load refuses with '
            'weights_only=True; if you trust the file, pass --unsafe-load',
        ),
    ],
    ids=['text', 'list', 'truncated', 'namespace'],
)
def test_what_is_wrong_with_the_file_in_one_line(tmp_path, write, message):
    path = tmp_path / 't.pth'
    write(path)
    with pytest.raises(CheckpointFileError) as raised:
        load_checkpoint_file(path)
    assert str(raised.value) == message.format(path)


def test_unreadable_paths_are_named(tmp_path):
    with pytest.raises(CheckpointFileError, match=r'cannot read .*missing.pth: No such file'):
        load_checkpoint_file(tmp_path / 'missing.pth')
    with pytest.raises(CheckpointFileError, match='cannot read .*: Is a directory'):
        load_checkpoint_file(tmp_path)


def test_state_dicts_and_trusted_objects_load(tmp_path):
    path = tmp_path / 'ok.pth'
    torch.save(OrderedDict(w=torch.ones(2)), path)
    assert list(load_checkpoint_file(path)) == ['w']
    write_namespace(path)
    assert load_checkpoint_file(path, unsafe_load=True)['args'].lr == 0.1
    write_list(path)
    with pytest.raises(CheckpointFileError, match='holds a list'):
        load_checkpoint_file(path, unsafe_load=True)


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('convert_weights', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('write', [write_text, write_list], ids=['text', 'list'])
def test_the_tool_exits_with_the_message(tool, tmp_path, write):
    source = tmp_path / 'x.pth'
    write(source)
    argv = ['--model_type', 'resnet', '--weight_path', str(source), '--save_path', 'never.pth']
    with pytest.raises(SystemExit) as raised:
        tool.main(argv)
    message = raised.value.code  # sys.exit(text): printed to stderr, exit status 1
    assert isinstance(message, str) and message.startswith(f'error: {source} ')
    assert '\n' not in message
    assert not (tmp_path / 'never.pth').exists()


def test_the_tool_prints_one_line_and_no_traceback(tmp_path):
    source = tmp_path / 'x.pth'
    write_list(source)
    flags = ['--model_type', 'resnet', '--weight_path', source, '--save_path', tmp_path / 'y']
    result = subprocess.run(
        [sys.executable, str(TOOL), *map(str, flags)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f'error: {source} holds a list; {EXPECTED}']
