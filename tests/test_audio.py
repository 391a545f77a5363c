"""Tests of soundscape.audio: the Audio container, file loading and transforms."""

import os
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import soundfile

from soundscape.audio import Audio, audio_info, clip_times, iter_segments
from soundscape.errors import AudioFileError, ParameterError

MP3_OK = "MP3" in soundfile.available_formats()
needs_mp3 = pytest.mark.skipif(
    not MP3_OK,
    reason=f"libsndfile {soundfile.__libsndfile_version__} cannot read/write MP3 (needs >= 1.1)",
)


def tone(freq, seconds, sr, amp=0.5, phase=0.0):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def peak_freq(audio):
    mags, freqs = audio.spectrum()
    return freqs[np.argmax(mags)]


def level_db(audio, freq, width=20.0):
    """Spectrum level (dB) of the strongest bin within `width` Hz of `freq`."""
    mags, freqs = audio.spectrum()
    near = np.abs(freqs - freq) <= width
    return 20 * np.log10(mags[near].max() + 1e-30)


# --------------------------------------------------------------------------- construction
def test_init_converts_to_float32_and_keeps_rate():
    a = Audio([0.0, 0.5, -0.25], 10)
    assert a.samples.dtype == np.float32 and a.samples.tolist() == [0.0, 0.5, -0.25]
    assert a.sample_rate == 10 and isinstance(a.sample_rate, int)
    assert a.duration == pytest.approx(0.3) and len(a) == 3
    assert Audio(np.zeros(4), 8000.0).sample_rate == 8000


@pytest.mark.parametrize(
    "samples, rate, match",
    [
        (np.zeros((10, 2)), 100, r"1-D .*shape \(10, 2\)"),
        (np.array([0.0, np.nan, 1.0]), 100, "sample 1 is nan"),
        (np.array([0.0, 0.0, np.inf]), 100, "sample 2 is inf"),
        (np.array([1, 2, 3], dtype=np.int16), 100, "integer dtype int16.*32768"),
        (np.array(["a", "b"]), 100, "float array"),
        (np.zeros(3), 0, "sample_rate must be a positive integer.*got 0"),
        (np.zeros(3), -8000, "got -8000"),
        (np.zeros(3), 22050.5, "got 22050.5"),
        (np.zeros(3), "8000", "got '8000'"),
        (np.zeros(3), True, "got True"),
    ],
)
def test_init_rejects_bad_input(samples, rate, match):
    with pytest.raises(ParameterError, match=match):
        Audio(samples, rate)


def test_time_to_sample_and_repr():
    a = Audio(np.zeros(22050), 22050)
    assert a.time_to_sample(0.5) == 11025
    assert a.time_to_sample(1 / 22050 * 0.6) == 1
    assert "sample_rate=22050" in repr(a) and "1.000s" in repr(a)


# --------------------------------------------------------------------------- reading and writing
@pytest.mark.parametrize(
    "ext, subtype, tol",
    [
        ("wav", "FLOAT", 0.0),
        ("wav", None, 1 / 32768 + 1e-6),
        ("flac", None, 1 / 32768 + 1e-6),
        ("ogg", None, None),
        pytest.param("mp3", None, None, marks=needs_mp3),
    ],
)
def test_save_and_from_file_round_trip(tmp_path, ext, subtype, tol):
    sr = 22050
    a = Audio(tone(1000, 1.0, sr), sr)
    path = a.save(tmp_path / f"tone.{ext}", subtype=subtype)
    assert path.exists()
    b = Audio.from_file(path)
    assert b.sample_rate == sr and b.samples.dtype == np.float32
    assert len(b) == len(a)  # lossy codecs here report the exact (gapless) length
    assert peak_freq(b) == pytest.approx(1000, abs=1.5)
    if tol is not None:
        np.testing.assert_allclose(b.samples, a.samples, atol=tol)
    assert b.metadata["path"] == str(path)


def test_from_file_mixes_channels_to_mono(tmp_path):
    sr = 8000
    left, right = tone(500, 0.5, sr, 0.4), tone(1200, 0.5, sr, 0.2)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), sr, subtype="FLOAT")
    a = Audio.from_file(tmp_path / "stereo.wav")
    np.testing.assert_allclose(a.samples, (left + right) / 2, atol=1e-7)


