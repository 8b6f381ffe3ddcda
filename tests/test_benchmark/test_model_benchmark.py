import os.path as osp
from pathlib import Path

import pytest
import torch

from fdconv_mm.benchmark.model_benchmark import (
    MODEL_PAIRS,
    benchmark_models,
    build_model,
    config_path,
    random_batch,
)


def test_config_paths_exist():
    for pair in MODEL_PAIRS:
        assert osp.isfile(config_path(pair.fdconv_config))
        assert osp.isfile(config_path(pair.baseline_config))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_random_batch_has_the_requested_images(scope):
    batch = random_batch(scope, 2, 32)
    assert [tuple(image.shape) for image in batch['inputs']] == [(3, 32, 32)] * 2
    assert all(image.dtype == torch.uint8 for image in batch['inputs'])
    assert len(batch['data_samples']) == 2


def test_options_change_the_fdconv_config_before_it_is_built():
    config = MODEL_PAIRS[0].fdconv_config
    default, _ = build_model(config, 64)
    changed, scope = build_model(config, 64, {'model.backbone.need_grad_list': []})
    assert scope == 'mmdet'

    def trainable_in_layer1(model):
        return [n for n, p in model.backbone.layer1.named_parameters() if p.requires_grad]

    assert trainable_in_layer1(default) and not trainable_in_layer1(changed)


@pytest.mark.slow  # builds and trains four ResNet-50 models once each (about 30 s)
def test_benchmark_models_runs_both_pairs_at_a_tiny_size():
    results = benchmark_models(torch.device('cpu'), repeat=1, warmup=0, image_size=64)
    assert [r['model'] for r in results] == [p.name for p in MODEL_PAIRS]
    for row in results:
        assert row['image_size'] == 64
        assert row['FDConv_params_m'] > row['baseline_params_m']
        for metric in ('train_ms', 'infer_ms', 'train_peak_mb'):
            assert row[f'FDConv_{metric}'] > 0 and row[f'{metric}_ratio'] > 0


def test_tool_offers_every_model_choice():
    from fdconv_mm.benchmark.model_benchmark import DEFAULT_MODELS, MODEL_CHOICES

    tool = (Path(__file__).parents[2] / 'tools' / 'benchmark.py').read_text()
    names = tool.split('MODEL_NAMES = ', 1)[1].split('\n', 1)[0]
    assert eval(names) == tuple(MODEL_CHOICES)
    assert MODEL_PAIRS == tuple(MODEL_CHOICES[key] for key in DEFAULT_MODELS)
    for pair in MODEL_CHOICES.values():
        assert osp.isfile(config_path(pair.fdconv_config))
        assert osp.isfile(config_path(pair.baseline_config))


@pytest.mark.parametrize('key', ['resnet50', 'swin_t'])
def test_backbone_pairs_train_and_infer(key):
    from fdconv_mm.benchmark.model_benchmark import MODEL_CHOICES

    (row,) = benchmark_models(
        torch.device('cpu'), [MODEL_CHOICES[key]], repeat=1, warmup=0, image_size=32
    )
    assert row['part'] == 'backbone' and not row['compiled']
    assert row['FDConv_params_m'] > row['baseline_params_m']
    for metric in ('train_ms', 'infer_ms', 'train_peak_mb'):
        assert row[f'FDConv_{metric}'] > 0 and row[f'baseline_{metric}'] > 0
