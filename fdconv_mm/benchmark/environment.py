"""The machine a benchmark ran on: CPU model, cores, threads, load, library versions."""

import os
import platform
from typing import Any, Dict

import torch


def cpu_model_name() -> str:
    """``lscpu``'s model name, from ``/proc/cpuinfo`` on Linux."""
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def load_average() -> float:
    """The 1-minute load average (0.0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def machine_info(device: torch.device) -> Dict[str, Any]:
    info: Dict[str, Any] = dict(
        cpu=cpu_model_name(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        device=str(device),
        load_average_1min=load_average(),
    )
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
    return info


def describe(info: Dict[str, Any]) -> str:
    """One line: CPU, cores, threads, torch version, device, load at the start."""
    text = (
        f"{info['cpu']}, {info['cpu_count']} cores, {info['torch_threads']} torch threads, "
        f"torch {info['torch']}, device {info['device']}"
    )
    if 'gpu' in info:
        text += f" ({info['gpu']}, CUDA {info['cuda']})"
    return text + f", 1-min load at start {info['load_average_1min']:.2f}"
