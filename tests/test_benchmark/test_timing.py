import torch

from fdconv_mm.benchmark import measure_peak_memory, measure_time
from fdconv_mm.benchmark.timing import measure_interleaved, tensor_bytes

CPU = torch.device('cpu')


def test_measure_time_runs_warmup_and_repeats_with_setup():
    calls = []
    timing = measure_time(
        lambda: calls.append('step'), CPU, repeat=4, warmup=2, setup=lambda: calls.append('setup')
    )
    assert calls == ['setup', 'step'] * 6
    assert len(timing.samples) == 4 and 0 <= timing.minimum <= timing.median
    assert timing.median_ms == timing.median * 1e3


def test_interleaved_steps_alternate_their_order_round_by_round():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in 'ab'}
    timings = measure_interleaved(
        steps, CPU, repeat=3, warmup=1, setups={'b': lambda: calls.append('setup b')}
    )
    assert calls == ['a', 'setup b', 'b', 'setup b', 'b', 'a'] * 2
    assert [len(timings[name].samples) for name in 'ab'] == [3, 3]


def test_cpu_peak_counts_the_step_and_the_resident_tensors():
    resident = torch.zeros(2**18)  # 1 MiB

    def step():
        first = torch.ones(2**20)  # 4 MiB
        second = torch.ones(2**19)  # 2 MiB, alive with the first
        del first, second
        torch.ones(2**18)  # 1 MiB after both were freed

    peak = measure_peak_memory(step, CPU, [resident])
    assert 7 * 2**20 <= peak < 8 * 2**20


def test_tensor_bytes_counts_shared_storage_once():
    base = torch.zeros(100)
    assert tensor_bytes([base, base[10:], base.view(10, 10), None]) == 400
