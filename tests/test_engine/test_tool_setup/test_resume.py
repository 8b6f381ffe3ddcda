"""resolve_resume: a resume request ends in an existing checkpoint or a ResumeError."""

import pytest
from mmengine.config import Config

from fdconv_mm.engine import ResumeError, latest_checkpoint, resolve_resume


@pytest.fixture
def work_dir(tmp_path):
    path = tmp_path / 'work'
    path.mkdir()
    return path


def config(work_dir, **options) -> Config:
    return Config(dict(work_dir=str(work_dir), **options))


def save_checkpoint(work_dir, name='iter_4.pth', point=True) -> str:
    checkpoint = work_dir / name
    checkpoint.write_bytes(b'weights')
    if point:
        (work_dir / 'last_checkpoint').write_text(str(checkpoint))
    return str(checkpoint)


def test_no_request_changes_nothing(work_dir):
    cfg = config(work_dir, resume=False, load_from=None)
    assert resolve_resume(cfg, None) is None
    assert cfg.resume is False and cfg.load_from is None


def test_auto_resumes_the_checkpoint_last_checkpoint_names(work_dir):
    save_checkpoint(work_dir, 'iter_2.pth', point=False)
    checkpoint = save_checkpoint(work_dir, 'iter_4.pth')
    cfg = config(work_dir, load_from='pretrained.pth')
    assert resolve_resume(cfg, 'auto') == checkpoint
    assert cfg.resume is True and cfg.load_from == checkpoint


def test_a_given_checkpoint_is_resumed(work_dir):
    checkpoint = save_checkpoint(work_dir, point=False)
    cfg = config(work_dir)
    assert resolve_resume(cfg, checkpoint) == checkpoint
    assert cfg.resume is True and cfg.load_from == checkpoint


@pytest.mark.parametrize('resume', ['auto', None])
def test_nothing_to_resume_from_is_an_error(work_dir, resume):
    cfg = config(work_dir, resume=True, load_from=None)
    with pytest.raises(ResumeError, match='no checkpoint to resume from in .*last_checkpoint'):
        resolve_resume(cfg, resume)


def test_a_missing_checkpoint_is_an_error(work_dir):
    with pytest.raises(ResumeError, match='missing.pth does not exist'):
        resolve_resume(config(work_dir), str(work_dir / 'missing.pth'))


def test_config_resume_with_a_missing_load_from_is_an_error(work_dir):
    cfg = config(work_dir, resume=True, load_from=str(work_dir / 'gone.pth'))
    with pytest.raises(ResumeError, match='gone.pth does not exist'):
        resolve_resume(cfg)


def test_config_resume_with_load_from_resumes_it(work_dir):
    checkpoint = save_checkpoint(work_dir, point=False)
    cfg = config(work_dir, resume=True, load_from=checkpoint)
    assert resolve_resume(cfg) == checkpoint


def test_last_checkpoint_naming_a_deleted_file_is_an_error(work_dir):
    checkpoint = save_checkpoint(work_dir)
    (work_dir / 'iter_4.pth').unlink()
    with pytest.raises(ResumeError, match=f'names {checkpoint}, which does not exist'):
        latest_checkpoint(str(work_dir))


def test_remote_checkpoints_are_left_to_mmengine(work_dir):
    url = 'https://example.com/iter_4.pth'
    assert resolve_resume(config(work_dir), url) == url
