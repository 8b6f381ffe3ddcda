from pathlib import Path

import pytest
import torch

from fdconv_testing import randomize_attention

DATA_DIR = Path(__file__).parent / 'data'
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')


def pytest_configure(config):
    config.addinivalue_line('markers', 'cuda: runs on a CUDA device (tools/gpu_check.sh: -m cuda)')


@pytest.fixture
def randomize():
    """:func:`fdconv_testing.randomize_attention`: ``randomize(module, seed=0)``."""
    return randomize_attention


@pytest.fixture(scope='session')
def reference_cases():
    return torch.load(DATA_DIR / 'fdconv_reference_public.pt', weights_only=False)


@pytest.fixture(params=['cpu', pytest.param('cuda', marks=[pytest.mark.cuda, NO_CUDA])])
def device(request):
    """Each device a test runs on: the CPU always, CUDA when present (skipped otherwise).

    On CUDA, TF32 is off for the test (restored after it), so that float32 is float32 there
    as on the CPU and the tolerances stay those of float32.
    """
    if request.param == 'cpu':
        yield torch.device('cpu')
        return
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield torch.device('cuda')
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@pytest.fixture(
    params=[
        ('cpu', torch.bfloat16),
        pytest.param(('cuda', torch.bfloat16), marks=[pytest.mark.cuda, NO_CUDA]),
        pytest.param(('cuda', torch.float16), marks=[pytest.mark.cuda, NO_CUDA]),
    ],
    ids=['cpu-bf16', 'cuda-bf16', 'cuda-fp16'],
)
def autocast_device(request):
    """(device, autocast dtype): bf16 on the CPU, bf16 and fp16 on CUDA when present."""
    name, dtype = request.param
    return torch.device(name), dtype


@pytest.fixture(scope='module')
def demo_data_root(tmp_path_factory) -> Path:
    """``$FDCONV_DATA_ROOT`` for the demo configs: 2 train and 2 val images of the demo data."""
    from fdconv_mm.demo import generate_demo_dataset

    root = tmp_path_factory.mktemp('data')
    generate_demo_dataset(root / 'demo_shapes', num_train=2, num_val=2)
    return root


@pytest.fixture
def in_process_runner():
    """For a Runner (or a tool) run in this process: one intra-op thread, as torchrun sets (on
    a small shared CPU machine torch's default of one per core made an iteration of the demo
    detector 10 times slower), and the default scopes its Runner made current forgotten
    afterwards, so that later tests see the same registries."""
    from mmengine.registry import DefaultScope

    threads, scopes = torch.get_num_threads(), set(DefaultScope._instance_dict)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for name in [name for name in DefaultScope._instance_dict if name not in scopes]:
        del DefaultScope._instance_dict[name]
