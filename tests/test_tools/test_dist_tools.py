"""tools/dist_train.sh, dist_test.sh and slurm_train.sh; two gloo processes on the CPU."""

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

TOOLS = Path(__file__).resolve().parents[2] / 'tools'


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def fake_command(path: Path) -> None:
    """An executable at ``path`` that prints its own path and arguments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/usr/bin/env bash\necho "$0 $*"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_copy(tmp_path: Path, script: str, args: List[str], env: Dict[str, str], venv: bool):
    """Run a copy of ``tools/<script>`` in a fake repository whose commands only print."""
    repo = tmp_path / 'repo'
    (repo / 'tools').mkdir(parents=True)
    shutil.copy(TOOLS / script, repo / 'tools' / script)
    if venv:
        fake_command(repo / '.venv' / 'bin' / 'python')
    for command in ('python', 'srun'):
        fake_command(tmp_path / 'bin' / command)
    path = f'{tmp_path / "bin"}{os.pathsep}{os.environ["PATH"]}'
    result = subprocess.run(
        ['bash', str(repo / 'tools' / script), *args],
        env={**os.environ, **env, 'PATH': path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return repo, result.stdout.split()


@pytest.mark.slow
def test_two_cpu_processes_train_resume_and_test(det_config, tmp_path, run_tool):
    work_dir = tmp_path / 'work'
    trained = run_tool(
        ['dist_train.sh', det_config, 2, '--work-dir', work_dir], env=dict(PORT=free_port())
    )
    assert trained.returncode == 0, trained.stdout[-3000:]
    assert "rank 0 of 2, 'gloo' backend instead of 'nccl'" in trained.stdout
    log = next(work_dir.glob('*/*.log')).read_text()
    assert "'gloo' backend instead of 'nccl'" in log and 'Iter(train) [2/2]' in log

    more_iterations = ['--resume', '--cfg-options', 'train_cfg.max_iters=3']
    resumed = run_tool(
        ['dist_train.sh', det_config, 2, '--work-dir', work_dir, *more_iterations],
        env=dict(PORT=free_port()),
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert 'resumed epoch: 0, iter: 2' in resumed.stdout
    assert 'Iter(train) [3/3]' in resumed.stdout and 'Iter(train) [1/3]' not in resumed.stdout

    tested = run_tool(
        ['dist_test.sh', det_config, work_dir / 'iter_3.pth', 2, '--work-dir', work_dir],
        env=dict(PORT=free_port()),
    )
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert 'coco/bbox_mAP' in tested.stdout


@pytest.mark.parametrize('venv', [True, False], ids=['repo_venv', 'python_on_path'])
def test_dist_train_runs_torchrun_with_the_multi_node_variables(tmp_path, venv):
    env = dict(NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1', PORT='29600')
    repo, command = run_copy(tmp_path, 'dist_train.sh', ['cfg.py', '8', '--amp'], env, venv)
    python = repo / '.venv' / 'bin' / 'python' if venv else tmp_path / 'bin' / 'python'
    assert command[:3] == [str(python), '-m', 'torch.distributed.run']
    expected = [
        '--nnodes=2',
        '--node_rank=1',
        '--master_addr=10.0.0.1',
        '--nproc_per_node=8',
        '--master_port=29600',
        str(repo / 'tools' / 'train.py'),
    ]
    assert command[3:9] == expected
    assert command[9:] == ['cfg.py', '--launcher', 'pytorch', '--amp']


def test_dist_test_defaults_to_one_local_node(tmp_path, monkeypatch):
    for key in ('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'PORT'):
        monkeypatch.delenv(key, raising=False)
    repo, command = run_copy(
        tmp_path, 'dist_test.sh', ['cfg.py', 'ckpt.pth', '2', '--tta'], {}, venv=True
    )
    assert command[3:9] == [
        '--nnodes=1',
        '--node_rank=0',
        '--master_addr=127.0.0.1',
        '--nproc_per_node=2',
        '--master_port=29500',
        str(repo / 'tools' / 'test.py'),
    ]
    assert command[9:] == ['cfg.py', 'ckpt.pth', '--launcher', 'pytorch', '--tta']


def test_slurm_train_runs_srun_with_one_task_per_gpu(tmp_path):
    env = dict(GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='4', SRUN_ARGS='--qos=high -N 2')
    repo, command = run_copy(
        tmp_path, 'slurm_train.sh', ['gpu', 'fdconv', 'cfg.py', 'work', '--resume'], env, True
    )
    assert command[1:3] == ['-p', 'gpu']
    for flag in (
        '--job-name=fdconv',
        '--gres=gpu:8',
        '--ntasks=16',
        '--ntasks-per-node=8',
        '--cpus-per-task=4',
        '--kill-on-bad-exit=1',
        '--qos=high',
        '-N',
    ):
        assert flag in command
    python = command.index(str(repo / '.venv' / 'bin' / 'python'))
    assert command[python + 1 :] == [
        '-u',
        str(repo / 'tools' / 'train.py'),
        'cfg.py',
        '--work-dir=work',
        '--launcher=slurm',
        '--resume',
    ]


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh', 'slurm_train.sh'])
def test_missing_arguments_print_the_usage(script):
    result = subprocess.run(['bash', str(TOOLS / script)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith('usage:')
