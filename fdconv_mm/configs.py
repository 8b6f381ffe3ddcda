"""The experiment and demo configs shipped with the package.

The repository's ``configs/`` ship as ``fdconv_mm/.mim/configs`` (where mmdet and mmseg keep
theirs). ``python -m fdconv_mm.configs`` prints that folder, for a user config's
``_base_ = '{{$FDCONV_MM_CONFIGS:}}/faster_rcnn/...'`` (see the README).
"""

import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / '.mim' / 'configs'


if __name__ == '__main__':
    sys.stdout.write(f'{CONFIG_DIR}\n')
