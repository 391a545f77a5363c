"""LICENSE, CITATION.cff and CHANGELOG.md agree with the package and pyproject.toml."""

import re
from pathlib import Path

import yaml

import soundscape

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_the_mit_text_pyproject_names():
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+; the line is simple
    assert re.search(r'^license = \{text = "MIT"\}$', pyproject, flags=re.M)
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_citation_names_this_version_and_license():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == soundscape.__version__
    assert cff["license"] == "MIT"
    assert cff["authors"] and cff["title"].startswith("soundscape")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(cff["date-released"]))


def test_version_is_the_newest_changelog_release():
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", text, flags=re.M)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' release headings"
    assert releases[0][0] == soundscape.__version__
    versions = [tuple(map(int, v.split("."))) for v, _ in releases]
    assert versions == sorted(versions, reverse=True), "releases must be listed newest first"
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(cff["date-released"]) == releases[0][1]
