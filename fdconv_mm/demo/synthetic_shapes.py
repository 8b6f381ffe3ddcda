"""Deterministic synthetic "shapes" dataset for the CPU demo, in COCO and mmseg layouts.

Each image shows one to a few filled circles, squares and triangles on a textured
background (two-colour gradient, sinusoidal stripes, smooth blotches and pixel noise). Shapes
keep a fixed hue per class with some colour jitter, are rotated and sized at random, may
overlap but always keep most of their area visible as one connected region, and never
touch the image border. The task is easy enough for a small detector trained from scratch
on the CPU in a few minutes, yet not solvable by thresholding the background.

Layout under ``root`` (file names are ``{index:06d}.png``, the same in every folder)::

    images/{train,val}/000000.png           RGB, image_size x image_size
    annotations/instances_{train,val}.json  COCO instances, category ids 1..N
    ann_dir/{train,val}/000000.png          uint8 semantic labels, 0 = background
    manifest.json                           parameters and counts, written last

Label conventions: category id ``k`` in the COCO json (``1 <= k <= N``) is
``DEMO_CLASSES[k - 1]``, which mmdet's ``CocoDataset`` with
``metainfo=dict(classes=DEMO_CLASSES)`` maps to label ``k - 1``. A pixel of the semantic
map holds ``k`` where the topmost shape covering it has category id ``k`` and 0 on the
background, so its classes are ``DEMO_SEG_CLASSES = ('background',) + DEMO_CLASSES``: use
mmseg's ``BaseSegDataset`` with ``reduce_zero_label=False``. Instance masks (and so boxes,
areas and the semantic map) are the *visible* pixels of each shape; ``segmentation`` is a
compressed COCO RLE, which pycocotools and mmdet's ``LoadAnnotations`` (with its default
``poly2mask=True``) decode.

Every image is drawn from its own ``numpy`` generator seeded with ``(seed, split, index)``,
so a split does not depend on the size of the other, and a run gives the same bytes every
time with the pinned numpy, opencv and Pillow.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

DEMO_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle')
# Base RGB colour of each class in DEMO_CLASSES; every instance jitters it a little.
DEMO_PALETTE: Tuple[Tuple[int, int, int], ...] = ((220, 50, 50), (40, 175, 70), (50, 90, 225))
DEMO_SEG_CLASSES: Tuple[str, ...] = ('background',) + DEMO_CLASSES
DEMO_SEG_PALETTE: Tuple[Tuple[int, int, int], ...] = ((0, 0, 0),) + DEMO_PALETTE

SPLITS: Tuple[str, ...] = ('train', 'val')
MANIFEST_NAME = 'manifest.json'
# Bump whenever the drawing changes, so that datasets written by older code are redrawn.
GENERATOR_VERSION = 1
_GENERATOR_NAME = 'fdconv_mm.demo.synthetic_shapes'
_OUTPUT_DIRS = ('images', 'annotations', 'ann_dir')

# Size of a shape relative to its nominal size d: circle diameter d, square side 0.85 d,
# triangle side 1.15 d, which gives the three classes similar areas.
_SQUARE_SIDE = 0.85
_TRIANGLE_SIDE = 1.15
_PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class ShapeInstance:
    """One drawn shape.

    Args:
        label (int): Index into ``DEMO_CLASSES`` (the COCO category id minus one).
        mask (np.ndarray): (H, W) bool, the pixels of the shape left visible.
    """

    label: int
    mask: np.ndarray


def circle_mask(center: Tuple[float, float], radius: float, image_size: int) -> np.ndarray:
    """Pixels whose centres lie in a disc.

    Args:
        center (tuple[float, float]): ``(x, y)`` in pixel-edge coordinates.
        radius (float): Radius in pixels.
        image_size (int): Side S of the square image.

    Returns:
        np.ndarray: (S, S) bool.
    """
    coords = np.arange(image_size) + 0.5
    dx = coords[None, :] - center[0]
    dy = coords[:, None] - center[1]
    return dx * dx + dy * dy <= radius * radius


def convex_polygon_mask(vertices: np.ndarray, image_size: int) -> np.ndarray:
    """Pixels whose centres lie in a convex polygon.

    Args:
        vertices (np.ndarray): (V, 2) ``(x, y)`` vertices in order, either orientation.
        image_size (int): Side S of the square image.

    Returns:
        np.ndarray: (S, S) bool.
    """
    coords = np.arange(image_size) + 0.5
    xs, ys = coords[None, :], coords[:, None]
    starts, ends = vertices, np.roll(vertices, -1, axis=0)
    signed_area = np.sum(starts[:, 0] * ends[:, 1] - ends[:, 0] * starts[:, 1])
    orientation = 1.0 if signed_area >= 0 else -1.0
    inside = np.ones((image_size, image_size), dtype=bool)
    for (x0, y0), (x1, y1) in zip(starts, ends):
        cross = (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)
        inside &= orientation * cross >= 0
    return inside


def _regular_polygon(
    center: Tuple[float, float], circumradius: float, num_vertices: int, angle: float
) -> np.ndarray:
    """(num_vertices, 2) vertices of a regular polygon rotated by ``angle`` radians."""
    angles = angle + 2 * np.pi * np.arange(num_vertices) / num_vertices
    return np.stack(
        [center[0] + circumradius * np.cos(angles), center[1] + circumradius * np.sin(angles)],
        axis=1,
    )


def _shape_mask(
    label: int, center: Tuple[float, float], size: float, angle: float, image_size: int
) -> np.ndarray:
    """(S, S) bool mask of the class ``label`` shape of nominal size ``size``."""
    name = DEMO_CLASSES[label]
    if name == 'circle':
        return circle_mask(center, size / 2, image_size)
    if name == 'square':
        vertices = _regular_polygon(center, _SQUARE_SIDE * size / np.sqrt(2), 4, angle)
    else:
        vertices = _regular_polygon(center, _TRIANGLE_SIDE * size / np.sqrt(3), 3, angle)
    return convex_polygon_mask(vertices, image_size)


def _circumradius(label: int, size: float) -> float:
    """Radius of the circle around the shape, used to keep it inside the image."""
    name = DEMO_CLASSES[label]
    if name == 'circle':
        return size / 2
    if name == 'square':
        return _SQUARE_SIDE * size / np.sqrt(2)
    return _TRIANGLE_SIDE * size / np.sqrt(3)


def _is_one_region(mask: np.ndarray) -> bool:
    num_labels, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return num_labels == 2  # background and one component


def render_background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A muted, textured background: gradient, stripes and smooth blotches.

    Args:
        rng (np.random.Generator): Source of randomness.
        image_size (int): Side S of the square image.

    Returns:
        np.ndarray: (S, S, 3) float64 RGB, roughly in [40, 215], before pixel noise.
    """
    coords = np.arange(image_size) + 0.5
    xs, ys = coords[None, :], coords[:, None]
    # Two low-saturation colours: random RGB pulled halfway to its grey.
    colours = rng.uniform(70, 190, size=(2, 3))
    colours = 0.5 * colours + 0.5 * colours.mean(axis=1, keepdims=True)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * xs + np.sin(theta) * ys) / image_size
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    image = colours[0] * (1 - ramp[..., None]) + colours[1] * ramp[..., None]

    phi = rng.uniform(0, np.pi)
    period = rng.uniform(5, 20)
    amplitude = rng.uniform(0, 22)
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * (np.cos(phi) * xs + np.sin(phi) * ys) / period + phase)
    image += amplitude * stripes[..., None]

    coarse = rng.normal(0, 12, size=(5, 5, 3)).astype(np.float32)
    blotches = cv2.resize(coarse, (image_size, image_size), interpolation=cv2.INTER_CUBIC)
    return image + blotches.astype(np.float64)


