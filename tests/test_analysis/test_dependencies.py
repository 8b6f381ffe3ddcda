"""fdconv_mm.analysis stands below the demo: the demo uses it, it never imports the demo."""

import ast
from pathlib import Path

import pytest

ANALYSIS = Path(__file__).parents[2] / 'fdconv_mm' / 'analysis'
PACKAGE = ('fdconv_mm', 'analysis')


def imported_modules(path: Path):
    """Every module a file imports, relative imports resolved within fdconv_mm.analysis."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # level 1 is fdconv_mm.analysis itself, level 2 fdconv_mm
            base = PACKAGE[: len(PACKAGE) + 1 - node.level] if node.level else ()
            yield '.'.join([*base, *([node.module] if node.module else [])])


@pytest.mark.parametrize('path', sorted(ANALYSIS.glob('*.py')), ids=lambda path: path.name)
def test_no_analysis_module_imports_the_demo(path):
    demo = [name for name in imported_modules(path) if name.startswith('fdconv_mm.demo')]
    assert demo == [], f'{path.name} imports {demo}'
