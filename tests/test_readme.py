"""Every example of README.md runs as written.

Each fenced ```python and ```bash block is run in README order in one temporary working
folder holding a copy of ``sample_data/`` (blocks name the sample files directly):

- a Python block runs in a fresh namespace, as if pasted into a new Python session; it may
  use files that earlier blocks wrote (the model of the training example, say);
- a bash block runs with ``bash -e`` and the virtual environment's ``bin/`` first on ``PATH``
  (and ``.venv`` in the folder pointing at it, as in a checkout);
- ``<!-- readme-test: skip (reason) -->`` on the line before a block skips it with that reason
  (the ``make`` set-up commands), ``<!-- readme-test: file NAME -->`` writes the block to NAME
  instead of running it (the YAML config the CLI example uses).

The examples keep their epochs and models small so this stays quick.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(skip|file)\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    action: str | None = None  # "skip" or "file"
    argument: str = ""

    @property
    def id(self) -> str:
        return f"README.md:{self.line}-{self.language}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of `text` with the marker comment before each, if any."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise AssertionError(f"README.md:{start + 1}: code block never closed")
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = _MARKER.match(lines[k]) if k >= 0 else None
        blocks.append(Block(start + 1, m.group(1), "\n".join(lines[start + 1:j]) + "\n",
                            marker.group(1) if marker else None,
                            marker.group(2) if marker else ""))
        i = j + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
RUN = [b for b in BLOCKS if b.language in ("python", "bash") or b.action == "file"]


def test_readme_has_runnable_examples():
    languages = [b.language for b in RUN if b.action is None]
    assert languages.count("python") >= 6 and "bash" in languages
    for b in BLOCKS:
        if b.action == "skip":
            assert re.fullmatch(r"\(.+\)", b.argument), f"{b.id}: a skip needs a (reason)"


def test_block_parser_reads_markers():
    text = "intro\n<!-- readme-test: skip (needs a GPU) -->\n\n```bash\nnvidia-smi\n```\n" \
           "```python\nprint(1)\n```\n<!-- readme-test: file c.yaml -->\n```yaml\na: 1\n```\n"
    skip, run, config = readme_blocks(text)
    assert (skip.action, skip.argument, skip.code, skip.line) == ("skip", "(needs a GPU)", "nvidia-smi\n", 4)
    assert (run.action, run.language, run.code) == (None, "python", "print(1)\n")
    assert (config.action, config.argument, config.code) == ("file", "c.yaml", "a: 1\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder like a checkout: sample_data/ and .venv (the running environment)."""
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "sample_data", work / "sample_data")
    (work / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return work


def _environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")  # this checkout's code
    env.setdefault("MPLBACKEND", "Agg")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_readme_block_runs(block: Block, workdir: Path, monkeypatch, one_torch_thread):
    if block.action == "skip":
        pytest.skip(f"{block.id}: {block.argument.strip('()')}")
    if block.action == "file":
        (workdir / block.argument).write_text(block.code, encoding="utf-8")
        return
    monkeypatch.chdir(workdir)
    if block.language == "python":
        code = compile("\n" * block.line + block.code, str(README), "exec")  # tracebacks: README lines
        namespace = {"__name__": "__main__"}
        try:
            exec(code, namespace)
        finally:
            import matplotlib.pyplot as plt

            plt.close("all")
        return
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=workdir,
                          env=_environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (f"{block.id} failed (exit {done.returncode}):\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
