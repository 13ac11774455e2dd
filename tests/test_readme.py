"""The README's Python snippets are executed, so the documented API cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_has_python_examples() -> None:
    assert python_blocks(README.read_text()), "README.md lost its ```python examples"


@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text()))))
def test_readme_python_block_runs(index: int) -> None:
    code = python_blocks(README.read_text())[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
