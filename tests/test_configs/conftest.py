"""The embedded demo data, tiny, for configs run through mmengine's Runner in the tests."""

from pathlib import Path

import pytest
import torch
from mmengine.registry import DefaultScope

from fdconv_mm.demo import generate_demo_dataset


@pytest.fixture(scope='module')
def demo_data_root(tmp_path_factory) -> Path:
    """``$FDCONV_DATA_ROOT`` for the demo configs: 2 train and 2 val images of the demo data."""
    root = tmp_path_factory.mktemp('data')
    generate_demo_dataset(root / 'demo_shapes', num_train=2, num_val=2)
    return root


@pytest.fixture
def scope_restored():
    """Forget the default scopes a Runner made current, so later tests see the same registries."""
    before = set(DefaultScope._instance_dict)
    yield
    for name in [name for name in DefaultScope._instance_dict if name not in before]:
        del DefaultScope._instance_dict[name]


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, as torchrun sets: on a small shared CPU machine torch's
    default of one per core made an iteration of the demo detector 10 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
