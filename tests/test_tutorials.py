"""Every notebook in tutorials/ runs from top to bottom (in a temporary copy).

Notebooks read ``SOUNDSCAPE_TUTORIAL_EPOCHS`` (set to 1 here) to keep training short and
``SOUNDSCAPE_SAMPLE_DATA`` (the repository's ``sample_data`` folder) to find the clips.
"""

import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to run the tutorials (pip install -e .[dev])")
nbclient = pytest.importorskip("nbclient", reason="nbclient is needed to run the tutorials (pip install -e .[dev])")

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
#: files notebooks write next to themselves; not copied into the test's working folder
_OUTPUTS = shutil.ignore_patterns("woodcock_labeled_data", "model_train_results",
                                  "outputs", ".ipynb_checkpoints", "*.tar", "*.model")


def test_tutorials_exist():
    assert NOTEBOOKS, f"no notebooks in {TUTORIALS}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_end_to_end(notebook, tmp_path, monkeypatch):
    work = tmp_path / "tutorials"
    shutil.copytree(TUTORIALS, work, ignore=_OUTPUTS)
    monkeypatch.setenv("SOUNDSCAPE_TUTORIAL_EPOCHS", "1")
    monkeypatch.setenv("SOUNDSCAPE_SAMPLE_DATA", str(REPO / "sample_data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(work / notebook.name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{notebook.name} failed:\n{str(exc)[-3000:]}")
