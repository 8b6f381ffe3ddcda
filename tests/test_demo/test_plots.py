"""The demo's figures: valid, non-blank PNGs from small synthetic inputs."""

import json

import numpy as np
import pytest
from PIL import Image

from fdconv_mm.demo import DEMO_CLASSES, plot_predictions, plot_training_curves, read_scalars
from fdconv_mm.demo.synthetic_shapes import render_sample

# matplotlib's first colour ('C0', #1f77b4): the first curve drawn.
FIRST_CURVE_RGB = np.array([31, 119, 180])


def write_scalars(path, num_epochs=3, iters_per_epoch=4, with_val=True):
    lines = []
    for epoch in range(1, num_epochs + 1):
        for it in range(1, iters_per_epoch + 1):
            step = (epoch - 1) * iters_per_epoch + it
            loss_cls = 1.0 / step
            loss_bbox = 0.5 / step
            lines.append(
                dict(
                    lr=0.01,
                    data_time=0.01,
                    loss=loss_cls + loss_bbox,
                    loss_rpn_cls=loss_cls,
                    loss_bbox=loss_bbox,
                    time=0.2,
                    epoch=epoch,
                    iter=step,
                    memory=100,
                    step=step,
                )
            )
        if with_val:
            lines.append(
                {
                    'coco/bbox_mAP': 0.2 * epoch,
                    'coco/bbox_mAP_50': 0.3 * epoch,
                    'data_time': 0.01,
                    'time': 0.1,
                    'step': epoch,
                }
            )
    path.write_text('\n'.join(json.dumps(line) for line in lines) + '\n')
    return path


def read_rgb(path):
    with Image.open(path) as image:
        assert image.format == 'PNG'
        return np.array(image.convert('RGB'))


def assert_not_blank(pixels):
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_read_scalars_splits_training_and_validation(tmp_path):
    path = write_scalars(tmp_path / 'scalars.json', num_epochs=2, iters_per_epoch=3)
    with open(path, 'a') as file:
        file.write('\n')
    train, val = read_scalars(path)
    assert [record['iter'] for record in train] == [1, 2, 3, 4, 5, 6]
    assert [record['step'] for record in val] == [1, 2]
    assert val[1]['coco/bbox_mAP_50'] == pytest.approx(0.6)


def test_read_scalars_names_a_bad_line(tmp_path):
    path = tmp_path / 'scalars.json'
    path.write_text('{"loss": 1.0, "step": 1}\nnot json\n')
    with pytest.raises(ValueError, match='scalars.json:2'):
        read_scalars(path)


@pytest.mark.parametrize('with_val', [True, False])
def test_training_curves_png(tmp_path, with_val):
    scalars = write_scalars(tmp_path / 'scalars.json', with_val=with_val)
    out = plot_training_curves(scalars, tmp_path / 'plots' / 'curves.png', target=0.5)
    assert out == tmp_path / 'plots' / 'curves.png'
    pixels = read_rgb(out)
    assert_not_blank(pixels)
    distance = np.abs(pixels.astype(int) - FIRST_CURVE_RGB).sum(-1)
    assert (distance < 30).sum() > 50, 'the curves are drawn'


def test_training_curves_without_data_is_an_error(tmp_path):
    path = tmp_path / 'scalars.json'
    path.write_text(json.dumps({'coco/segm_mAP': 0.1, 'step': 1}) + '\n')
    with pytest.raises(ValueError, match='no loss'):
        plot_training_curves(path, tmp_path / 'curves.png')
    assert not (tmp_path / 'curves.png').exists()


def sample_images(count, image_size=96):
    images, ground_truth = [], []
    for seed in range(count):
        image, instances = render_sample(
            np.random.default_rng(seed), image_size, size_range=(16.0, 32.0)
        )
        boxes = []
        for instance in instances:
            ys, xs = np.nonzero(instance.mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        images.append(image)
        ground_truth.append((np.array(boxes, dtype=float), [i.label for i in instances]))
    return images, ground_truth


def test_predictions_png(tmp_path):
    images, ground_truth = sample_images(5)
    predictions = []
    for boxes, labels in ground_truth:
        scores = np.linspace(0.95, 0.2, len(labels))
        predictions.append((boxes + 1.5, scores, np.asarray(labels)))
    # One box past the border and one unknown label must not break the figure.
    predictions[0] = (
        np.array([[-5.0, -5.0, 40.0, 40.0], [50.0, 50.0, 120.0, 120.0]]),
        np.array([0.9, 0.8]),
        np.array([1, 7]),
    )
    drawn = plot_predictions(
        images,
        predictions,
        DEMO_CLASSES,
        tmp_path / 'drawn.png',
        ground_truth=ground_truth,
        num_cols=3,
        title='val',
    )
    empty = plot_predictions(
        images, predictions, DEMO_CLASSES, tmp_path / 'empty.png', score_thr=1.1, num_cols=3
    )
    drawn_pixels, empty_pixels = read_rgb(drawn), read_rgb(empty)
    assert_not_blank(drawn_pixels)
    assert_not_blank(empty_pixels)
    assert drawn_pixels.shape[1] == empty_pixels.shape[1]
    assert drawn_pixels.shape[1] > drawn_pixels.shape[0], 'three columns, two rows'


def test_predictions_accept_empty_detections(tmp_path):
    images, _ = sample_images(1)
    out = plot_predictions(
        images, [(np.zeros((0, 4)), np.zeros(0), np.zeros(0))], DEMO_CLASSES, tmp_path / 'p.png'
    )
    assert_not_blank(read_rgb(out))


def test_predictions_need_one_entry_per_image(tmp_path):
    images, ground_truth = sample_images(2)
    prediction = (np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match='predictions has 1 entries for 2 images'):
        plot_predictions(images, [prediction], DEMO_CLASSES, tmp_path / 'p.png')
    with pytest.raises(ValueError, match='ground_truth has 1 entries'):
        plot_predictions(
            images,
            [prediction, prediction],
            DEMO_CLASSES,
            tmp_path / 'p.png',
            ground_truth=ground_truth[:1],
        )
    with pytest.raises(ValueError, match='at least one image'):
        plot_predictions([], [], DEMO_CLASSES, tmp_path / 'p.png')
