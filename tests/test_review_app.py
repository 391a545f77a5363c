"""The review web app: page, spectrogram PNG, WAV cuts, confined paths, concurrent verdicts."""

import io
from pathlib import Path
import threading
import warnings

import numpy as np
import pytest
import soundfile

pytest.importorskip("fastapi", reason="the review page needs fastapi (pip install -e .[review])")
pytest.importorskip("uvicorn", reason="the review page needs uvicorn (pip install -e .[review])")

with warnings.catch_warnings():  # starlette's note on its httpx-based test client
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from _review_data import make_inputs  # noqa: E402
from soundscape.review import (ReviewTable, read_candidates, read_review,  # noqa: E402
                               select_clips, serve)
from soundscape.review.app import ReviewSession, create_app  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("review-app"))


@pytest.fixture
def client(inputs, tmp_path):
    clips = select_clips(read_candidates(inputs["events_path"]), "all")
    table = ReviewTable(tmp_path / "review.csv", clips)
    return TestClient(create_app(ReviewSession(table, inputs["audio"])))


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/review.js">' in page.text and "cdn" not in page.text.lower()
    assert "answer(" in client.get("/static/review.js").text
    assert client.get("/static/style.css").status_code == 200


def test_items_list_the_clips_and_progress(client, inputs):
    state = client.get("/api/items").json()
    assert len(state["items"]) == len(inputs["events"])
    assert state["progress"] == {"reviewed": 0, "total": len(inputs["events"]), "next": 0}
    assert set(state["classes"]) == {"woodcock", "intro"}
    first = state["items"][0]
    assert {"item_id", "file", "start_time", "end_time", "annotation", "score"} <= set(first)


def test_image_is_a_png_of_the_clip_and_its_context(client, inputs):
    from PIL import Image

    item = client.get("/api/items").json()["items"][0]
    got = client.get("/image", params={"path": item["file"], "start": item["start_time"],
                                       "end": item["end_time"], "low_f": 2000, "high_f": 8000})
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(got.content))
    assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 100
    pixels = np.asarray(image.convert("RGB")).astype(int)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red.sum() > 100  # the detection box


def test_audio_is_a_wav_cut_of_the_asked_duration(client, inputs):
    got = client.get("/audio", params={"path": str(inputs["recording"]), "start": 12.5, "end": 15})
    assert got.status_code == 200 and got.headers["content-type"] == "audio/wav"
    samples, rate = soundfile.read(io.BytesIO(got.content))
    assert rate == 22050 and len(samples) == round(2.5 * 22050)
    whole, _ = soundfile.read(inputs["recording"], start=round(12.5 * 22050),
                              stop=round(15 * 22050))
    np.testing.assert_allclose(samples, whole, atol=1 / 32768)
    relative = client.get("/audio", params={"path": "field_recording.flac", "start": 0, "end": 1})
    assert relative.status_code == 200  # relative to the audio root
    tail = client.get("/audio", params={"path": "field_recording.flac", "start": 179, "end": 182})
    assert len(soundfile.read(io.BytesIO(tail.content))[0]) == 22050  # cut at the end
    beyond = client.get("/audio", params={"path": "field_recording.flac", "start": 190, "end": 192})
    assert beyond.status_code == 200 and len(soundfile.read(io.BytesIO(beyond.content))[0]) == 0


@pytest.mark.parametrize("route", ["/audio", "/image"])
def test_a_recording_that_is_not_audio_is_a_clear_error(client, inputs, route):
    broken = inputs["audio"] / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00garbage" * 10)
    try:
        got = client.get(route, params={"path": "broken.wav", "start": 0, "end": 1})
    finally:
        broken.unlink()
    assert got.status_code == 422 and "broken.wav" in got.json()["detail"]


@pytest.mark.parametrize("route", ["/audio", "/image"])
def test_paths_outside_the_audio_root_are_refused(client, inputs, tmp_path, route):
    outside = tmp_path / "outside.wav"
    soundfile.write(outside, np.zeros(22050, dtype="float32"), 22050)
    for path in ["../outside.wav", "../../../../etc/passwd", str(outside), "/etc/passwd",
                 "audio/../../outside.wav"]:
        got = client.get(route, params={"path": path, "start": 0, "end": 1})
        assert got.status_code == 403, path
        assert "outside the audio root" in got.json()["detail"]
    link = inputs["audio"] / "link.wav"
    if not link.exists():
        link.symlink_to(outside)
    got = client.get(route, params={"path": "link.wav", "start": 0, "end": 1})
    assert got.status_code == 403  # a link out of the root counts as outside
    missing = client.get(route, params={"path": "absent.flac", "start": 0, "end": 1})
    assert missing.status_code == 404 and "no audio file" in missing.json()["detail"]
    bad = client.get(route, params={"path": "field_recording.flac", "start": 5, "end": 2})
    assert bad.status_code == 400 and "0 <= start < end" in bad.json()["detail"]


def test_verdict_post_saves_to_disk(client, tmp_path):
    items = client.get("/api/items").json()["items"]
    got = client.post("/api/verdict", json={"item_id": items[0]["item_id"], "verdict": "yes",
                                            "note": "clear"})
    assert got.status_code == 200
    assert got.json()["progress"] == {"reviewed": 1, "total": len(items), "next": 1}
    table = read_review(tmp_path / "review.csv")
    assert table.loc[0, "verdict"] == "yes" and table.loc[0, "note"] == "clear"
    bad = client.post("/api/verdict", json={"item_id": items[0]["item_id"], "verdict": "maybe"})
    assert bad.status_code == 400 and "verdict must be one of" in bad.json()["detail"]
    report = client.get("/api/report").json()
    assert report["classes"][items[0]["annotation"]]["n_reviewed"] == 1
    assert client.get("/report.png").content[:4] == b"\x89PNG"


