"""The FDConv figures: valid, non-blank PNGs from small synthetic inputs, drawn headless."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fdconv_mm.analysis import figures

REPO = Path(__file__).resolve().parents[2]


def read_rgb(path):
    with Image.open(path) as image:
        assert image.format == 'PNG'
        return np.array(image.convert('RGB'))


def assert_not_blank(path, colours=50):
    pixels = read_rgb(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > colours
    return pixels


def test_tile_maps_lays_maps_out_row_by_row():
    maps = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    mosaic = figures.tile_maps(maps, num_cols=2, gap=1)
    assert mosaic.shape == (3 * 3 - 1, 2 * 4 - 1)
    np.testing.assert_array_equal(mosaic[0:2, 0:3], maps[0])
    np.testing.assert_array_equal(mosaic[0:2, 4:7], maps[1])
    np.testing.assert_array_equal(mosaic[6:8, 0:3], maps[4])
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[6:8, 4:7]).all()


def test_mean_off_diagonal():
    matrix = np.array([[1.0, -0.5, 0.1], [-0.5, 1.0, 0.3], [0.1, 0.3, 1.0]])
    assert figures.mean_off_diagonal(matrix) == pytest.approx((0.5 + 0.1 + 0.3) / 3)
    assert figures.mean_off_diagonal(np.ones((1, 1))) == 0.0


def test_every_figure_renders(tmp_path):
    rng = np.random.default_rng(0)
    responses = rng.random((12, 16, 16))
    drawn = [
        figures.plot_frequency_responses(responses, tmp_path / 'responses.png', 'responses'),
        figures.plot_similarity(
            [('a', np.eye(12)), ('b', rng.uniform(-1, 1, (12, 12)))], tmp_path / 'sim.png', 's'
        ),
        figures.plot_radial_energy(
            np.arange(12) / 16, rng.random((12, 12)), tmp_path / 'radial.png', 'radial'
        ),
        figures.plot_group_attention(
            ['layer1.0.conv1', 'layer2.0.conv1'],
            [rng.uniform(0, 2, 8), rng.uniform(0, 2, 6)],
            tmp_path / 'groups.png',
            'groups',
        ),
        figures.plot_band_maps(
            rng.integers(0, 255, (64, 48, 3), dtype=np.uint8),
            rng.uniform(0.5, 1.5, (3, 16, 12)),
            ['w_1', 'w_2', 'w_3'],
            tmp_path / 'bands.png',
            'bands',
        ),
        figures.plot_ksm_modulation(
            ['a', 'b', 'c'],
            [
                dict(group=(1.0, 0.2, 0.5, 1.5), local=(1.0, 0.1, 0.8, 1.2)),
                dict(group=(1.1, 0.1, 0.9, 1.3)),
                {},
            ],
            tmp_path / 'ksm.png',
            'ksm',
        ),
    ]
    for path in drawn:
        assert_not_blank(path)


def test_group_attention_and_ksm_figures_need_one_entry_per_layer(tmp_path):
    with pytest.raises(ValueError, match='one attention per layer'):
        figures.plot_group_attention(['a', 'b'], [np.ones(4)], tmp_path / 'g.png', 'g')
    with pytest.raises(ValueError, match='no attention'):
        figures.plot_ksm_modulation(['a'], [{}], tmp_path / 'k.png')
    with pytest.raises(ValueError, match='2 labels for 3 maps'):
        figures.plot_band_maps(
            np.zeros((8, 8, 3), np.uint8), np.ones((3, 4, 4)), ['a', 'b'], tmp_path / 'b.png', 'b'
        )


def test_figures_render_without_a_display(tmp_path):
    """With an interactive backend requested and no display, the figures still render: they
    never go through pyplot (whose ``figure()`` raises there: no display for Tk)."""
    script = textwrap.dedent(
        f"""
        import numpy as np
        from fdconv_mm.analysis import figures
        figures.plot_similarity([('a', np.eye(4))], {str(tmp_path / 'sim.png')!r}, 'headless')
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY')}
    env['MPLBACKEND'] = 'TkAgg'
    result = subprocess.run(
        [sys.executable, '-c', script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert_not_blank(tmp_path / 'sim.png', colours=10)
