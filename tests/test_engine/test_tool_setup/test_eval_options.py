"""--show/--show-dir, --tta and --out as mmdet's and mmseg's own test tools apply them."""

import pytest
from mmengine.config import Config

from fdconv_mm.engine import (
    dump_predictions,
    enable_tta,
    enable_visualization,
    register_scope_modules,
)

DET = """
_base_ = 'mmdet::_base_/default_runtime.py'
model = dict(type='RetinaNet')
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackDetInputs')]
test_dataloader = dict(
    dataset=dict(type='RepeatDataset', times=2,
                 dataset=dict(type='CocoDataset', pipeline=test_pipeline)))
test_evaluator = dict(type='CocoMetric', metric='bbox')
"""
SEG = """
_base_ = 'mmseg::_base_/default_runtime.py'
model = dict(type='EncoderDecoder')
test_dataloader = dict(dataset=dict(type='BaseSegDataset', pipeline=[]))
test_evaluator = dict(type='IoUMetric')
default_hooks = dict(visualization=dict(type='SegVisualizationHook'))
"""


def scoped_config(path, text: str) -> Config:
    """The config ``text`` written to ``path`` and loaded, its scope's modules registered."""
    path.write_text(text)
    cfg = Config.fromfile(path)
    register_scope_modules(cfg)
    return cfg


@pytest.fixture
def det_cfg(tmp_path) -> Config:
    return scoped_config(tmp_path / 'det.py', DET)


@pytest.fixture
def seg_cfg(tmp_path) -> Config:
    return scoped_config(tmp_path / 'seg.py', SEG)


def test_det_show_dir_goes_to_the_hooks_test_out_dir(det_cfg):
    enable_visualization(det_cfg, show=True, show_dir='painted', wait_time=0.5)
    hook = det_cfg.default_hooks.visualization
    assert hook.type == 'DetVisualizationHook'
    assert (hook.draw, hook.show, hook.wait_time, hook.test_out_dir) == (True, True, 0.5, 'painted')


def test_seg_show_dir_goes_to_the_visualizers_save_dir(seg_cfg):
    enable_visualization(seg_cfg, show_dir='painted')
    hook = seg_cfg.default_hooks.visualization
    assert hook.draw is True and 'test_out_dir' not in hook and 'show' not in hook
    assert seg_cfg.visualizer.save_dir == 'painted'


def test_show_needs_a_visualization_hook(det_cfg):
    del det_cfg.default_hooks['visualization']
    with pytest.raises(ValueError, match='default_hooks.visualization'):
        enable_visualization(det_cfg, show=True)


def test_det_tta_defaults_to_flips(det_cfg):
    with pytest.warns(UserWarning) as warned:
        enable_tta(det_cfg)
    assert ['no tta_model' in str(w.message) for w in warned] == [True, False]
    assert det_cfg.model.type == 'DetTTAModel' and det_cfg.model.module.type == 'RetinaNet'
    inner = det_cfg.test_dataloader.dataset.dataset
    assert inner.pipeline[0].type == 'LoadImageFromFile'
    flips, packs = inner.pipeline[-1].transforms
    assert [flip['prob'] for flip in flips] == [1.0, 0.0]
    assert 'flip_direction' in packs[0]['meta_keys']


def test_seg_tta_needs_a_tta_pipeline(seg_cfg):
    with pytest.raises(ValueError, match='--tta needs tta_pipeline'):
        enable_tta(seg_cfg)
    seg_cfg.tta_pipeline = [dict(type='LoadImageFromFile'), dict(type='TestTimeAug')]
    enable_tta(seg_cfg)
    assert seg_cfg.model.type == 'SegTTAModel' and seg_cfg.model.module.type == 'EncoderDecoder'
    assert seg_cfg.test_dataloader.dataset.pipeline[-1].type == 'TestTimeAug'


def test_det_out_adds_a_dump_metric(det_cfg):
    dump_predictions(det_cfg, 'results.pkl')
    assert det_cfg.test_evaluator == [
        dict(type='CocoMetric', metric='bbox'),
        dict(type='DumpDetResults', out_file_path='results.pkl'),
    ]


def test_det_out_extends_an_evaluator_with_metrics(det_cfg):
    det_cfg.test_evaluator = dict(type='Evaluator', metrics=dict(type='CocoMetric'))
    dump_predictions(det_cfg, 'results.pickle')
    assert [metric['type'] for metric in det_cfg.test_evaluator.metrics] == [
        'CocoMetric',
        'DumpDetResults',
    ]


def test_det_out_must_be_a_pickle(det_cfg):
    with pytest.raises(ValueError, match='--out must be a .pkl/.pickle file'):
        dump_predictions(det_cfg, 'results.json')


def test_seg_out_is_the_metrics_output_dir(seg_cfg):
    dump_predictions(seg_cfg, 'predictions')
    assert seg_cfg.test_evaluator == dict(
        type='IoUMetric', output_dir='predictions', keep_results=True
    )
