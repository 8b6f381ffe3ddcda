"""The FDConv figures of a config end to end: model, checkpoint, image, figures, index."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fdconv_mm.analysis.model_from_config import build_model, read_config
from fdconv_mm.analysis.visualize import Section, model_input, visualize_config, write_index
from fdconv_mm.demo import write_demo_image

REPO = Path(__file__).resolve().parents[2]
DET_CONFIG = str(REPO / 'configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py')
SEG_CONFIG = str(REPO / 'configs/demo/upernet_r18-fdconv_demo-shapes.py')
SWIN_CONFIG = str(REPO / 'configs/upernet/upernet_swin-t-fdconv_8xb2-160k_ade20k-512x512.py')
TOOL = REPO / 'tools' / 'analysis_tools' / 'visualize_fdconv.py'
# The demo detector: ResNet-18 stages 1-4, per-layer figures of each stage's last conv2.
DEMO_LAYERS = [f'backbone.layer{stage}.1.conv2' for stage in (1, 2, 3, 4)]
PER_LAYER = ('frequency_responses', 'radial_energy', 'similarity', 'band_maps')


def expected_figures(out_dir, layers, per_layer=PER_LAYER):
    names = ['group_attention.png', 'ksm_modulation.png']
    names += [f'{layer}_{kind}.png' for layer in layers for kind in per_layer]
    return [out_dir / name for name in names]


def assert_index_shows(result, pngs):
    markdown, page = result.index_md.read_text(), result.index_html.read_text()
    for png in pngs:
        assert png.is_file() and png.stat().st_size > 5_000, png
        assert f']({png.name})' in markdown
        assert f'src="{png.name}"' in page


def randomized_checkpoint(path, config, seed=1):
    torch.manual_seed(seed)
    model = build_model(read_config(config))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'KSM' in name or 'FBM' in name:
                param.copy_(torch.randn_like(param) * 0.5)
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), path)
    return path


@pytest.mark.slow
def test_demo_config_without_checkpoint_writes_every_figure_and_the_index(tmp_path):
    image = write_demo_image(tmp_path / 'input.png')
    result = visualize_config(DET_CONFIG, tmp_path, image=image)
    pngs = expected_figures(tmp_path, DEMO_LAYERS)
    assert result.figures == pngs
    assert_index_shows(result, pngs)
    assert 'none (weights as constructed)' in result.index_md.read_text()
    for summary in result.attentions.values():  # as constructed: neutral attentions
        assert summary['group'][1] < 1e-4 and abs(summary['local'][0] - 1) < 1e-4
    for numbers in result.numbers.values():
        assert numbers['max_abs_cos_orthogonal'] < 1e-5
        assert numbers['independent_mean_abs_cos'] > numbers['max_abs_cos_orthogonal']


def test_a_checkpoint_and_an_image_are_used(tmp_path):
    checkpoint = randomized_checkpoint(tmp_path / 'model.pth', DET_CONFIG)
    image = tmp_path / 'photo.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 80, 3), np.uint8)).save(image)
    layers = ['backbone.layer3.0.conv1']
    result = visualize_config(DET_CONFIG, tmp_path / 'out', checkpoint, image=image, layers=layers)
    assert result.figures == expected_figures(tmp_path / 'out', layers)
    assert not (tmp_path / 'out' / 'input.png').exists()
    text = result.index_md.read_text()
    assert str(checkpoint) in text and str(image) in text
    assert len(result.attentions) == 16
    assert all(summary['group'][1] > 0.01 for summary in result.attentions.values())


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    checkpoint = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'head.weight': torch.zeros(2)}), checkpoint)
    with pytest.raises(ValueError, match='holds no weight for 16 FDConv layer'):
        visualize_config(DET_CONFIG, tmp_path, checkpoint, image=tmp_path / 'not_read.png')


def test_model_input_is_the_image_as_the_model_sees_it(tmp_path):
    cfg = read_config(DET_CONFIG)
    model = build_model(cfg)
    pixels = np.random.default_rng(1).integers(0, 255, (128, 128, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / 'image.png')
    inputs, picture = model_input(cfg, model, tmp_path / 'image.png')
    assert inputs.shape == (1, 3, 128, 128)
    np.testing.assert_array_equal(picture, pixels)  # RGB, de-normalized, unpadded size


def test_a_pipeline_step_needing_annotations_falls_back_to_the_image_itself(tmp_path):
    cfg = read_config(DET_CONFIG)
    cfg.test_dataloader.dataset.pipeline.insert(2, dict(type='MinIoURandomCrop'))
    model = build_model(cfg)
    Image.fromarray(np.zeros((40, 72, 3), np.uint8)).save(tmp_path / 'image.png')
    with pytest.warns(UserWarning, match='first and last steps'):
        inputs, picture = model_input(cfg, model, tmp_path / 'image.png')
    assert picture.shape == (64, 96, 3), 'its own size, padded to a multiple of 32'


@pytest.mark.slow
def test_segmentation_config(tmp_path):
    layers = ['backbone.layer4.1.conv2']
    image = write_demo_image(tmp_path / 'input.png')
    result = visualize_config(SEG_CONFIG, tmp_path, image=image, layers=layers)
    assert_index_shows(result, expected_figures(tmp_path, layers))


@pytest.mark.slow
def test_swin_config_draws_no_spatial_figures_for_its_1x1_layers(tmp_path):
    options = {'model.backbone.depths': [1, 1, 1, 1], 'model.backbone.init_cfg': None}
    layers = ['backbone.stages.0.blocks.0.ffn.layers.*']
    image = write_demo_image(tmp_path / 'input.png')
    result = visualize_config(
        SWIN_CONFIG, tmp_path, image=image, layers=layers, cfg_options=options
    )
    pngs = expected_figures(
        tmp_path,
        ['backbone.stages.0.blocks.0.ffn.layers.0.0', 'backbone.stages.0.blocks.0.ffn.layers.1'],
        per_layer=('similarity',),
    )
    assert result.figures == pngs
    assert_index_shows(result, pngs)


def test_write_index_links_figures_relative_to_its_folder(tmp_path):
    inner = tmp_path / 'a.png'
    inner.write_bytes(b'')
    sections = [Section('A & B', 'x < y', (inner,))]
    index_md, index_html = write_index(tmp_path, sections, ['config: c.py'], title='T')
    assert index_md.read_text().splitlines()[:3] == ['# T', '', '- config: c.py']
    assert '![A & B](a.png)' in index_md.read_text()
    page = index_html.read_text()
    assert '<h2>A &amp; B</h2>' in page and '<p>x &lt; y</p>' in page and 'src="a.png"' in page


@pytest.mark.slow
def test_the_tool_runs_on_a_demo_config_without_checkpoint(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TOOL), DET_CONFIG, '--out-dir', str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '18 figures' in result.stdout
    for png in expected_figures(tmp_path, DEMO_LAYERS):
        assert png.is_file()
    assert (tmp_path / 'index.md').is_file() and (tmp_path / 'index.html').is_file()
    assert (tmp_path / 'input.png').is_file(), 'the synthetic image it used'
    failed = subprocess.run(
        [sys.executable, str(TOOL), DET_CONFIG, '--layers', 'nope', '--out-dir', str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0 and "'nope' matches no active FDConv layer" in failed.stderr
