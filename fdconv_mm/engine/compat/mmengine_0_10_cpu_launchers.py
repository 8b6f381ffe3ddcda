"""Compatibility of mmengine 0.10.7's launchers with machines without an accelerator (gloo).

mmengine 0.10.7 cannot run its ``pytorch``, ``slurm`` or ``mpi`` launchers on a CPU-only
machine: ``init_dist`` calls ``torch.cuda.set_device`` before creating the process group
(an ``AttributeError`` on a CPU build of torch, a ``RuntimeError`` on a CUDA build without a
GPU), and ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to
``DistributedDataParallel``, which DDP refuses for a module on the CPU.
:func:`prepare_distributed` works around both before the Runner is built, changing nothing
when mmengine finds an accelerator: NCCL stays the default on GPUs.
"""

import datetime
import gc
import logging
import os
import subprocess
from typing import Any, Dict, List, Mapping, Tuple

import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.device import get_device
from mmengine.dist import is_distributed
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
CPU_BACKEND = 'gloo'
DEFAULT_MASTER_PORT = '29500'
SYNC_BN_ON_CPU = {
    'torch': "sync_bn='torch' on CPUs: DDP refuses torch's SyncBatchNorm in a CPU module "
    "('SyncBatchNorm layers only work with GPU modules'), for training and testing alike.",
    'mmcv': "sync_bn='mmcv' on CPUs: mmcv's SyncBatchNorm has no CPU kernel, training fails at "
    'its first iteration; testing works (it normalizes with the running statistics).',
}


def launcher_env(launcher: str, port: Any = None) -> Tuple[int, int, Dict[str, str]]:
    """Rank, world size and the ``env://`` variables a launcher's processes need.

    Mirrors mmengine 0.10.7's ``_init_dist_pytorch``, ``_init_dist_slurm`` and
    ``_init_dist_mpi`` without their ``torch.cuda.set_device`` calls.

    Args:
        launcher (str): 'pytorch' (torchrun), 'slurm' (srun) or 'mpi' (mpirun).
        port (Any): Master port for 'slurm'; ``MASTER_PORT`` or 29500 when None.
            Defaults to None.

    Returns:
        tuple: ``(rank, world_size, env)``; ``env`` holds the variables to set
        (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``).
    """
    env: Dict[str, str] = {}
    if launcher == 'pytorch':
        return int(os.environ['RANK']), int(os.environ['WORLD_SIZE']), env
    if launcher == 'slurm':
        rank = int(os.environ['SLURM_PROCID'])
        world_size = int(os.environ['SLURM_NTASKS'])
        if port is not None:
            env['MASTER_PORT'] = str(port)
        elif 'MASTER_PORT' not in os.environ:
            env['MASTER_PORT'] = DEFAULT_MASTER_PORT
        if 'MASTER_ADDR' not in os.environ:
            node_list = os.environ['SLURM_NODELIST']
            env['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {node_list} | head -n1'
            )
        env.update(
            WORLD_SIZE=str(world_size),
            RANK=str(rank),
            LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'),
        )
        return rank, world_size, env
    if launcher == 'mpi':
        if 'MASTER_ADDR' not in os.environ:
            raise KeyError('The environment variable MASTER_ADDR is not set (needed by mpi)')
        rank = int(os.environ['OMPI_COMM_WORLD_RANK'])
        world_size = int(os.environ['OMPI_COMM_WORLD_SIZE'])
        if 'MASTER_PORT' not in os.environ:
            env['MASTER_PORT'] = DEFAULT_MASTER_PORT
        env.update(
            WORLD_SIZE=str(world_size),
            RANK=str(rank),
            LOCAL_RANK=os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0'),
        )
        return rank, world_size, env
    raise ValueError(f"launcher must be one of {LAUNCHERS[1:]}, got '{launcher}'")


