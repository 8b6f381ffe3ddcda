"""The built wheel, used from a project folder outside the repository.

A user config there inherits a shipped config with one ``_base_`` line, trains and tests
with mmdet's own (packaged) tools, predicts through ``mmdet.apis``, and an mmseg config
builds through ``mmseg.apis``; the data and weights folders come from one variable each.
The wheel is installed with ``pip --target`` and put first on ``PYTHONPATH``, so that the
checkout (installed editable in the test environment) is not what runs.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import mmdet
import pytest

from fdconv_mm.demo.synthetic_shapes import generate_demo_dataset

REPO = Path(__file__).resolve().parents[2]
MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'

USER_DET_CONFIG = """
_base_ = '{{$FDCONV_MM_CONFIGS:}}/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py'
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = loader
val_dataloader = loader
test_dataloader = loader
train_cfg = dict(max_epochs=1)
"""
USER_SEG_CONFIG = """
_base_ = '{{$FDCONV_MM_CONFIGS:}}/upernet/upernet_r50-fdconv_4xb4-160k_ade20k-512x512.py'
"""
# Run in the project folder: mmdet's and mmseg's inference APIs, and the variables.
USER_SCRIPT = """
import runpy
import sys

from mmdet.apis import inference_detector, init_detector
from mmengine.config import Config
from mmseg.apis import init_model

import fdconv_mm

print('fdconv_mm:', fdconv_mm.__file__)
sys.stdout.write('configs: ')
runpy.run_module('fdconv_mm.configs', run_name='__main__')
detector = init_detector('detector.py', 'work/epoch_1.pth', device='cpu')
result = inference_detector(detector, sys.argv[1])
print('boxes:', tuple(result.pred_instances.bboxes.shape))
segmentor = init_model('segmentor.py', device='cpu')
print('segmentor backbone:', type(segmentor.backbone).__name__)
seg = Config.fromfile('segmentor.py')
print('seg data:', seg.test_dataloader.dataset.data_root)
print('seg weights:', seg.model.backbone.init_cfg.checkpoint)
coco = Config.fromfile(sys.argv[2] + '/faster_rcnn/faster-rcnn_r50-fdconv_fpn_1x_coco.py')
print('coco data:', coco.train_dataloader.dataset.data_root, coco.test_evaluator.ann_file)
"""


def run(args, cwd, env):
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('dist')
    pip_wheel = [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation']
    run([*pip_wheel, '-q', '-w', folder, REPO], cwd=folder, env=os.environ)
    (path,) = folder.glob('fdconv_mm-*.whl')
    return path


@pytest.mark.slow
def test_wheel_ships_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(REPO).as_posix() for p in (REPO / 'configs').rglob('*.py'))
    assert len(configs) >= 9
    assert {f'fdconv_mm/.mim/{name}' for name in configs} <= names


@pytest.mark.slow
def test_user_project_trains_tests_and_predicts_with_mmdet_and_mmseg(wheel, tmp_path):
    site, project = tmp_path / 'site', tmp_path / 'project'
    install = [sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', site]
    run([*install, wheel], cwd=tmp_path, env=os.environ)
    data = tmp_path / 'datasets'
    generate_demo_dataset(data / 'demo_shapes', num_train=4, num_val=2)
    project.mkdir()
    (project / 'detector.py').write_text(USER_DET_CONFIG)
    (project / 'segmentor.py').write_text(USER_SEG_CONFIG)
    (project / 'predict.py').write_text(USER_SCRIPT)
    configs = site / 'fdconv_mm' / '.mim' / 'configs'
    env = {
        **os.environ,
        'PYTHONPATH': str(site),
        'OMP_NUM_THREADS': '1',
        'FDCONV_MM_CONFIGS': str(configs),
        'FDCONV_DATA_ROOT': str(data),
        'FDCONV_PRETRAINED': '/weights',
    }
    run(
        [sys.executable, MMDET_TOOLS / 'train.py', 'detector.py', '--work-dir', 'work'],
        project,
        env,
    )
    assert (project / 'work' / 'epoch_1.pth').is_file()
    output = run(
        [sys.executable, MMDET_TOOLS / 'test.py', 'detector.py', 'work/epoch_1.pth'], project, env
    )
    assert 'coco/bbox_mAP_50' in output

    image = sorted((data / 'demo_shapes' / 'images' / 'val').glob('*.png'))[0]
    lines = run([sys.executable, 'predict.py', image, configs], project, env).splitlines()
    printed = dict(line.split(': ', 1) for line in lines if ': ' in line)
    assert printed['fdconv_mm'].startswith(str(site))
    assert printed['configs'] == str(configs)
    assert printed['boxes'].endswith(', 4)')
    assert printed['segmentor backbone'] == 'SegResNetV1cFDConv'
    assert printed['seg data'] == f'{data}/ade/ADEChallengeData2016'
    assert printed['seg weights'] == '/weights/resnet50_v1c_fdconv.pth'
    assert printed['coco data'] == f'{data}/coco/ {data}/coco/annotations/instances_val2017.json'