def test_from_file_resamples_44k_to_22k_keeping_the_tone(tmp_path):
    sr = 44100
    soundfile.write(
        tmp_path / "t.wav", tone(1000, 2.0, sr) + tone(15000, 2.0, sr, 0.3), sr, subtype="FLOAT"
    )
    a = Audio.from_file(tmp_path / "t.wav", sample_rate=22050)
    assert a.sample_rate == 22050 and len(a) == 44100
    assert peak_freq(a) == pytest.approx(1000, abs=1)
    # 15 kHz is above the new Nyquist (11025 Hz): the anti-aliasing filter must remove it,
    # not fold it down to 22050 - 15000 = 7050 Hz
    assert level_db(a, 1000) - level_db(a, 7050) > 60


def test_resample_method_and_identity():
    a = Audio(tone(440, 1.0, 44100), 44100)
    b = a.resample(22050)
    assert (b.sample_rate, len(b)) == (22050, 22050)
    assert peak_freq(b) == pytest.approx(440, abs=1)
    np.testing.assert_array_equal(a.resample(44100).samples, a.samples)
    c = a.resample(16000)  # a non-integer ratio (160/441)
    assert len(c) == 16000 and peak_freq(c) == pytest.approx(440, abs=1)
    with pytest.raises(ParameterError, match="sample_rate"):
        a.resample(0)


def test_from_file_segment_matches_the_full_read(tmp_path):
    sr = 8000
    x = np.random.default_rng(0).uniform(-0.5, 0.5, sr * 10).astype(np.float32)
    soundfile.write(tmp_path / "x.flac", x, sr)
    full = Audio.from_file(tmp_path / "x.flac")
    seg = Audio.from_file(tmp_path / "x.flac", offset=2.5, duration=1.25)
    np.testing.assert_array_equal(seg.samples, full.samples[20000:30000])
    assert seg.metadata["offset"] == 2.5
    tail = Audio.from_file(tmp_path / "x.flac", offset=9.5, duration=5)  # cut at the end
    assert len(tail) == 4000
    with pytest.raises(ParameterError, match=r"beyond the end .*valid range 0 to 10.000 s"):
        Audio.from_file(tmp_path / "x.flac", offset=10.5)
    with pytest.raises(ParameterError, match="offset must be"):
        Audio.from_file(tmp_path / "x.flac", offset=-1)
    with pytest.raises(ParameterError, match="duration must be"):
        Audio.from_file(tmp_path / "x.flac", duration=0)


def _write_long_wav(path, seconds, sr, block_seconds=120):
    """A 16-bit sine written block by block (the test never holds the whole file)."""
    with soundfile.SoundFile(path, "w", sr, 1, subtype="PCM_16") as out:
        for b0 in range(0, seconds, block_seconds):
            n = np.arange(b0 * sr, min(seconds, b0 + block_seconds) * sr)
            out.write((0.5 * np.sin(2 * np.pi * 440 * n / sr)).astype(np.float32))


