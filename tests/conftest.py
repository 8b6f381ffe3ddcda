from pathlib import Path

import pytest
import torch

DATA_DIR = Path(__file__).parent / 'data'


def randomize_attention(module: torch.nn.Module, seed: int = 0) -> None:
    """Move every attention head of an FDConv far from its neutral init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if 'KSM' in name or 'FBM' in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


@pytest.fixture
def randomize():
    return randomize_attention


@pytest.fixture(scope='session')
def reference_cases():
    return torch.load(DATA_DIR / 'fdconv_reference_public.pt', weights_only=False)