def render_sample(
    rng: np.random.Generator,
    image_size: int = 128,
    max_shapes: int = 4,
    size_range: Tuple[float, float] = (20.0, 48.0),
    min_visible: float = 0.75,
) -> Tuple[np.ndarray, List[ShapeInstance]]:
    """Draw one image and its shapes.

    Shapes are placed one at a time on top of the previous ones; a placement is rejected
    if it would leave an earlier shape with less than ``min_visible`` of its area or
    split it in two. A shape with no valid placement after a few tries is dropped, but
    the first one always fits, so every image has at least one instance.

    Args:
        rng (np.random.Generator): Source of randomness.
        image_size (int): Side S of the square image. Defaults to 128.
        max_shapes (int): Most shapes per image; the count is uniform in
            ``[1, max_shapes]``. Defaults to 4.
        size_range (tuple[float, float]): Range of the nominal shape size (circle
            diameter) in pixels. Defaults to (20.0, 48.0).
        min_visible (float): Least visible fraction of each shape. Defaults to 0.75.

    Returns:
        tuple[np.ndarray, list[ShapeInstance]]: (S, S, 3) uint8 RGB image and its
        instances, bottom to top.

    Example:
        >>> image, instances = render_sample(np.random.default_rng(0), image_size=64,
        ...                                  size_range=(12.0, 20.0))
        >>> image.shape, image.dtype, instances[0].mask.shape
        ((64, 64, 3), dtype('uint8'), (64, 64))
    """
    image = render_background(rng, image_size)
    full_masks: List[np.ndarray] = []
    visible_masks: List[np.ndarray] = []
    labels: List[int] = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        label = int(rng.integers(len(DEMO_CLASSES)))
        size = float(rng.uniform(*size_range))
        angle = float(rng.uniform(0, 2 * np.pi))
        margin = _circumradius(label, size) + 1
        if 2 * margin >= image_size:
            raise ValueError(
                f'size_range={size_range} is too large for image_size={image_size}: '
                'a shape must fit inside the image'
            )
        for _ in range(_PLACEMENT_TRIES):
            center = tuple(rng.uniform(margin, image_size - margin, size=2))
            mask = _shape_mask(label, center, size, angle, image_size)
            remaining = [visible & ~mask for visible in visible_masks]
            if all(
                rest.sum() >= min_visible * full.sum() and _is_one_region(rest)
                for rest, full in zip(remaining, full_masks)
            ):
                break
        else:
            continue
        visible_masks = remaining + [mask]
        full_masks.append(mask)
        labels.append(label)
        colour = np.clip(np.array(DEMO_PALETTE[label]) + rng.uniform(-30, 30, size=3), 0, 255)
        # A soft linear shading across the shape, so that fills are not flat.
        shading_angle = rng.uniform(0, 2 * np.pi)
        coords = np.arange(image_size) + 0.5
        shading = (
            np.cos(shading_angle) * (coords[None, :] - center[0])
            + np.sin(shading_angle) * (coords[:, None] - center[1])
        ) * (rng.uniform(0, 20) / size)
        image[mask] = colour + shading[mask][:, None]

    image += rng.normal(0, 5, size=image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    instances = [ShapeInstance(label, visible) for label, visible in zip(labels, visible_masks)]
    return image, instances


def write_demo_image(path: Union[str, Path], seed: int = 0, image_size: int = 128) -> Path:
    """Write one image of the demo data's kind (:func:`render_sample`) as a PNG.

    The input the FDConv figures are drawn on when no image is given
    (``tools/analysis_tools/visualize_fdconv.py``).

    Args:
        path (str | Path): The PNG to write; its folder is created.
        seed (int): Seed of the image. Defaults to 0.
        image_size (int): Side of the square image in pixels. Defaults to 128.

    Returns:
        Path: ``path``.
    """
    image, _ = render_sample(np.random.default_rng(seed), image_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def semantic_map(instances: List[ShapeInstance], image_size: int) -> np.ndarray:
    """Semantic label map of an image: ``label + 1`` on each shape, 0 on the background.

    Args:
        instances (list[ShapeInstance]): Instances with disjoint visible masks.
        image_size (int): Side S of the square image.

    Returns:
        np.ndarray: (S, S) uint8.
    """
    labels = np.zeros((image_size, image_size), dtype=np.uint8)
    for instance in instances:
        labels[instance.mask] = instance.label + 1
    return labels


def mask_to_coco(mask: np.ndarray) -> Dict[str, Any]:
    """COCO fields of one instance mask: tight ``bbox`` (xywh), ``area`` and RLE.

    Args:
        mask (np.ndarray): (H, W) bool, not empty.

    Returns:
        dict: ``bbox`` as ``[x, y, w, h]`` floats in pixel-edge coordinates (the box
        covers the mask's pixels exactly), ``area`` as the pixel count, and
        ``segmentation`` as a compressed RLE with ``counts`` a string.
    """
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    width, height = int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(
        bbox=[float(x0), float(y0), float(width), float(height)],
        area=float(mask.sum()),
        segmentation=dict(size=[int(s) for s in rle['size']], counts=rle['counts'].decode()),
    )


def _split_seed(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))


def _file_name(index: int) -> str:
    return f'{index:06d}.png'


def _expected_files(root: Path, counts: Dict[str, int]) -> List[Path]:
    files = []
    for split in SPLITS:
        files.append(root / 'annotations' / f'instances_{split}.json')
        for index in range(counts[split]):
            files.append(root / 'images' / split / _file_name(index))
            files.append(root / 'ann_dir' / split / _file_name(index))
    return files


def _parameters(
    num_train: int, num_val: int, image_size: int, max_shapes: int, seed: int
) -> Dict[str, Any]:
    return dict(
        generator=_GENERATOR_NAME,
        version=GENERATOR_VERSION,
        num_train=num_train,
        num_val=num_val,
        image_size=image_size,
        max_shapes=max_shapes,
        seed=seed,
    )


def _read_manifest(root: Path) -> Optional[Dict[str, Any]]:
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get('generator') != _GENERATOR_NAME:
        return None
    return manifest


def is_demo_dataset_complete(
    root: Union[str, Path],
    num_train: int = 400,
    num_val: int = 80,
    image_size: int = 128,
    max_shapes: int = 4,
    seed: int = 0,
) -> bool:
    """Whether ``root`` holds a finished dataset generated with exactly these parameters.

    Args are those of :func:`generate_demo_dataset`.

    Returns:
        bool: True if the manifest matches and every image, label map and json exists.
    """
    root = Path(root)
    manifest = _read_manifest(root)
    params = _parameters(num_train, num_val, image_size, max_shapes, seed)
    if manifest is None or not manifest.get('complete'):
        return False
    if any(manifest.get(key) != value for key, value in params.items()):
        return False
    counts = dict(train=num_train, val=num_val)
    return all(path.is_file() for path in _expected_files(root, counts))


def _write_split(
    root: Path, split: str, num_images: int, image_size: int, max_shapes: int, seed: int
) -> int:
    """Draw and write one split; returns its number of instances."""
    image_dir = root / 'images' / split
    label_dir = root / 'ann_dir' / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    size_range = (0.16 * image_size, 0.375 * image_size)
    for index in range(num_images):
        rng = _split_seed(seed, split, index)
        image, instances = render_sample(rng, image_size, max_shapes, size_range)
        name = _file_name(index)
        Image.fromarray(image).save(image_dir / name, format='PNG')
        labels = semantic_map(instances, image_size)
        Image.fromarray(labels).save(label_dir / name, format='PNG')
        image_id = index + 1
        images.append(dict(id=image_id, file_name=name, width=image_size, height=image_size))
        for instance in instances:
            annotation = dict(
                id=len(annotations) + 1,
                image_id=image_id,
                category_id=instance.label + 1,
                iscrowd=0,
            )
            annotation.update(mask_to_coco(instance.mask))
            annotations.append(annotation)
    coco = dict(
        info=dict(description=f'fdconv-mm synthetic shapes, {split} split', version='1'),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=k + 1, name=name, supercategory='shape') for k, name in enumerate(DEMO_CLASSES)
        ],
    )
    annotation_dir = root / 'annotations'
    annotation_dir.mkdir(parents=True, exist_ok=True)
    (annotation_dir / f'instances_{split}.json').write_text(json.dumps(coco))
    return len(annotations)


