"""Checkpoints saved by tools/train.py, used through mmdet's and mmseg's own APIs and tools.

Each API runs in a fresh Python process that imports only mmdet or mmseg: ``fdconv_mm`` comes
in through the config's ``custom_imports``, as in a user's project. Also: tools/test.py
refuses a checkpoint that does not fit the model unless ``--allow-partial-load``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

pytestmark = pytest.mark.slow

RESULTS = 'RESULTS '

# Runs one API after the other; each reports 'ok ...' or its error; the last line, after
# RESULTS, holds all.
API_SCRIPT = """
import json, sys, traceback
import torch
config, checkpoint, image, work_dir = sys.argv[1:5]
results = {}

def loaded_exactly(model):
    saved = torch.load(checkpoint, weights_only=False)['state_dict']
    state = model.state_dict()
    return all(torch.equal(state[key], value) for key, value in saved.items())

def init_detector_and_inference_detector():
    from mmdet.apis import inference_detector, init_detector
    model = init_detector(config, checkpoint, device='cpu')
    boxes = inference_detector(model, image).pred_instances.bboxes
    return f'ok {tuple(boxes.shape)} exact={loaded_exactly(model)}'

def det_inferencer():
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=config, weights=checkpoint, device='cpu')
    prediction = inferencer(image, out_dir=work_dir)['predictions'][0]
    return f'ok {len(prediction["bboxes"])} exact={loaded_exactly(inferencer.model)}'

def init_model_and_inference_model():
    from mmseg.apis import inference_model, init_model
    model = init_model(config, checkpoint, device='cpu')
    labels = inference_model(model, image).pred_sem_seg.data
    return f'ok {tuple(labels.shape)} exact={loaded_exactly(model)}'

def mmseg_inferencer():
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(model=config, weights=checkpoint, device='cpu')
    labels = inferencer(image)['predictions']
    return f'ok {tuple(labels.shape)} exact={loaded_exactly(inferencer.model)}'

def runner_with_load_from():
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(config)
    cfg.load_from, cfg.work_dir = checkpoint, work_dir
    metrics = Runner.from_cfg(cfg).test()
    return f'ok {sorted(metrics)[0]}'

for name in sys.argv[5:]:
    try:
        results[name] = globals()[name]()
    except Exception as error:
        traceback.print_exc()
        results[name] = f'{type(error).__name__}: {error}'
print('RESULTS ' + json.dumps(results))
"""

DET_APIS = ('init_detector_and_inference_detector', 'det_inferencer', 'runner_with_load_from')
SEG_APIS = ('init_model_and_inference_model', 'mmseg_inferencer', 'runner_with_load_from')


def python(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter, one OpenMP thread (see ``tool_process``), output merged."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env={**os.environ, 'OMP_NUM_THREADS': '1'},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )


def train(run_tool, config: Path, work_dir: Path) -> Path:
    trained = run_tool(['train.py', config, '--work-dir', work_dir])
    assert trained.returncode == 0, trained.stdout[-3000:]
    return work_dir / 'iter_2.pth'


def run_apis(config: Path, checkpoint: Path, image: Path, work_dir: Path, apis) -> Dict:
    script = work_dir / 'apis.py'
    script.write_text(API_SCRIPT)
    result = python([script, config, checkpoint, image, work_dir / 'out', *apis], work_dir)
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULTS)]
    assert lines, result.stdout[-3000:]
    return dict(json.loads(lines[-1][len(RESULTS) :]), log=result.stdout[-3000:])


@pytest.fixture(scope='module')
def det_checkpoint(det_config, tmp_path_factory, run_tool) -> Path:
    return train(run_tool, det_config, tmp_path_factory.mktemp('det_train'))


@pytest.fixture(scope='module')
def det_results(det_config, det_checkpoint, tmp_path_factory) -> Dict:
    image = det_config.parent / 'data' / 'images' / '0.png'
    work_dir = tmp_path_factory.mktemp('det_apis')
    return run_apis(det_config, det_checkpoint, image, work_dir, DET_APIS)


@pytest.fixture(scope='module')
def seg_results(seg_config, tmp_path_factory, run_tool) -> Dict:
    checkpoint = train(run_tool, seg_config, tmp_path_factory.mktemp('seg_train'))
    image = seg_config.parent / 'data' / 'img' / '0.png'
    work_dir = tmp_path_factory.mktemp('seg_apis')
    return run_apis(seg_config, checkpoint, image, work_dir, SEG_APIS)


@pytest.mark.parametrize(
    'api, expected',
    [
        ('init_detector_and_inference_detector', 'ok (10, 4) exact=True'),
        ('det_inferencer', 'ok 10 exact=True'),
        ('runner_with_load_from', 'ok coco/bbox_mAP'),
    ],
)
def test_mmdet_apis_load_the_checkpoint(det_results, api, expected):
    assert det_results[api] == expected, f"{det_results[api]}\n{det_results['log']}"


@pytest.mark.parametrize(
    'api, expected',
    [
        ('init_model_and_inference_model', 'ok (1, 64, 64) exact=True'),
        ('mmseg_inferencer', 'ok (64, 64) exact=True'),
        ('runner_with_load_from', 'ok aAcc'),
    ],
)
def test_mmseg_apis_load_the_checkpoint(seg_results, api, expected):
    assert seg_results[api] == expected, f"{seg_results[api]}\n{seg_results['log']}"


def test_mmdet_packaged_test_tool_loads_the_checkpoint(det_config, det_checkpoint, tmp_path):
    import mmdet

    mmdet_test = Path(mmdet.__file__).parent / '.mim' / 'tools' / 'test.py'
    result = python([mmdet_test, det_config, det_checkpoint, '--work-dir', tmp_path], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'coco/bbox_mAP' in result.stdout


def doctor(checkpoint: Path, target: Path) -> List[str]:
    """Save ``checkpoint`` without one FDConv weight and with another mis-shaped."""
    saved = torch.load(checkpoint, weights_only=False)  # our own file; the test needs no allowlist
    state = saved['state_dict']
    missing, misshaped = 'neck.fpn_convs.0.conv.dft_weight', 'bbox_head.cls_convs.0.conv.dft_weight'
    del state[missing]
    state[misshaped] = state[misshaped][:, :, :1]
    torch.save(saved, target)
    return [missing, misshaped]


def test_test_tool_refuses_a_partial_checkpoint_unless_allowed(
    det_config, det_checkpoint, tmp_path, run_tool
):
    doctored = tmp_path / 'doctored.pth'
    missing, misshaped = doctor(det_checkpoint, doctored)
    refused = run_tool(['test.py', det_config, doctored, '--work-dir', tmp_path])
    assert refused.returncode == 1, refused.stdout[-3000:]
    error = refused.stdout.strip().splitlines()[-1]
    assert error.startswith(f'test.py: error: checkpoint {doctored} does not match the model')
    assert f'1 missing: {missing}' in error and f'1 mis-shaped: {misshaped}: checkpoint' in error
    assert 'coco/bbox_mAP' not in refused.stdout

    allowed = run_tool(
        ['test.py', det_config, doctored, '--work-dir', tmp_path, '--allow-partial-load']
    )
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    assert 'coco/bbox_mAP' in allowed.stdout