def _best_time(fn, repeats=5):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_segment_of_a_long_file_costs_the_same_as_of_a_short_one(tmp_path):
    sr = 8000
    long_path, short_path = tmp_path / "hour.wav", tmp_path / "ten_s.wav"
    _write_long_wav(long_path, 3600, sr)
    _write_long_wav(short_path, 10, sr)
    size = os.path.getsize(long_path)
    assert size > 57_000_000  # 1 hour of 8 kHz 16-bit audio

    seg = Audio.from_file(long_path, offset=1800.0, duration=5.0)
    n = np.arange(1800 * sr, 1805 * sr)
    np.testing.assert_allclose(seg.samples, 0.5 * np.sin(2 * np.pi * 440 * n / sr), atol=1e-4)

    t_long = _best_time(lambda: Audio.from_file(long_path, offset=1800.0, duration=5.0))
    t_short = _best_time(lambda: Audio.from_file(short_path, offset=2.0, duration=5.0))
    assert t_long < 5 * t_short + 0.02, (t_long, t_short)

    tracemalloc.start()
    try:
        Audio.from_file(long_path, offset=3000.0, duration=5.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000 < size / 25, f"peak allocation {peak} bytes for a {size}-byte file"


def test_iter_segments_streams_the_whole_file(tmp_path):
    sr = 1000
    x = np.linspace(-1, 1, 2500).astype(np.float32)
    soundfile.write(tmp_path / "r.wav", x, sr, subtype="FLOAT")
    parts = list(iter_segments(tmp_path / "r.wav", 1.0))
    assert [s for s, _ in parts] == [0.0, 1.0, 2.0]
    assert [len(a) for _, a in parts] == [1000, 1000, 500]
    np.testing.assert_array_equal(np.concatenate([a.samples for _, a in parts]), x)


def test_audio_info_reads_only_the_header(tmp_path):
    soundfile.write(tmp_path / "x.wav", np.zeros(16000, np.float32), 16000)
    info = audio_info(tmp_path / "x.wav")
    assert (info.samplerate, info.frames, info.channels) == (16000, 16000, 1)


# --------------------------------------------------------------------------- bad files
def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "x.wav"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Audio.from_file(missing)
    with pytest.raises(FileNotFoundError, match="x.wav"):
        audio_info(missing)


def test_empty_random_and_folder_paths_are_audio_file_errors(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioFileError, match=r"empty\.wav.*empty \(0 bytes\)"):
        Audio.from_file(tmp_path / "empty.wav")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(AudioFileError, match=r"noise\.wav.*not a readable audio file"):
        Audio.from_file(tmp_path / "noise.wav")
    with pytest.raises(AudioFileError, match="is a folder"):
        Audio.from_file(tmp_path)
    assert issubclass(AudioFileError, ValueError)


def _chop(path, keep):
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: int(keep if keep > 1 else len(data) * keep)])
    return cut


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_truncated_wav_is_detected_although_libsndfile_shortens_it(tmp_path, subtype):
    path = tmp_path / "full.wav"
    soundfile.write(path, tone(300, 2.0, 8000), 8000, subtype=subtype)
    # header still claims the full length; 4000 bytes (>= 0.125 s) is beyond the allowance
    # of a 2-s file (5 %: 0.1 s); smaller shortfalls are read (tests/test_reliability.py)
    cut = _chop(path, path.stat().st_size - 4000)
    # libsndfile quietly reports (and returns) fewer frames, so it cannot be trusted here
    assert soundfile.info(cut).frames < 16000
    for kwargs in ({}, {"offset": 0.0, "duration": 0.5}):
        with pytest.raises(AudioFileError, match=r"cut_full\.wav.*truncated.*4000 bytes"):
            Audio.from_file(cut, **kwargs)
    with pytest.raises(AudioFileError, match="truncated"):
        audio_info(cut)


@pytest.mark.parametrize("ext", ["ogg", "flac", pytest.param("mp3", marks=needs_mp3)])
def test_compressed_file_cut_in_half_is_detected(tmp_path, ext):
    path = tmp_path / f"full.{ext}"
    noise = np.random.default_rng(2).uniform(-0.3, 0.3, 8000 * 6).astype(np.float32)
    soundfile.write(path, noise, 8000)
    assert len(Audio.from_file(path)) == len(noise)
    cut = _chop(path, 0.5)
    with pytest.raises(AudioFileError, match=rf"cut_full\.{ext}.*truncated"):
        Audio.from_file(cut)


def test_ogg_cut_at_a_page_boundary_is_detected(tmp_path):
    path = tmp_path / "full.ogg"
    soundfile.write(
        path, np.random.default_rng(3).uniform(-0.3, 0.3, 8000 * 6).astype(np.float32), 8000
    )
    data = path.read_bytes()
    last_page = data.rfind(b"OggS")
    cut = tmp_path / "pages.ogg"
    cut.write_bytes(data[:last_page])  # every page complete, but no end-of-stream page
    with pytest.raises(AudioFileError, match=r"pages\.ogg.*end-of-stream"):
        Audio.from_file(cut)


# --------------------------------------------------------------------------- editing
def test_trim_keeps_the_requested_samples():
    a = Audio(np.arange(1000, dtype=np.float32) / 1000, 100)  # 10 s
    b = a.trim(2.0, 3.5)
    assert len(b) == 150 and b.samples[0] == pytest.approx(0.2) and b.duration == 1.5
    assert len(a.trim(0, 10.0)) == 1000
    assert len(a) == 1000  # the original is untouched


@pytest.mark.parametrize(
    "start, end, match",
    [
        (-1.0, 2.0, "must be >= 0.*valid range 0 to 10.0000 s"),
        (1.0, 10.5, "beyond the end.*valid range 0 to 10.0000 s"),
        (3.0, 2.0, "greater than start_time"),
        (float("nan"), 2.0, "finite"),
    ],
)
def test_trim_outside_the_audio_says_the_valid_range(start, end, match):
    a = Audio(np.zeros(1000, np.float32), 100)
    with pytest.raises(ValueError, match=match):
        a.trim(start, end)