def init_cpu_process_group(launcher: str, dist_cfg: Mapping[str, Any]) -> None:
    """Create the default process group for ``launcher`` without touching CUDA.

    Args:
        launcher (str): 'pytorch', 'slurm' or 'mpi'.
        dist_cfg (Mapping): ``env_cfg.dist_cfg`` of the config: ``backend``, ``timeout`` in
            seconds, ``port`` (slurm) and any other ``init_process_group`` keyword.
    """
    kwargs = dict(dist_cfg)
    backend = kwargs.pop('backend', CPU_BACKEND)
    port = kwargs.pop('port', None)
    kwargs.pop('init_backend', None)
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    rank, world_size, env = launcher_env(launcher, port)
    os.environ.update(env)
    torch_dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)


def cpu_model_wrapper_cfg(cfg: Config) -> Dict[str, Any]:
    """``model_wrapper_cfg`` that gives DDP ``device_ids=None``, as a CPU module needs.

    Keeps the config's wrapper (or mmengine's default ``MMDistributedDataParallel`` with
    ``broadcast_buffers=False`` and the config's ``find_unused_parameters``); Runner's
    ``device_ids=[LOCAL_RANK]`` is a default argument, so the explicit None wins.

    Args:
        cfg (Config): The full config.

    Returns:
        dict: The wrapper config to set as ``cfg.model_wrapper_cfg``.
    """
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        wrapper = dict(
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
        )
    wrapper = dict(wrapper)
    wrapper.setdefault('type', MMDistributedDataParallel.__name__)
    wrapper_type = wrapper['type']
    if isinstance(wrapper_type, str):
        with MODEL_WRAPPERS.switch_scope_and_registry(cfg.get('default_scope')) as registry:
            wrapper_type = registry.get(wrapper_type)
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
        wrapper['device_ids'] = None
    return wrapper


def destroy_process_group() -> None:
    """Destroy the default process group, if any, before the process exits.

    mmengine 0.10.7 never does; with torch 2.13 and gloo, a process that exits with its
    group alive can abort (``terminate called without an active exception``, SIGABRT), and
    torchrun then reports the whole run as failed although training finished. The group
    also stays alive while anything holds it: the Runner's DDP wrapper does, and a finished
    Runner sits in reference cycles until the garbage collector runs, which may be only
    at the interpreter's exit; so the garbage is collected first.
    """
    if is_distributed():
        gc.collect()
        # Every rank reaches this point before any tears its group down: a rank that
        # leaves while another still talks to it is what aborts.
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def prepare_distributed(cfg: Config) -> List[str]:
    """Make ``cfg.launcher`` work on a machine where mmengine finds no accelerator.

    With an accelerator, or ``launcher='none'``, nothing changes. Otherwise: an NCCL backend
    (mmdet's and mmseg's default) becomes gloo, DDP gets ``device_ids=None``, and the process
    group is created here, so that the Runner skips mmengine's ``init_dist``.

    Args:
        cfg (Config): The full config; ``env_cfg`` and ``model_wrapper_cfg`` are updated.

    Returns:
        list[str]: What was changed, for the Runner's log.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got '{launcher}'")
    if launcher == 'none' or get_device() != 'cpu':
        return []
    sync_bn = cfg.get('sync_bn')
    if sync_bn in SYNC_BN_ON_CPU:
        # Said now: with 'torch' the Runner's DDP wrapping fails before any log is written.
        print_log(SYNC_BN_ON_CPU[sync_bn], logger='current', level=logging.WARNING)
    env_cfg = cfg.get('env_cfg') or ConfigDict()
    dist_cfg = ConfigDict(env_cfg.get('dist_cfg') or {})
    backend = dist_cfg.get('backend', 'nccl')
    if backend == 'nccl':
        dist_cfg.backend = CPU_BACKEND
        backend_note = f"'{CPU_BACKEND}' backend instead of 'nccl'"
    else:
        backend_note = f"'{backend}' backend"
    env_cfg.dist_cfg = dist_cfg
    cfg.env_cfg = env_cfg
    cfg.model_wrapper_cfg = cpu_model_wrapper_cfg(cfg)
    if not is_distributed():
        init_cpu_process_group(launcher, dist_cfg)
    return [
        f'No CUDA device: {launcher} launcher on CPUs, rank {torch_dist.get_rank()} of '
        f'{torch_dist.get_world_size()}, {backend_note}, DDP with device_ids=None '
        '(env_cfg.dist_cfg.backend chooses the backend).'
    ]
