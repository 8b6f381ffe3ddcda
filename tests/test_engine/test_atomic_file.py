"""remove_stale_temporaries: the temporary files of killed writes go, all others stay."""

import os

from fdconv_mm.engine import atomic_write, remove_stale_temporaries
from fdconv_mm.engine.atomic_file import temporary_path


def test_only_temporaries_of_dead_processes_are_removed(tmp_path, dead_pid, live_pid):
    stale = [f'.epoch_3.pth.{dead_pid}.tmp', f'.last_checkpoint.{dead_pid}.tmp']
    kept = [
        f'.epoch_4.pth.{live_pid}.tmp',  # a live process is writing it
        os.path.basename(temporary_path(tmp_path / 'epoch_5.pth')),  # this process's own
        f'epoch_3.pth.{dead_pid}.tmp',  # not hidden: not atomic_write's
        f'.epoch_3.pth.{dead_pid}.tmp.bak',
        '.notes.tmp',
        'epoch_2.pth',
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / f'.folder.{dead_pid}.tmp').mkdir()
    kept.append(f'.folder.{dead_pid}.tmp')

    removed = remove_stale_temporaries(tmp_path)

    assert sorted(removed) == sorted(str(tmp_path / name) for name in stale)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / 'missing') == []


def test_a_temporary_file_is_found_by_its_name(tmp_path, dead_pid):
    """What atomic_write names its file is what remove_stale_temporaries looks for."""
    with atomic_write(tmp_path / 'epoch_1.pth') as tmp:
        left = tmp.replace(f'.{os.getpid()}.tmp', f'.{dead_pid}.tmp')
        for path in (tmp, left):
            with open(path, 'w') as file:
                file.write('as if killed')
    assert remove_stale_temporaries(tmp_path) == [left]
    assert os.listdir(tmp_path) == ['epoch_1.pth']