def test_extend_loops_and_pad_appends_zeros():
    a = Audio(np.array([1, 2, 3, 4], np.float32) / 4, 4)  # 1 s
    looped = a.extend(2.5)
    assert looped.samples.tolist() == [0.25, 0.5, 0.75, 1.0] * 2 + [0.25, 0.5]
    padded = a.pad(2.0)
    assert padded.samples.tolist() == [0.25, 0.5, 0.75, 1.0, 0, 0, 0, 0]
    assert len(a.extend(0.5)) == 2 and len(a.pad(0.5)) == 2  # longer audio is cut
    with pytest.raises(ParameterError, match="duration must be"):
        a.pad(0)
    with pytest.raises(ParameterError, match="empty audio"):
        Audio(np.zeros(0, np.float32), 4).extend(1.0)


SPLIT_CASES = {
    # final_clip: (overlap, expected (start, end) pairs after the full clips, last clip length)
    None: (0.0, [], 200),
    "remainder": (0.0, [(10.0, 10.5)], 50),
    "full": (0.0, [(8.5, 10.5)], 200),
    "extend": (0.0, [(10.0, 12.0)], 200),
}


@pytest.mark.parametrize("final_clip", list(SPLIT_CASES))
def test_split_final_clip_modes(final_clip):
    sr = 100
    a = Audio(np.arange(1050, dtype=np.float32) / 1050, sr)  # 10.5 s ramp: values tell positions
    clips, times = a.split(2.0, final_clip=final_clip)
    overlap, extra, last_len = SPLIT_CASES[final_clip]
    expected = [(s, s + 2.0) for s in (0.0, 2.0, 4.0, 6.0, 8.0)] + extra
    assert isinstance(times, pd.DataFrame) and list(times.columns) == ["start_time", "end_time"]
    np.testing.assert_allclose(times.to_numpy(), np.array(expected, dtype=float), atol=1e-9)
    assert len(clips) == len(expected) and len(clips[-1]) == last_len
    assert all(len(c) == 200 for c in clips[:5])
    for clip, (start, end) in zip(clips, expected, strict=True):
        i0 = int(round(start * sr))
        real = a.samples[i0 : min(int(round(end * sr)), len(a))]
        np.testing.assert_array_equal(clip.samples[: len(real)], real)
        assert not clip.samples[len(real) :].any()  # "extend" pads with zeros


def test_split_with_overlap_and_awkward_lengths():
    a = Audio(np.zeros(1050, np.float32), 100)
    clips, times = a.split(2.0, clip_overlap=0.5, final_clip="remainder")
    assert times.start_time.tolist() == pytest.approx([0, 1.5, 3, 4.5, 6, 7.5, 9])
    assert times.end_time.tolist() == pytest.approx([2, 3.5, 5, 6.5, 8, 9.5, 10.5])
    assert [len(c) for c in clips] == [200] * 6 + [150]
    # a clip length that is not a whole number of samples still gives equal clips
    clips, _ = Audio(np.zeros(1000, np.float32), 1000).split(1 / 3)
    assert {len(c) for c in clips} == {333} and len(clips) == 3


def test_split_errors_and_short_audio():
    a = Audio(np.zeros(150, np.float32), 100)  # 1.5 s
    with pytest.raises(ParameterError, match=r"shorter than clip_duration.*'extend'"):
        a.split(2.0)
    clips, times = a.split(2.0, final_clip="full")  # as clip labels do: all of the audio
    assert len(clips) == 1 and len(clips[0]) == 150 and times.to_numpy().tolist() == [[0.0, 1.5]]
    clips, times = a.split(2.0, final_clip="extend")
    assert len(clips) == 1 and len(clips[0]) == 200 and times.end_time[0] == 2.0
    clips, _ = a.split(2.0, final_clip="remainder")
    assert len(clips[0]) == 150
    with pytest.raises(ParameterError, match="clip_overlap"):
        a.split(1.0, clip_overlap=1.0)
    with pytest.raises(ParameterError, match="clip_duration"):
        a.split(-1.0)
    with pytest.raises(ParameterError, match="final_clip"):
        a.split(1.0, final_clip="loop")
    starts, ends = clip_times(6.0, 2.0)
    assert starts.tolist() == [0, 2, 4] and ends.tolist() == [2, 4, 6]


