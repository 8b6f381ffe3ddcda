"""Wall-clock time and peak memory of callables, on the CPU or a CUDA device.

Time: the median of ``repeat`` calls after ``warmup`` calls, with ``torch.cuda.synchronize``
around each call on CUDA; callables compared with each other run in alternating rounds
(:func:`measure_interleaved`), so that a machine's slow drifts reach all of them alike.
Memory: the peak of a call, on top of what was alive before it (see
:data:`MEMORY_METHODS`).
"""

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Mapping, Optional

import torch
from torch import Tensor
from torch.autograd import DeviceType

MEMORY_METHODS = {
    'cpu': (
        'CPU peak = bytes alive before the step (parameters, buffers, gradients, optimizer '
        'state, inputs) + the highest running total of the allocations minus frees that '
        'torch.profiler(profile_memory=True) records during one step'
    ),
    'cuda': (
        'CUDA peak = bytes alive before the step (as on the CPU) + '
        'torch.cuda.max_memory_allocated() during one step (after '
        'torch.cuda.reset_peak_memory_stats()) - torch.cuda.memory_allocated() before it'
    ),
}


@dataclass
class Timing:
    """Seconds per call: ``median`` and ``minimum`` of ``samples``."""

    median: float
    minimum: float
    samples: tuple

    @property
    def median_ms(self) -> float:
        return self.median * 1e3


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure_time(
    step: Callable[[], object],
    device: torch.device,
    repeat: int = 10,
    warmup: int = 3,
    setup: Optional[Callable[[], None]] = None,
) -> Timing:
    """Time ``step``; ``setup`` (e.g. dropping gradients) runs untimed before each call."""
    setups = None if setup is None else {'step': setup}
    return measure_interleaved({'step': step}, device, repeat, warmup, setups)['step']


def measure_interleaved(
    steps: Mapping[str, Callable[[], object]],
    device: torch.device,
    repeat: int = 10,
    warmup: int = 3,
    setups: Optional[Mapping[str, Callable[[], None]]] = None,
) -> Dict[str, Timing]:
    """Time several steps in ``warmup + repeat`` rounds of one call each, in alternating
    order (forward in even rounds, backward in odd ones), each ``setups[name]`` untimed
    before its step.

    Returns:
        dict: a :class:`Timing` per name of ``steps``.
    """
    names = list(steps)
    samples: Dict[str, list] = {name: [] for name in names}
    for index in range(warmup + repeat):
        for name in names if index % 2 == 0 else reversed(names):
            if setups is not None and name in setups:
                setups[name]()
            synchronize(device)
            start = time.perf_counter()
            steps[name]()
            synchronize(device)
            if index >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {
        name: Timing(statistics.median(times), min(times), tuple(times))
        for name, times in samples.items()
    }


def tensor_bytes(tensors: Iterable[Optional[Tensor]]) -> int:
    """Bytes of distinct tensor storages among ``tensors`` (None entries are skipped)."""
    seen, total = set(), 0
    for tensor in tensors:
        if tensor is None or not isinstance(tensor, Tensor):
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


def module_state_tensors(
    module: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer] = None
) -> list:
    """Parameters, their gradients, buffers and optimizer state: what a step starts with."""
    tensors = list(module.parameters()) + list(module.buffers())
    tensors += [p.grad for p in module.parameters()]
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, Tensor)]
    return tensors


def _profiled_peak_bytes(step: Callable[[], object]) -> int:
    """Highest net CPU allocation during ``step``, from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [
        event
        for event in prof.profiler.kineto_results.events()
        if event.name() == '[memory]' and event.device_type() == DeviceType.CPU
    ]
    running = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return peak


def measure_peak_memory(
    step: Callable[[], object], device: torch.device, resident: Iterable[Optional[Tensor]] = ()
) -> int:
    """Peak bytes of one call of ``step`` (see :data:`MEMORY_METHODS`).

    Args:
        step: The call to measure.
        device: Where it runs.
        resident: The tensors alive before the step that count in the peak (whatever
            else is alive, e.g. another model being compared, does not).
    """
    if device.type == 'cuda':
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return tensor_bytes(resident) + torch.cuda.max_memory_allocated(device) - before
    return tensor_bytes(resident) + _profiled_peak_bytes(step)