def generate_demo_dataset(
    root: Union[str, Path],
    num_train: int = 400,
    num_val: int = 80,
    image_size: int = 128,
    max_shapes: int = 4,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic shapes dataset under ``root``, unless it is already there.

    The call returns at once, writing nothing, when ``root`` holds a complete dataset made
    with the same parameters (see :func:`is_demo_dataset_complete`). A dataset this
    function made with other parameters, or left unfinished, is redrawn. ``manifest.json``
    is written last, so an interrupted run is detected and redone. Only the folders
    ``images``, ``annotations`` and ``ann_dir`` and the manifest are ever removed.

    Args:
        root (str | Path): Folder of the dataset, created if missing.
        num_train (int): Images in the train split. Defaults to 400.
        num_val (int): Images in the val split. Defaults to 80.
        image_size (int): Side of the square images in pixels; shapes measure 16 % to
            37.5 % of it. Defaults to 128.
        max_shapes (int): Most shapes per image (at least one). Defaults to 4.
        seed (int): Seed of the whole dataset. Defaults to 0.
        overwrite (bool): Redraw even a complete, matching dataset, and write into a
            non-empty folder that this function did not make. Defaults to False.

    Returns:
        Path: ``root``.

    Raises:
        ValueError: If a count or size is out of range.
        FileExistsError: If ``root`` is a non-empty folder without this generator's
            manifest and ``overwrite`` is False.
    """
    for name, value, lowest in (
        ('num_train', num_train, 1),
        ('num_val', num_val, 1),
        ('image_size', image_size, 32),
        ('max_shapes', max_shapes, 1),
    ):
        if not isinstance(value, int) or value < lowest:
            raise ValueError(f'{name} must be an integer >= {lowest}, got {value!r}')
    root = Path(root)
    params = _parameters(num_train, num_val, image_size, max_shapes, seed)
    if not overwrite and is_demo_dataset_complete(
        root, num_train, num_val, image_size, max_shapes, seed
    ):
        return root
    if not overwrite and root.is_dir() and any(root.iterdir()) and _read_manifest(root) is None:
        raise FileExistsError(
            f'{root} is not empty and was not made by generate_demo_dataset: '
            'choose another root or pass overwrite=True'
        )

    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / MANIFEST_NAME
    manifest_path.unlink(missing_ok=True)
    for name in _OUTPUT_DIRS:
        shutil.rmtree(root / name, ignore_errors=True)
    # Mark the folder as ours before writing into it, so an interrupted run is redone.
    manifest_path.write_text(json.dumps(dict(params, complete=False), indent=2) + '\n')

    counts = dict(train=num_train, val=num_val)
    num_instances = {
        split: _write_split(root, split, counts[split], image_size, max_shapes, seed)
        for split in SPLITS
    }
    manifest = dict(
        params,
        complete=True,
        classes=list(DEMO_CLASSES),
        seg_classes=list(DEMO_SEG_CLASSES),
        num_images=counts,
        num_instances=num_instances,
    )
    manifest_path.write_text(json.dumps(manifest, indent=2) + '\n')
    return root
