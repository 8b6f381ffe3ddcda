"""The original implementation's outputs and gradients (tests/data/README-reference.md)."""

import pytest
import torch

from fdconv_mm import FDConv
from fdconv_testing import relative_error

TOLERANCE = 1e-4
CASE_NAMES = ['k3_c64_s1', 'k1_c128to64']


@pytest.fixture(params=CASE_NAMES)
def case(request, reference_cases):
    return next(c for c in reference_cases if c['name'] == request.param)


def build(case, **options) -> FDConv:
    conv = FDConv(**case['conv'], **case['fdconv_kwargs'], **options)
    conv.load_state_dict(case['state_dict'], strict=True)
    return conv


def test_cases_are_all_covered(reference_cases):
    assert sorted(c['name'] for c in reference_cases) == sorted(CASE_NAMES)


def test_layout(case):
    conv = build(case)
    assert conv.fdconv_active == case['uses_fdconv']
    assert (conv.FBM is not None) == case['has_fbm']
    assert set(conv.state_dict()) == set(case['state_dict'])


def test_eval_output(case):
    conv = build(case).eval()
    with torch.no_grad():
        assert relative_error(conv(case['x']), case['y_eval']) < TOLERANCE


def test_train_output_and_gradients(case):
    conv = build(case).train()
    x = case['x'].clone().requires_grad_()
    y = conv(x)
    assert relative_error(y, case['y_train']) < TOLERANCE
    (y * case['grad_seed_r']).sum().backward()
    assert relative_error(x.grad, case['x_grad']) < TOLERANCE
    params = dict(conv.named_parameters())
    assert set(params) == set(case['param_grads'])
    for name, expected in case['param_grads'].items():
        assert relative_error(params[name].grad, expected) < TOLERANCE, name


def test_stable_order_misses_the_original_groups(case):
    """The vectors follow the original's unstable sort: a stable sort of the same radii moves
    tied positions into neighbouring groups, beyond the tolerance."""
    conv = build(case, frequency_order='stable').eval()
    with torch.no_grad():
        assert relative_error(conv(case['x']), case['y_eval']) > 10 * TOLERANCE
