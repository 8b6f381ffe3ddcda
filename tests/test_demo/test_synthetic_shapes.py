"""The synthetic shapes dataset: deterministic, idempotent, and readable by mmdet and mmseg."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from fdconv_mm.demo import (
    DEMO_CLASSES,
    DEMO_SEG_CLASSES,
    DEMO_SEG_PALETTE,
    generate_demo_dataset,
    is_demo_dataset_complete,
    render_sample,
    semantic_map,
)

COUNTS = dict(num_train=6, num_val=3)


def all_files(root: Path) -> dict:
    return {path.relative_to(root): path for path in sorted(root.rglob('*')) if path.is_file()}


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


@pytest.fixture
def dataset(tmp_path):
    return generate_demo_dataset(tmp_path / 'shapes', **COUNTS)


def test_layout(dataset):
    files = all_files(dataset)
    for split, count in (('train', 6), ('val', 3)):
        images = sorted(dataset.glob(f'images/{split}/*.png'))
        labels = sorted(dataset.glob(f'ann_dir/{split}/*.png'))
        assert len(images) == len(labels) == count
        assert [path.name for path in images] == [path.name for path in labels]
        image, label = read_png(images[0]), read_png(labels[0])
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert label.shape == (128, 128) and label.dtype == np.uint8
        assert Path(f'annotations/instances_{split}.json') in files
    manifest = json.loads((dataset / 'manifest.json').read_text())
    assert manifest['complete'] and manifest['classes'] == list(DEMO_CLASSES)
    assert manifest['num_images'] == dict(train=6, val=3)


def test_same_bytes_every_run(tmp_path):
    first = all_files(generate_demo_dataset(tmp_path / 'a', **COUNTS))
    second = all_files(generate_demo_dataset(tmp_path / 'b', **COUNTS))
    assert first.keys() == second.keys()
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes(), name


def test_splits_do_not_depend_on_each_other(tmp_path):
    small = generate_demo_dataset(tmp_path / 'small', num_train=2, num_val=3)
    large = generate_demo_dataset(tmp_path / 'large', num_train=6, num_val=3)
    for name in ('images/train/000001.png', 'images/val/000002.png'):
        assert (small / name).read_bytes() == (large / name).read_bytes()


def test_other_seed_other_images(tmp_path):
    first = generate_demo_dataset(tmp_path / 'a', num_train=1, num_val=1, seed=0)
    second = generate_demo_dataset(tmp_path / 'b', num_train=1, num_val=1, seed=1)
    name = 'images/train/000000.png'
    assert (first / name).read_bytes() != (second / name).read_bytes()


def test_second_call_writes_nothing(dataset):
    files = all_files(dataset)
    # Old mtimes: a rewrite, however fast, would show.
    for path in files.values():
        os.utime(path, ns=(10**18, 10**18))
    assert is_demo_dataset_complete(dataset, **COUNTS)
    assert generate_demo_dataset(dataset, **COUNTS) == dataset
    assert all(path.stat().st_mtime_ns == 10**18 for path in files.values())
    assert all_files(dataset).keys() == files.keys()


def test_overwrite_redraws(dataset):
    manifest = dataset / 'manifest.json'
    os.utime(manifest, ns=(10**18, 10**18))
    generate_demo_dataset(dataset, overwrite=True, **COUNTS)
    assert manifest.stat().st_mtime_ns != 10**18


def test_other_parameters_redraw_and_drop_stale_files(dataset):
    generate_demo_dataset(dataset, num_train=4, num_val=2)
    assert len(list(dataset.glob('images/train/*.png'))) == 4
    assert len(list(dataset.glob('ann_dir/val/*.png'))) == 2
    assert is_demo_dataset_complete(dataset, num_train=4, num_val=2)
    assert not is_demo_dataset_complete(dataset, **COUNTS)


def test_incomplete_dataset_is_redone(dataset):
    missing = dataset / 'images' / 'val' / '000001.png'
    expected = missing.read_bytes()
    missing.unlink()
    assert not is_demo_dataset_complete(dataset, **COUNTS)
    generate_demo_dataset(dataset, **COUNTS)
    assert missing.read_bytes() == expected


def test_interrupted_run_is_redone(dataset):
    manifest = dataset / 'manifest.json'
    manifest.write_text(json.dumps(dict(json.loads(manifest.read_text()), complete=False)))
    assert not is_demo_dataset_complete(dataset, **COUNTS)
    generate_demo_dataset(dataset, **COUNTS)
    assert is_demo_dataset_complete(dataset, **COUNTS)


def test_foreign_folder_is_left_alone(tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'images' / 'mine.jpg').write_bytes(b'not ours')
    with pytest.raises(FileExistsError, match='overwrite=True'):
        generate_demo_dataset(tmp_path, **COUNTS)
    assert (tmp_path / 'images' / 'mine.jpg').exists()
    (tmp_path / 'notes.txt').write_text('kept')
    generate_demo_dataset(tmp_path, overwrite=True, **COUNTS)
    assert (tmp_path / 'notes.txt').read_text() == 'kept'
    assert is_demo_dataset_complete(tmp_path, **COUNTS)


@pytest.mark.parametrize(
    'option,value',
    [('num_train', 0), ('num_val', -1), ('image_size', 16), ('max_shapes', 0), ('num_val', 2.5)],
)
def test_bad_option_is_named(tmp_path, option, value):
    params = dict(COUNTS, **{option: value})
    with pytest.raises(ValueError, match=option):
        generate_demo_dataset(tmp_path, **params)


@pytest.mark.parametrize('split,count', [('train', 6), ('val', 3)])
def test_coco_boxes_masks_and_label_maps_agree(dataset, split, count):
    coco = COCO(str(dataset / 'annotations' / f'instances_{split}.json'))
    assert sorted(coco.getCatIds()) == [1, 2, 3]
    assert [coco.cats[k]['name'] for k in (1, 2, 3)] == list(DEMO_CLASSES)
    assert len(coco.getImgIds()) == count
    for image_id in coco.getImgIds():
        info = coco.imgs[image_id]
        assert (info['width'], info['height']) == (128, 128)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert annotations, 'every image has at least one shape'
        expected = np.zeros((128, 128), dtype=np.uint8)
        for annotation in annotations:
            mask = coco.annToMask(annotation).astype(bool)
            ys, xs = np.nonzero(mask)
            x, y, w, h = annotation['bbox']
            extent = (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min())
            np.testing.assert_allclose((x, y, w, h), extent, atol=1)
            assert annotation['area'] == mask.sum()
            assert annotation['iscrowd'] == 0 and annotation['category_id'] in (1, 2, 3)
            assert not expected[mask].any(), 'visible masks are disjoint'
            num_regions, _ = cv2.connectedComponents(mask.astype(np.uint8))
            assert num_regions == 2, 'each shape is one visible region'
            expected[mask] = annotation['category_id']
        label_map = read_png(dataset / 'ann_dir' / split / info['file_name'])
        np.testing.assert_array_equal(label_map, expected)


def test_shapes_stand_out_from_the_background(dataset):
    coco = COCO(str(dataset / 'annotations' / 'instances_train.json'))
    for annotation in coco.loadAnns(coco.getAnnIds()):
        info = coco.imgs[annotation['image_id']]
        image = read_png(dataset / 'images' / 'train' / info['file_name']).astype(float)
        mask = coco.annToMask(annotation).astype(bool)
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~mask
        contrast = np.abs(image[mask].mean(0) - image[ring].mean(0)).max()
        assert contrast > 30


@pytest.mark.parametrize('seed', range(5))
@pytest.mark.parametrize('image_size,max_shapes', [(64, 2), (128, 4), (160, 6)])
def test_render_sample_invariants(seed, image_size, max_shapes):
    size_range = (0.16 * image_size, 0.375 * image_size)
    image, instances = render_sample(
        np.random.default_rng(seed), image_size, max_shapes, size_range
    )
    assert image.shape == (image_size, image_size, 3) and image.dtype == np.uint8
    assert 1 <= len(instances) <= max_shapes
    covered = np.zeros((image_size, image_size), dtype=int)
    for instance in instances:
        assert instance.mask.shape == (image_size, image_size) and instance.mask.any()
        assert 0 <= instance.label < len(DEMO_CLASSES)
        # Shapes stay off the border.
        assert not (instance.mask[0].any() or instance.mask[-1].any())
        assert not (instance.mask[:, 0].any() or instance.mask[:, -1].any())
        covered += instance.mask
    assert covered.max() == 1
    labels = semantic_map(instances, image_size)
    assert set(np.unique(labels)) <= set(range(len(DEMO_SEG_CLASSES)))
    np.testing.assert_array_equal(labels > 0, covered == 1)


def test_render_sample_rejects_shapes_larger_than_the_image():
    with pytest.raises(ValueError, match='size_range'):
        render_sample(np.random.default_rng(0), image_size=32, size_range=(40.0, 50.0))


def test_mmdet_coco_dataset_reads_it(dataset):
    from mmdet.datasets import CocoDataset

    for split, count in (('train', 6), ('val', 3)):
        coco_json = json.loads((dataset / 'annotations' / f'instances_{split}.json').read_text())
        det = CocoDataset(
            data_root=str(dataset),
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'images/{split}/'),
            metainfo=dict(classes=DEMO_CLASSES),
            pipeline=[],
            test_mode=False,
            lazy_init=False,
        )
        assert len(det) == count
        assert det.metainfo['classes'] == DEMO_CLASSES
        instances = [inst for i in range(len(det)) for inst in det.get_data_info(i)['instances']]
        assert len(instances) == len(coco_json['annotations'])
        by_id = {ann['id']: ann for ann in coco_json['annotations']}
        info = det.get_data_info(0)
        assert Path(info['img_path']).is_file()
        first = by_id[1]
        x, y, w, h = first['bbox']
        assert info['instances'][0]['bbox'] == [x, y, x + w, y + h]
        assert info['instances'][0]['bbox_label'] == first['category_id'] - 1
        assert all(inst['ignore_flag'] == 0 for inst in instances)


def test_mmseg_dataset_reads_it(dataset):
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    for split, count in (('train', 6), ('val', 3)):
        seg = BaseSegDataset(
            data_root=str(dataset),
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'ann_dir/{split}'),
            img_suffix='.png',
            seg_map_suffix='.png',
            metainfo=dict(classes=DEMO_SEG_CLASSES, palette=[list(c) for c in DEMO_SEG_PALETTE]),
            reduce_zero_label=False,
            pipeline=[LoadAnnotations()],
        )
        assert len(seg) == count
        assert seg.metainfo['classes'] == DEMO_SEG_CLASSES
        sample = seg[0]
        expected = read_png(dataset / 'ann_dir' / split / '000000.png')
        np.testing.assert_array_equal(sample['gt_seg_map'], expected)
        assert Path(sample['img_path']).is_file()
