"""prepare_distributed: launchers on CPUs with gloo, untouched on GPUs and single processes."""

import socket
import weakref

import pytest
import torch.distributed as torch_dist
from mmengine.config import Config

from fdconv_mm.engine.compat import destroy_process_group, prepare_distributed
from fdconv_mm.engine.compat import mmengine_0_10_cpu_launchers as distributed
from fdconv_mm.engine.compat.mmengine_0_10_cpu_launchers import cpu_model_wrapper_cfg, launcher_env

ENV_KEYS = ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'LOCAL_RANK', 'WORLD_SIZE')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def nccl_config(**options) -> Config:
    return Config(
        dict(default_scope='mmdet', env_cfg=dict(dist_cfg=dict(backend='nccl')), **options)
    )


@pytest.fixture
def clean_env(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_single_process_is_left_alone():
    cfg = nccl_config(launcher='none')
    assert prepare_distributed(cfg) == []
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg


def test_gpus_keep_nccl_and_mmengine_init(monkeypatch):
    monkeypatch.setattr(distributed, 'get_device', lambda: 'cuda')
    cfg = nccl_config(launcher='pytorch')
    assert prepare_distributed(cfg) == []
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg


def test_unknown_launcher_is_refused():
    with pytest.raises(ValueError, match="launcher must be one of .* got 'torchrun'"):
        prepare_distributed(nccl_config(launcher='torchrun'))


def test_cpu_wrapper_keeps_mmengine_defaults_without_device_ids():
    wrapper = cpu_model_wrapper_cfg(nccl_config(find_unused_parameters=True))
    assert wrapper == dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=True,
        device_ids=None,
    )


def test_cpu_wrapper_keeps_the_configs_wrapper():
    cfg = nccl_config(model_wrapper_cfg=dict(type='MMDistributedDataParallel', static_graph=1))
    assert cpu_model_wrapper_cfg(cfg)['static_graph'] == 1
    cfg = nccl_config(model_wrapper_cfg=dict(type='MMFullyShardedDataParallel'))
    assert 'device_ids' not in cpu_model_wrapper_cfg(cfg)


def test_pytorch_launcher_env_is_torchruns(clean_env):
    clean_env.setenv('RANK', '3')
    clean_env.setenv('WORLD_SIZE', '4')
    assert launcher_env('pytorch') == (3, 4, {})


def test_slurm_launcher_env(clean_env):
    for key, value in dict(
        SLURM_PROCID='5', SLURM_NTASKS='8', SLURM_NODELIST='node[1-2]', SLURM_LOCALID='1'
    ).items():
        clean_env.setenv(key, value)
    clean_env.setattr(distributed.subprocess, 'getoutput', lambda command: 'node1')
    rank, world_size, env = launcher_env('slurm', port=29600)
    assert (rank, world_size) == (5, 8)
    assert env == dict(
        MASTER_PORT='29600', MASTER_ADDR='node1', WORLD_SIZE='8', RANK='5', LOCAL_RANK='1'
    )


def test_mpi_launcher_needs_master_addr(clean_env):
    clean_env.setenv('OMPI_COMM_WORLD_RANK', '1')
    clean_env.setenv('OMPI_COMM_WORLD_SIZE', '2')
    with pytest.raises(KeyError, match='MASTER_ADDR'):
        launcher_env('mpi')
    clean_env.setenv('MASTER_ADDR', 'host0')
    assert launcher_env('mpi')[:2] == (1, 2)


def test_cpu_pytorch_launch_uses_gloo_and_its_own_process_group(clean_env):
    """One process of a torchrun world of 1: the group mmengine could not create on CPUs."""
    clean_env.setenv('MASTER_ADDR', '127.0.0.1')
    clean_env.setenv('MASTER_PORT', str(free_port()))
    clean_env.setenv('RANK', '0')
    clean_env.setenv('LOCAL_RANK', '0')
    clean_env.setenv('WORLD_SIZE', '1')
    cfg = nccl_config(launcher='pytorch')
    cfg.env_cfg.dist_cfg.timeout = 60
    try:
        notes = prepare_distributed(cfg)
        assert torch_dist.is_initialized() and torch_dist.get_backend() == 'gloo'
    finally:
        destroy_process_group()
    assert not torch_dist.is_initialized()
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert "rank 0 of 1, 'gloo' backend instead of 'nccl'" in notes[0]


def test_sync_bn_on_cpu_is_explained_before_the_runner_fails(clean_env):
    said = []
    clean_env.setattr(distributed, 'print_log', lambda message, **kwargs: said.append(message))
    clean_env.setattr(distributed, 'is_distributed', lambda: True)  # no group created
    clean_env.setattr(distributed.torch_dist, 'get_rank', lambda: 0)
    clean_env.setattr(distributed.torch_dist, 'get_world_size', lambda: 2)
    prepare_distributed(nccl_config(launcher='pytorch', sync_bn='torch'))
    assert len(said) == 1 and 'SyncBatchNorm layers only work with GPU modules' in said[0]


def test_group_outlives_no_garbage_that_holds_it(monkeypatch):
    """A finished Runner (its DDP wrapper holds the group) left in a reference cycle is
    freed before the group is destroyed, not at the interpreter's exit."""

    class Holder:
        pass

    holder = Holder()
    holder.itself = holder
    alive = weakref.ref(holder)
    del holder
    alive_at_destroy = []
    monkeypatch.setattr(distributed, 'is_distributed', lambda: True)
    monkeypatch.setattr(distributed.torch_dist, 'barrier', lambda: None)
    monkeypatch.setattr(
        distributed.torch_dist,
        'destroy_process_group',
        lambda: alive_at_destroy.append(alive() is not None),
    )
    destroy_process_group()
    assert alive_at_destroy == [False]
