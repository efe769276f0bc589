"""The README's Python example runs and prints the numbers the README shows.

The first ```python block of README.md runs in a fresh interpreter in a temporary folder; its output
must match the ```text block that follows it (same lines, same labels, numbers within a tolerance).
This fails if the example stops running (an API renamed under it), if it is no longer seeded (the
numbers then move by far more than the tolerance from run to run: MI by ~0.2 nats, the loss by ~0.1)
or if a change to the library moves the numbers without the README being updated.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _example_and_expected() -> tuple[str, str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```(.*?)```text\n(.*?)```", text, re.DOTALL)
    assert match, "README.md needs a ```python example followed by a ```text block of its output"
    between = match.group(2)
    assert "```" not in between, "the ```text block must be the next code block after the example"
    return match.group(1), match.group(3)


def _split(line: str) -> tuple[str, list[float]]:
    """A line's words without its numbers (the labels) and its numbers."""
    return NUMBER.sub("#", line).split(), [float(v) for v in NUMBER.findall(line)]


def test_readme_python_example_prints_the_numbers_shown(tmp_path):
    code, expected = _example_and_expected()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    want = [ln for ln in expected.splitlines() if ln.strip()]
    assert len(got) == len(want), f"README shows:\n{expected}\nthe example printed:\n{proc.stdout}"
    for g, w in zip(got, want):
        g_words, g_nums = _split(g)
        w_words, w_nums = _split(w)
        assert g_words == w_words and len(g_nums) == len(w_nums), (g, w)
        for a, b in zip(g_nums, w_nums):
            # tight enough that an unseeded run fails (see the module docstring), loose enough for
            # the last-digit differences of other CPUs and library versions
            assert math.isclose(a, b, rel_tol=0.01, abs_tol=0.01), (
                f"README shows {w!r}, the example printed {g!r}")
    assert (tmp_path / "mim.pt").is_file()  # it ran to the end, in the temporary folder
