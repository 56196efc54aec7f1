"""Every Python block of docs/integrations.md runs as written."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_an_example_for_each_adapter():
    text = "\n".join(BLOCKS)
    for name in ("darts", "nasbench201", "nni", "naslib", "convert_model"):
        assert name in text, name
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index, capsys):
    code = BLOCKS[index]
    needs = re.match(r"# needs: (\w+)", code)
    if needs and importlib.util.find_spec(needs.group(1)) is None:
        pytest.skip(f"block {index} needs {needs.group(1)}, not installed (.ci/hosts runs it)")
    if needs:
        try:
            importlib.import_module(needs.group(1))
        except Exception as exc:  # e.g. PyPI's torchvision beside another torch build
            pytest.skip(f"block {index} needs {needs.group(1)}, not importable here: {exc}")
    exec(compile(code, f"{DOC.name}[block {index}]", "exec"), {"__name__": "__doc_example__"})
    assert capsys.readouterr().out or "print(" not in code