def test_bandpass_attenuates_out_of_band_tones_by_more_than_40_db():
    sr = 22050
    inband = tone(1000, 2.0, sr, 0.3)
    a = Audio(inband + tone(200, 2.0, sr, 0.3) + tone(4000, 2.0, sr, 0.3), sr)
    b = a.bandpass(700, 1500)
    for f in (200, 4000):
        assert level_db(a, f) - level_db(b, f) > 40
    assert abs(level_db(a, 1000) - level_db(b, 1000)) < 0.5
    # zero phase: the in-band tone comes out aligned with the input (away from the edges)
    middle = slice(sr // 2, 3 * sr // 2)
    assert np.max(np.abs(b.samples[middle] - inband[middle])) < 0.01
    assert len(Audio(tone(1000, 0.01, sr), sr).bandpass(700, 1500)) == 220  # short clips work


@pytest.mark.parametrize(
    "low, high", [(0, 1000), (-5, 1000), (2000, 1000), (100, 11025), (100, 20000)]
)
def test_bandpass_edges_outside_the_valid_band(low, high):
    a = Audio(np.zeros(22050, np.float32), 22050)
    with pytest.raises(ValueError, match=r"0 < low_f < high_f < Nyquist \(11025.0 Hz\)"):
        a.bandpass(low, high)


def test_normalize_apply_gain_and_spectrum():
    a = Audio(tone(250, 1.0, 8000, amp=0.1), 8000)
    assert np.max(np.abs(a.normalize().samples)) == pytest.approx(1.0)
    assert np.max(np.abs(a.normalize(0.5).samples)) == pytest.approx(0.5)
    assert not Audio(np.zeros(10, np.float32), 10).normalize().samples.any()
    np.testing.assert_allclose(a.apply_gain(6.0206).samples, a.samples * 2, rtol=1e-4)
    assert np.max(a.apply_gain(40).samples) == pytest.approx(1.0)  # clipped to [-1, 1]
    assert np.max(a.apply_gain(40, clip_range=None).samples) == pytest.approx(10.0, rel=1e-3)
    mags, freqs = a.spectrum()
    assert len(mags) == len(freqs) == 4001 and freqs[-1] == 4000
    assert freqs[np.argmax(mags)] == 250 and mags.max() == pytest.approx(0.05, rel=1e-3)


def test_save_rejects_unknown_extension(tmp_path):
    with pytest.raises(ParameterError, match=r"\.xyz"):
        Audio(np.zeros(10, np.float32), 10).save(tmp_path / "a.xyz")


# --------------------------------------------------------------------------- real recordings
def _first(shared_data, folder, n=3):
    labels = pd.read_csv(shared_data / folder / "labels.csv")
    return [shared_data / folder / f for f in labels.filename[:n]]


def test_real_esc10_ogg_files(shared_data):
    for path in _first(shared_data, "esc10"):
        a = Audio.from_file(path)
        assert a.sample_rate == 44100 and a.duration == pytest.approx(5.0, abs=0.01)
        assert np.max(np.abs(a.samples)) <= 1.0
        seg = Audio.from_file(path, offset=1.0, duration=2.0, sample_rate=22050)
        assert (seg.sample_rate, len(seg)) == (22050, 44100)
        np.testing.assert_allclose(seg.samples, a.trim(1.0, 3.0).resample(22050).samples, atol=1e-5)


def test_real_fsdd_wav_files(shared_data):
    for path in _first(shared_data, "fsdd"):
        a = Audio.from_file(path)
        assert a.sample_rate == 8000 and 0.1 < a.duration < 2.5
        assert np.abs(a.samples).max() > 0.01  # a spoken digit, not silence
        clips, times = a.split(0.1, final_clip="full")
        assert times.end_time.iloc[-1] == pytest.approx(a.duration)
        assert {len(c) for c in clips} == {800}


def test_real_bengalese_finch_wav_segments(shared_data):
    path = _first(shared_data, "bengalese_finch", 1)[0]
    full = Audio.from_file(path)
    assert full.sample_rate == 32000 and 4 <= full.duration <= 14
    seg = Audio.from_file(path, offset=1.0, duration=1.0)
    np.testing.assert_array_equal(seg.samples, full.samples[32000:64000])
    song = full.bandpass(1000, 10000)
    assert np.isfinite(song.samples).all() and len(song) == len(full)
