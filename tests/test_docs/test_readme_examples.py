"""The README's and docs' examples: the 2x config composes, the first layer snippet runs, and
every relative link points at a file of the repository."""

import re
from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
CONFIG_1X = 'faster_rcnn/faster-rcnn_r50-fdconv_fpn_1x_coco.py'
FENCED_BLOCK = re.compile(r'^```.*?^```', re.S | re.M)
# Markdown links and images, [text](target) / ![alt](target), and HTML src="target".
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)|\bsrc="([^"]+)"')


def python_blocks(page: Path) -> list:
    return re.findall(r'```python\n(.*?)```', page.read_text(), re.S)


def block_with(page: Path, text: str) -> str:
    blocks = [block for block in python_blocks(page) if text in block]
    assert len(blocks) == 1, f'{page.name}: {len(blocks)} python blocks hold {text!r}'
    return blocks[0]


@pytest.mark.parametrize('page', ['README.md', 'docs/training.md'])
def test_2x_example_follows_mmdets_2x_schedule(page, tmp_path, monkeypatch):
    snippet = block_with(ROOT / page, 'fdconv_fpn_2x_coco.py')
    assert f"{{{{$FDCONV_MM_CONFIGS:}}}}/{CONFIG_1X}'" in snippet
    config = tmp_path / 'faster-rcnn_r50-fdconv_fpn_2x_coco.py'
    config.write_text(snippet)
    # The snippet as written; its base is the repository's 1x config, by absolute path.
    monkeypatch.setenv('FDCONV_MM_CONFIGS', str(ROOT / 'configs'))
    cfg = Config.fromfile(config, import_custom_modules=False)

    assert cfg.model.backbone.type == 'ResNetFDConv'
    assert cfg.train_cfg.max_epochs == 24
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR', False, 500)
    assert steps.type == 'MultiStepLR' and steps.by_epoch
    assert (steps.begin, steps.end, steps.milestones, steps.gamma) == (0, 24, [16, 22], 0.1)


def test_1x_base_alone_keeps_the_1x_steps():
    """Why the example must repeat the scheduler: max_epochs alone keeps end 12, [8, 11]."""
    steps = Config.fromfile(ROOT / 'configs' / CONFIG_1X, import_custom_modules=False)
    assert (steps.param_scheduler[1].end, steps.param_scheduler[1].milestones) == (12, [8, 11])


def test_first_plain_pytorch_example_runs():
    namespace: dict = {}
    exec(python_blocks(ROOT / 'README.md')[0], namespace)
    assert tuple(namespace['y'].shape) == (2, 64, 56, 56)


def relative_links(page: Path) -> list:
    text = FENCED_BLOCK.sub('', page.read_text())
    targets = [first or second for first, second in LINK.findall(text)]
    return [t for t in targets if not re.match(r'[a-z][a-z0-9+.-]*:|#', t, re.I)]


def heading_anchors(page: Path) -> set:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-'."""
    headings = re.findall(r'^#+ (.+)$', FENCED_BLOCK.sub('', page.read_text()), re.M)
    return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in headings}


@pytest.mark.parametrize('page', PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_point_at_files_of_the_repository(page):
    for target in relative_links(page):
        file, _, anchor = target.partition('#')
        path = (page.parent / file).resolve()
        assert path.is_relative_to(ROOT), f'{page.name}: {target} leaves the repository'
        assert path.exists(), f'{page.name}: {target} does not exist'
        if anchor and path.suffix == '.md':
            assert anchor in heading_anchors(path), f'{page.name}: no heading for {target}'


def test_the_link_check_sees_the_readmes_links():
    assert 'docs/spec.md' in relative_links(ROOT / 'README.md')
