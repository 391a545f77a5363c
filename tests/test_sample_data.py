"""Tests for the synthetic woodcock sample-data generator."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import signal

from soundscape import sample_data as sd
from soundscape.errors import ParameterError

COMMITTED = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample_data")
    return out, sd.generate(out)


def band_energy(x, sample_rate, low=2000.0, high=4500.0):
    """Frame times and summed spectrogram power in [low, high] Hz (23 ms frames at 22 kHz)."""
    freqs, times, power = signal.spectrogram(x, sample_rate, nperseg=512, noverlap=256)
    return times, power[(freqs >= low) & (freqs <= high)].sum(axis=0)


def test_generate_returns_every_path(generated):
    out, paths = generated
    assert paths["labels"] == out / "woodcock_labeled_data" / "woodcock_labels.csv"
    assert len(paths["clips"]) == 29
    assert paths["field_recording"].suffix == ".flac"
    for path in [paths["labels"], paths["field_recording"], paths["selections"], *paths["clips"]]:
        assert path.is_file() and path.stat().st_size > 0


def test_regenerated_files_match_committed(generated):
    out, _ = generated
    if not COMMITTED.is_dir():
        pytest.fail(f"committed sample data missing at {COMMITTED}; run "
                    "`python -m soundscape.sample_data`")
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(written) == 29 + 3
    for rel in written:
        mine, committed = out / rel, COMMITTED / rel
        assert committed.is_file(), f"{committed} is not committed"
        if rel.suffix == ".flac":
            a, sr_a = sf.read(mine, dtype="int16")
            b, sr_b = sf.read(committed, dtype="int16")
            assert sr_a == sr_b and np.array_equal(a, b), f"{rel} decodes differently"
        else:
            assert mine.read_bytes() == committed.read_bytes(), f"{rel} differs"


def test_total_size_is_small():
    total = sum(p.stat().st_size for p in COMMITTED.rglob("*") if p.is_file())
    assert total < 12e6


def test_labels_layout(generated):
    _, paths = generated
    labels = pd.read_csv(paths["labels"])
    assert list(labels.columns) == ["filename", "woodcock", "sound_type"]
    pairs = labels.groupby(["woodcock", "sound_type"]).size().to_dict()
    assert pairs == {("present", "song"): 20, ("present", "call"): 2, ("absent", "na"): 7}
    assert labels.loc[0, "sound_type"] == "song" and labels.loc[1, "woodcock"] == "absent"
    assert labels.index[labels.sound_type == "call"].tolist() == [8, 22]
    assert all(re.fullmatch(r"[0-9a-f]{32}\.wav", name) for name in labels.filename)
    assert labels.filename.is_unique
    assert {p.name for p in paths["clips"]} == set(labels.filename)


def test_clips_are_two_seconds_mono_22k(generated):
    _, paths = generated
    for path in paths["clips"]:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (22050, 1, 44100)
        assert info.subtype == "PCM_16"


def test_package_reads_the_files():
    from soundscape.audio import Audio

    labels = pd.read_csv(COMMITTED / "woodcock_labeled_data" / "woodcock_labels.csv")
    clip = Audio.from_file(COMMITTED / "woodcock_labeled_data" / labels.filename[0])
    assert clip.sample_rate == 22050 and len(clip.samples) == 44100
    part = Audio.from_file(COMMITTED / "field_recording" / "field_recording.flac",
                           offset=300.0, duration=5.0)
    assert part.sample_rate == 22050 and len(part.samples) == 5 * 22050


def test_peent_stands_out_in_its_band(generated):
    _, paths = generated
    clip_dir = paths["labels"].parent
    plan = sd.clip_plan(sd.DEFAULT_SEED)
    absent, _ = sf.read(clip_dir / plan.filename[1])
    _, absent_band = band_energy(absent, 22050)
    for i, row in plan[plan.sound_type == "song"].iterrows():
        x, sr = sf.read(clip_dir / row.filename)
        times, band = band_energy(x, sr)
        during = band[(times >= row.peent_start) & (times <= row.peent_end)].max()
        assert during > 10 * np.median(band), f"row {i}: peent not above its own background"
        if i == 0:
            assert during > 100 * np.median(absent_band)


def test_loudness_alone_does_not_separate_classes(generated):
    _, paths = generated
    labels = pd.read_csv(paths["labels"])
    rms = np.array([np.sqrt(np.mean(sf.read(paths["labels"].parent / f)[0] ** 2))
                    for f in labels.filename])
    present, absent = rms[labels.woodcock == "present"], rms[labels.woodcock == "absent"]
    assert absent.max() > np.median(present)
    assert present.min() < np.median(absent)


def test_clips_and_recording_share_one_site(generated):
    """Same recorder noise: above every sound source (9.5-10.5 kHz) only the self-noise is
    left, and it must be as loud in the clips as in the recording (a model trained on the
    clips would otherwise learn the noise floor); same peent distances too."""
    _, paths = generated
    labels = pd.read_csv(paths["labels"])

    def floor_db(x):
        times, band = band_energy(x, 22050, 9500, 10500)
        return 10 * np.log10(np.median(band))

    clips = [floor_db(sf.read(paths["labels"].parent / f)[0]) for f in labels.filename]
    recording, sr = sf.read(paths["field_recording"])
    stretches = [floor_db(recording[i * sr:(i + 2) * sr]) for i in range(0, 600, 20)]
    assert abs(np.median(clips) - np.median(stretches)) < 3.0
    assert max(clips) < np.median(stretches) + 6.0
    plan = sd.clip_plan(sd.DEFAULT_SEED)
    songs = plan[plan.sound_type == "song"]
    distances = [sd._distance(level) for level in songs.peent_db]
    assert min(distances) < 0.2 and max(distances) > 0.5  # near and far birds, as in the recording


def test_raven_table_matches_recording(generated):
    _, paths = generated
    table = pd.read_csv(paths["selections"], sep="\t")
    assert list(table.columns) == sd.RAVEN_COLUMNS
    assert len(table) == sd.FIELD_PEENTS
    assert table.Selection.tolist() == list(range(1, len(table) + 1))
    assert (table.View == "Spectrogram 1").all() and (table.Channel == 1).all()
    assert (table.Species == "woodcock").all()
    x, sr = sf.read(paths["field_recording"])
    assert sr == 22050 and x.ndim == 1 and len(x) == 600 * sr
    begin, end = table["Begin Time (s)"], table["End Time (s)"]
    assert (begin >= 0).all() and (end <= len(x) / sr).all()
    assert (end - begin).between(0.19, 0.31).all()
    assert (table["Low Freq (Hz)"] < table["High Freq (Hz)"]).all()
    assert (table["High Freq (Hz)"] <= sr / 2).all()
    gaps = np.diff(np.sort(begin))
    assert (gaps < 5).sum() >= 15 and (gaps > 20).sum() >= 3  # bursts and isolated calls
    times, band = band_energy(x, sr)
    peaks = np.array([band[(times >= b) & (times <= e)].max() for b, e in zip(begin, end)])
    assert np.median(peaks) > 100 * np.median(band)


def test_peent_shape():
    params = sd.PeentParams(duration_s=0.25, f0_hz=3000.0, distance=0.0)
    wave = sd.peent(22050, params, rng=3)
    assert len(wave) == round(0.25 * 22050) + round(0.08 * 22050) - 1
    assert np.isclose(np.abs(wave).max(), 1.0)
    spectrum = np.abs(np.fft.rfft(wave))
    freqs = np.fft.rfftfreq(len(wave), 1 / 22050)
    assert 2700 < freqs[spectrum.argmax()] < 3100
    low, high = params.band_hz(22050)
    inside = spectrum[(freqs >= low) & (freqs <= high)] ** 2
    assert inside.sum() > 0.8 * (spectrum ** 2).sum()
    assert np.array_equal(wave, sd.peent(22050, params, rng=3))
    assert not np.array_equal(wave, sd.peent(22050, params, rng=4))
    # a far bird keeps only a weak upper harmonic; every harmonic stays below Nyquist at 8 kHz
    assert sd.PeentParams(distance=1.0).harmonic_amplitudes(22050)[1] < 0.15
    assert sd.peent(8000, rng=1).size > 0


def test_intro_note_is_low():
    wave = sd.intro_note(22050, rng=1, freq_hz=1000.0, duration_s=0.05)
    freqs = np.fft.rfftfreq(len(wave), 1 / 22050)
    assert 850 < freqs[np.abs(np.fft.rfft(wave)).argmax()] < 1150
    with pytest.raises(ParameterError, match="freq_hz"):
        sd.intro_note(22050, freq_hz=20000.0)


def test_background_components():
    quiet = sd.background(2.0, 22050, rng=5, wind_db=-40.0)
    chorus = sd.background(2.0, 22050, rng=5, wind_db=-40.0, insect_db=-30.0)
    assert quiet.dtype == np.float32 and len(quiet) == 44100
    _, q = band_energy(quiet, 22050, 3000, 6000)
    _, c = band_energy(chorus, 22050, 3000, 6000)
    assert np.median(c) > 100 * np.median(q)
    wind = sd.background(2.0, 22050, rng=5, wind_db=-20.0, floor_db=-90.0)
    _, low = band_energy(wind, 22050, 0, 300)
    _, high = band_energy(wind, 22050, 2000, 11025)
    assert low.sum() > 100 * high.sum()


def test_synthetic_recording_truth_and_determinism():
    x, truth = sd.synthetic_recording(40.0, 16000, seed=3, n_peents=8)
    assert x.dtype == np.float32 and len(x) == 40 * 16000 and np.abs(x).max() <= 1.0
    assert list(truth.columns) == sd.TRUTH_COLUMNS and len(truth) == 8
    assert (truth.start_time >= 0).all() and (truth.end_time <= 40).all()
    assert (truth.high_f <= 8000).all()
    times, band = band_energy(x, 16000)
    peaks = [band[(times >= b) & (times <= e)].max()
             for b, e in zip(truth.start_time, truth.end_time)]
    assert np.median(peaks) > 30 * np.median(band)
    again, truth_again = sd.synthetic_recording(40.0, 16000, seed=3, n_peents=8)
    assert np.array_equal(x, again) and truth.equals(truth_again)
    other, other_truth = sd.synthetic_recording(40.0, 16000, seed=4, n_peents=8)
    assert not np.array_equal(x, other) and not truth.equals(other_truth)


def test_second_seed_gives_different_data(generated):
    out, paths = generated
    a, b = sd.clip_plan(sd.DEFAULT_SEED), sd.clip_plan(sd.DEFAULT_SEED + 1)
    assert not set(a.filename) & set(b.filename)
    assert not a.drop(columns="filename").equals(b.drop(columns="filename"))
    committed_first, _ = sf.read(paths["clips"][0])
    other_first = sd._render_clip(b.iloc[0], 0, sd.DEFAULT_SEED + 1)
    assert not np.allclose(committed_first, other_first, atol=1e-3)


def test_chunked_rendering_has_no_seams():
    gen = sd._rng(9, 1)
    scene = sd._scene(3.0, 8000, (9, 2), gen, wind_db=-30.0, floor_db=-60.0)
    sd._constant_background(scene, gen, -30.0, -30.0, -20.0)
    assert np.array_equal(sd._render(scene, chunk_s=0.37), sd._render(scene, chunk_s=10.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"duration_s": -1.0}, "duration_s"),
    ({"duration_s": 10.0, "sample_rate": 4000}, "sample_rate"),
    ({"duration_s": 10.0, "n_peents": 50}, "n_peents"),
    ({"duration_s": 10.0, "seed": -2}, "seed"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        sd.synthetic_recording(**kwargs)


def test_cli_rejects_negative_seed(capsys):
    with pytest.raises(SystemExit):
        sd.main(["--seed", "-1"])
    assert "--seed" in capsys.readouterr().err