def test_real_server_keeps_concurrent_verdicts_of_two_tabs(inputs, tmp_path):
    import httpx

    review_path = tmp_path / "two-tabs.csv"
    with pytest.warns(UserWarning, match="not only on this machine"):
        server = serve(inputs["events_path"], inputs["audio"], review_table=review_path,
                       host="0.0.0.0", port=0, block=False, quiet=True)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        items = httpx.get(server.url + "api/items").json()["items"]
        barrier = threading.Barrier(2)
        results = []

        def tab(k):
            with httpx.Client(base_url=server.url) as http:
                for i in range(k, len(items), 2):
                    if i < 2:
                        barrier.wait()  # the first two posts leave together
                    answer = {"item_id": items[i]["item_id"], "verdict": "yes" if k else "no"}
                    results.append(http.post("api/verdict", json=answer).status_code)

        threads = [threading.Thread(target=tab, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * len(items)
        verdicts = read_review(review_path)["verdict"].tolist()
        assert verdicts == ["no" if i % 2 == 0 else "yes" for i in range(len(items))]
        # a reopened page continues: everything is reviewed
        assert httpx.get(server.url + "api/items").json()["progress"]["next"] is None
    finally:
        server.stop()
    assert not server._thread.is_alive()


def test_serve_puts_the_review_table_beside_the_input_and_localhost_is_quiet(inputs, recwarn):
    server = serve(inputs["events_path"], inputs["audio"], mode="top", n=2, port=0, block=False,
                   quiet=True)
    try:
        assert server.table.path == inputs["events_path"].with_name("detections.review.csv")
        assert server.table.progress()["total"] == 4
    finally:
        server.stop()
    assert not [w for w in recwarn if "not only on this machine" in str(w.message)]


def test_cli_writes_the_report(inputs, tmp_path, capsys):
    from soundscape.cli import main

    review = tmp_path / "r.csv"
    table = ReviewTable(review, select_clips(read_candidates(inputs["events_path"]), "all"))
    for k, item in enumerate(table.read()["item_id"]):
        table.set_verdict(item, "yes" if k % 3 else "no")
    assert main(["review", str(inputs["events_path"]), "--audio", str(inputs["audio"]),
                 "--review_table", str(review), "--report", str(tmp_path / "rep")]) == 0
    assert "rep.json" in capsys.readouterr().out
    assert (tmp_path / "rep.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["review", str(tmp_path / "absent.csv"), "--audio", str(inputs["audio"])]) == 1
    assert "score or detection table not found" in capsys.readouterr().err


def test_cli_serves_until_interrupted_and_warns_about_other_hosts(inputs, tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys

    import httpx

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundscape", "review", str(inputs["events_path"]), "--audio",
         str(inputs["audio"]), "--review_table", str(tmp_path / "cli.csv"), "--port", "0",
         "--host", "0.0.0.0", "--select", "top", "--n", "3"],
        stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not any("review page:" in line for line in lines):
            line = proc.stderr.readline()
            assert line, f"the command ended: {''.join(lines)}"
            lines.append(line)
        text = "".join(lines)
        assert "warning: the review page listens on 0.0.0.0" in text and "no login" in text
        url = re.search(r"review page: (\S+)", text).group(1)
        state = httpx.get(url + "api/items", timeout=10).json()
        assert state["progress"]["total"] == 6  # top 3 of each class
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert (tmp_path / "cli.csv").is_file()


def test_relative_names_of_the_working_folder_are_found_in_the_root(inputs, monkeypatch):
    """predict_recordings keeps file names as given: relative to where it ran."""
    from soundscape.review.media import AudioRoot, PathRefused

    root = AudioRoot(inputs["audio"])
    monkeypatch.chdir(inputs["audio"].parent)
    assert root.resolve("audio/field_recording.flac") == inputs["recording"]
    assert root.resolve("field_recording.flac") == inputs["recording"]
    with pytest.raises(FileNotFoundError, match="no audio file"):
        root.resolve("scores.csv")  # exists in the working folder, outside the root: not served
    with pytest.raises(PathRefused, match="outside the audio root"):
        root.resolve("../scores.csv")
    with pytest.raises(FileNotFoundError, match="no audio file"):
        root.resolve("audio/absent.flac")


def test_serve_refuses_an_audio_root_without_the_recordings(inputs, tmp_path):
    from soundscape.errors import ParameterError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ParameterError, match="outside the audio root .*give as the audio root"):
        serve(inputs["events_path"], elsewhere, review_table=tmp_path / "r.csv", port=0,
              block=False, quiet=True)
    assert not (tmp_path / "r.csv").exists()


def test_local_server_answers_only_to_local_host_names(inputs, tmp_path):
    """A page elsewhere cannot reach the app through a name that resolves to 127.0.0.1."""
    import httpx

    with serve(inputs["events_path"], inputs["audio"], review_table=tmp_path / "r.csv", port=0,
               block=False, quiet=True) as server:
        assert httpx.get(server.url + "api/items").status_code == 200
        port = server.url.rsplit(":", 1)[1].strip("/")
        assert httpx.get(f"http://localhost:{port}/api/items").status_code == 200
        evil = httpx.get(server.url + "api/items", headers={"Host": f"evil.example:{port}"})
        assert evil.status_code == 400
