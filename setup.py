"""Install fdconv-mm. Use ``make test`` (or the README) for the full pinned stack: mmcv
must be built from source against the installed torch to get its compiled ops."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list:
    lines = (HERE / 'requirements' / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


version = {}
exec((HERE / 'fdconv_mm' / 'version.py').read_text(), version)

setup(
    name='fdconv-mm',
    version=version['__version__'],
    description='FDConv (Frequency Dynamic Convolution, CVPR 2025) for mmdetection and '
    'mmsegmentation',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['fdconv_mm', 'fdconv_mm.*', 'fdconv']),
    # The configs ship where mmdet and mmseg keep theirs, in <package>/.mim/configs (a link to
    # configs/ in the repository): `python -m fdconv_mm.configs` prints the installed folder.
    package_data={'fdconv_mm': ['.mim/configs/**/*.py']},
    python_requires='>=3.8',
    install_requires=['torch==2.13.0'] + read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'deploy': read_requirements('deploy.txt'),
    },
    license='Apache-2.0',
    zip_safe=False,
)
