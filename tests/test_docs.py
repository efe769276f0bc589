"""Every ```python block of docs/*.md runs (the README's example has its own test, with its output:
tests/test_readme.py). Each file's blocks run in order in one fresh interpreter, in a temporary
folder, so a block may build on the one before it, and a doc that registers a component (the
custom prior of docs/design.md) cannot clash with the test session's registries.

How it fails: a renamed function, option or registry name used in a doc raises in the subprocess,
and the test shows the doc, the block and the traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if "```python" in p.read_text())


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.DOTALL | re.MULTILINE)


def test_docs_have_examples():
    """The docs that should show Python do (a regex that stopped matching would skip them all)."""
    assert {p.name for p in DOCS} >= {"design.md", "flow.md"}
    assert all(python_blocks(p) for p in DOCS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_python_examples_run(doc, tmp_path):
    code = "\n\n".join(python_blocks(doc))
    script = tmp_path / f"{doc.stem}_examples.py"
    script.write_text("import torch\ntorch.manual_seed(0)\ntorch.set_num_threads(1)\n" + code)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"docs/{doc.name}: a Python example failed:\n{proc.stderr[-3000:]}"
