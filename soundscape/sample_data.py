"""Deterministic synthetic woodcock data: labelled clips and field-like recordings.

``python -m soundscape.sample_data [--out sample_data] [--seed N]`` (re)writes:

``woodcock_labeled_data/`` (29 two-second 22.05 kHz WAV clips and ``woodcock_labels.csv``)
and ``field_recording/`` (a 10-minute FLAC with ~40 peents and its Raven selection table).
The pieces (:func:`peent`, :func:`intro_note`, :func:`background`, :func:`synthetic_recording`)
are public so tests and benchmarks can make field-like audio of any length. All randomness
comes from ``numpy.random.default_rng`` streams keyed by the seed: same seed, same samples.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import signal

from soundscape.errors import ParameterError

DEFAULT_SEED = 2024
CLIP_RATE = 22050
CLIP_SECONDS = 2.0
FIELD_SECONDS = 600.0
FIELD_PEENTS = 40
LABEL_COLUMNS = ["filename", "woodcock", "sound_type"]
TRUTH_COLUMNS = ["start_time", "end_time", "low_f", "high_f", "annotation"]
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                 "Low Freq (Hz)", "High Freq (Hz)", "Species"]
_HARMONICS = np.array([1.0, 0.5, 0.25, 0.1, 0.04])
_CHUNK_SECONDS = 10.0
_TWO_PI = 2.0 * np.pi


def _rng(seed: int | np.random.Generator | None, *keys: int) -> np.random.Generator:
    """A generator for ``seed`` (a Generator passes through); ``keys`` pick sub-streams."""
    if isinstance(seed, np.random.Generator):
        return seed
    seed = 0 if seed is None else seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), *keys])


def _check_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 192000:
        raise ParameterError(
            f"sample_rate must be an integer from 8000 to 192000 Hz, got {sample_rate!r}")
    return int(sample_rate)


def _db(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0))


def _envelope(n: int, sample_rate: int, attack_s: float, release_s: float) -> np.ndarray:
    """Raised-cosine attack and release over ``n`` samples."""
    i = np.arange(n)
    rise = np.clip(i / max(attack_s * sample_rate, 1), 0, 1)
    fall = np.clip((n - 1 - i) / max(release_s * sample_rate, 1), 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))


def _room(x: np.ndarray, sample_rate: int, gen: np.random.Generator, wet: float) -> np.ndarray:
    """Add a short decaying reflection tail (ground/vegetation echoes); output is longer."""
    n_tail = int(0.08 * sample_rate)
    ir = np.zeros(n_tail)
    ir[0] = 1.0
    onset = int(0.004 * sample_rate)
    decay = np.exp(-np.arange(n_tail - onset) / (0.02 * sample_rate))
    ir[onset:] = wet * gen.standard_normal(n_tail - onset) * decay * 0.3
    return signal.fftconvolve(x, ir)


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = np.max(np.abs(x))
    return x / peak if peak > 0 else x


@dataclass(frozen=True)
class PeentParams:
    """Shape of one synthetic peent: ``buzz_hz`` is the pulse rate that makes it nasal;
    ``distance`` 0 (close) to 1 (far: upper harmonics dulled, more reverberation)."""

    duration_s: float = 0.25
    f0_hz: float = 2900.0
    buzz_hz: float = 75.0
    buzz_depth: float = 0.7
    fm_hz: float = 80.0
    distance: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator, distance: float = 0.0) -> "PeentParams":
        """Draw a plausible peent (0.2-0.3 s, fundamental 2.3-3.5 kHz)."""
        return cls(duration_s=float(rng.uniform(0.2, 0.3)), f0_hz=float(rng.uniform(2300, 3500)),
                   buzz_hz=float(rng.uniform(55, 110)), buzz_depth=float(rng.uniform(0.45, 0.85)),
                   fm_hz=float(rng.uniform(40, 140)), distance=float(np.clip(distance, 0, 1)))

    def harmonic_amplitudes(self, sample_rate: int) -> np.ndarray:
        """Relative amplitude of each harmonic; 0 for those too close to Nyquist."""
        h = np.arange(1, len(_HARMONICS) + 1)
        amps = _HARMONICS * np.exp(-1.5 * self.distance * (h - 1))
        return amps * ((h == 1) | (h * (self.f0_hz + self.fm_hz) < 0.45 * sample_rate))

    def band_hz(self, sample_rate: int) -> tuple[float, float]:
        """Low and high frequency of the visible energy (harmonics >= 30% of the fundamental)."""
        amps = self.harmonic_amplitudes(sample_rate)
        top = int(np.flatnonzero(amps >= 0.3)[-1]) + 1
        low = 0.94 * self.f0_hz - self.fm_hz - self.buzz_hz
        high = top * (0.985 * self.f0_hz + self.fm_hz) + self.buzz_hz
        return float(low), float(min(high, sample_rate / 2))


def peent(sample_rate: int = CLIP_RATE, params: PeentParams | None = None,
          rng: int | np.random.Generator | None = None) -> np.ndarray:
    """Synthesize one woodcock "peent": a buzzy, nasal harmonic call, peak-normalised to 1.

    ``params`` (the call's shape) is drawn from ``rng`` (seed or Generator, which also sets
    phases, breath noise and echoes) when omitted. Returns float64 samples:
    ``params.duration_s`` of call followed by an 80 ms echo tail.
    """
    sample_rate = _check_rate(sample_rate)
    gen = _rng(rng)
    p = params if params is not None else PeentParams.random(gen)
    n = max(int(round(p.duration_s * sample_rate)), 16)
    t = np.arange(n) / sample_rate
    tn = t / p.duration_s
    buzz = _TWO_PI * p.buzz_hz * t + gen.uniform(0, _TWO_PI)
    f_inst = p.f0_hz * (1 - 0.06 * np.exp(-tn / 0.12) - 0.04 * tn) + p.fm_hz * np.sin(buzz)
    phase = _TWO_PI * np.cumsum(f_inst) / sample_rate
    amps = p.harmonic_amplitudes(sample_rate)
    h = np.arange(1, len(amps) + 1)[:, None]
    tone = amps @ np.sin(h * phase + gen.uniform(0, _TWO_PI, (len(amps), 1)))
    band = [0.8 * p.f0_hz, min(1.3 * p.f0_hz, 0.45 * sample_rate)]
    breath = signal.sosfilt(signal.butter(2, band, "bandpass", fs=sample_rate, output="sos"),
                            gen.standard_normal(n))
    breath *= 0.3 / (np.std(breath) + 1e-12)
    pulses = 1 - p.buzz_depth + p.buzz_depth * ((1 + np.cos(buzz)) / 2) ** 2
    wave = (tone + breath) * pulses * _envelope(n, sample_rate, 0.02, 0.05) * (1 - 0.2 * tn)
    return _normalise(_room(wave, sample_rate, gen, 0.15 + 0.6 * p.distance))


def intro_note(sample_rate: int = CLIP_RATE, rng: int | np.random.Generator | None = None,
               freq_hz: float | None = None, duration_s: float | None = None) -> np.ndarray:
    """The soft, low "tuk" note (~1 kHz, 35-70 ms) that can precede a peent; peak 1."""
    sample_rate = _check_rate(sample_rate)
    gen = _rng(rng)
    f = float(freq_hz) if freq_hz is not None else gen.uniform(850, 1250)
    d = float(duration_s) if duration_s is not None else gen.uniform(0.035, 0.07)
    if not (100 <= f < 0.45 * sample_rate and 0.005 <= d <= 1.0):
        raise ParameterError(f"intro_note needs 100 <= freq_hz < 0.45*sample_rate and "
                             f"0.005 <= duration_s <= 1, got freq_hz={f}, duration_s={d}")
    t = np.arange(max(int(round(d * sample_rate)), 8)) / sample_rate
    phase = _TWO_PI * np.cumsum(f * (1.08 - 0.16 * t / d)) / sample_rate
    wave = np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.08 * np.sin(3 * phase)
    wave *= (1 - np.exp(-t / 0.003)) * np.exp(-t / (0.35 * d))
    return _normalise(_room(wave, sample_rate, gen, 0.2))


def bird_phrase(sample_rate: int = CLIP_RATE,
                rng: int | np.random.Generator | None = None) -> np.ndarray:
    """Another bird's phrase: 2-6 repeated frequency sweeps (chirps), peak-normalised to 1."""
    sample_rate = _check_rate(sample_rate)
    gen = _rng(rng)
    top = 0.45 * sample_rate
    f_a = min(gen.uniform(2000, 8000), 0.9 * top)
    f_b = float(np.clip(f_a * gen.choice([0.45, 0.6, 1.6, 2.2]), 1500, top))
    d = gen.uniform(0.03, 0.15)
    n_chirps, gap = int(gen.integers(2, 7)), gen.uniform(0.05, 0.25)
    t = np.arange(int(d * sample_rate)) / sample_rate
    phase = _TWO_PI * np.cumsum(f_a * (f_b / f_a) ** (t / d)) / sample_rate
    chirp = np.sin(phase) + 0.15 * np.sin(2 * phase) * (2 * f_b < top)
    chirp *= np.sin(np.pi * t / d) ** 1.5
    hop = int((d + gap) * sample_rate)
    out = np.zeros(hop * (n_chirps - 1) + len(chirp))
    gains = np.linspace(1.0, gen.uniform(0.5, 1.0), n_chirps)
    idx = np.arange(n_chirps)[:, None] * hop + np.arange(len(chirp))
    np.add.at(out, idx, gains[:, None] * chirp)
    return _normalise(_room(out, sample_rate, gen, 0.3))


@dataclass
class _Voice:
    """One pulsed narrowband singer (insect or frog) of a chorus."""

    amp: float
    freq: float
    rate: float
    sharp: int
    harm2: float
    bout_rate: float
    bout_cut: float
    phases: np.ndarray

    def render(self, t: np.ndarray) -> np.ndarray:
        """Samples at times ``t`` (seconds); phases are in cycles."""
        carrier = _osc(self.freq * t + self.phases[0])
        if self.harm2:
            carrier += self.harm2 * _osc(2 * self.freq * t + self.phases[1])
        pulse = (0.5 + 0.5 * _osc(self.rate * t + self.phases[2])) ** self.sharp
        if self.bout_rate:
            bout = _osc(self.bout_rate * t + self.phases[3]) - self.bout_cut
            pulse *= np.clip(bout * 4, 0, 1)
        return carrier * pulse * self.amp


def _osc(cycles: np.ndarray) -> np.ndarray:
    """``sin(2 pi cycles)``, reducing ``cycles`` (overwritten) to [0, 1) first: faster, exact."""
    cycles -= np.floor(cycles)
    cycles *= _TWO_PI
    return np.sin(cycles, out=cycles)


def _insect(gen: np.random.Generator, level_db: float, sample_rate: int) -> _Voice | None:
    hi = min(6000.0, 0.42 * sample_rate)
    if hi <= 3000:
        return None
    chirping = gen.random() < 0.5
    return _Voice(_db(level_db + gen.uniform(-4, 0)), gen.uniform(3000, hi), gen.uniform(15, 60),
                  int(gen.integers(2, 5)), 0.0, gen.uniform(0.8, 3.0) if chirping else 0.0,
                  0.2, gen.uniform(0, 1, 4))


def _frog(gen: np.random.Generator, level_db: float, sample_rate: int) -> _Voice:
    return _Voice(_db(level_db + gen.uniform(-4, 0)), gen.uniform(500, 2000), gen.uniform(8, 25),
                  6, 0.3, gen.uniform(0.15, 0.6), 0.4, gen.uniform(0, 1, 4))


@dataclass
class _Event:
    start: int
    gain: float
    kind: str
    key: tuple
    params: PeentParams | None = None

    def wave(self, sample_rate: int) -> np.ndarray:
        gen = _rng(*self.key)
        if self.kind == "peent":
            return self.gain * peent(sample_rate, self.params, gen)
        maker = intro_note if self.kind == "intro" else bird_phrase
        return self.gain * maker(sample_rate, gen)


@dataclass
class _Scene:
    """Everything needed to render a recording chunk by chunk."""

    sample_rate: int
    n_samples: int
    key: tuple
    wind_amp: float
    wind_cutoff: float
    gust_t: np.ndarray
    gust_v: np.ndarray
    floor_amp: float
    choruses: list = field(default_factory=list)  # (gate_t, gate_v, [voices])
    events: list = field(default_factory=list)


def _render(scene: _Scene, chunk_s: float = _CHUNK_SECONDS) -> np.ndarray:
    """Render ``scene`` to float32 in chunks (filter state carried; events cached)."""
    sr, n = scene.sample_rate, scene.n_samples
    wind_rng, floor_rng = _rng(*scene.key, 1), _rng(*scene.key, 2)
    sos = signal.butter(4, scene.wind_cutoff, "lowpass", fs=sr, output="sos")
    wind_gain = scene.wind_amp / np.linalg.norm(signal.sosfilt(sos, signal.unit_impulse(sr)))
    zi = signal.sosfilt_zi(sos) * 0.0
    _, zi = signal.sosfilt(sos, wind_rng.standard_normal(sr // 2), zi=zi)  # settle the filter
    events = sorted(scene.events, key=lambda e: e.start)
    out = np.empty(n, dtype=np.float32)
    chunk = max(int(chunk_s * sr), 1)
    cache, j = {}, 0  # index -> synthesized wave of events that reach into this chunk
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        t = np.arange(c0, c1) / sr
        buf = scene.floor_amp * floor_rng.standard_normal(c1 - c0)
        wind, zi = signal.sosfilt(sos, wind_rng.standard_normal(c1 - c0), zi=zi)
        buf += wind_gain * wind * np.exp(np.interp(t, scene.gust_t, scene.gust_v))
        for gate_t, gate_v, voices in scene.choruses:
            gate = np.interp(t, gate_t, gate_v)
            if gate.max() > 0:
                for voice in voices:
                    buf += gate * voice.render(t)
        while j < len(events) and events[j].start < c1:
            cache[j], j = events[j].wave(sr), j + 1
        for i, wave in list(cache.items()):
            e0 = events[i].start
            lo, hi = max(c0, e0), min(c1, e0 + len(wave))
            if hi > lo:
                buf[lo - c0:hi - c0] += wave[lo - e0:hi - e0]
            if e0 + len(wave) <= c1:
                del cache[i]
        out[c0:c1] = buf
    return out


def _gusts(gen: np.random.Generator, duration_s: float, trend_db: float = 0.0):
    """Knots of the wind's log-gain: gusts every ~0.7 s on a slow random trend."""
    t = np.arange(-1.0, duration_s + 2.0, 0.7) + gen.uniform(0, 0.7)
    trend_t = np.arange(-30.0, duration_s + 60.0, 30.0)
    trend = np.interp(t, trend_t, gen.normal(0, trend_db, len(trend_t))) if trend_db else 0.0
    return t, gen.normal(-0.2, 0.55, len(t)) + trend * np.log(10) / 20


def _scene(duration_s: float, sample_rate: int, key: tuple, gen: np.random.Generator, *,
           wind_db: float, floor_db: float, trend_db: float = 0.0) -> _Scene:
    sample_rate = _check_rate(sample_rate)
    if not isinstance(duration_s, (int, float, np.number)) or not 0 < duration_s < 1e6:
        raise ParameterError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    gust_t, gust_v = _gusts(gen, duration_s, trend_db)
    return _Scene(sample_rate, int(round(duration_s * sample_rate)), key, _db(wind_db),
                  float(gen.uniform(80, 300)), gust_t, gust_v, _db(floor_db))


def _constant_background(scene: _Scene, gen: np.random.Generator, insect_db, frog_db, bird_db):
    duration = scene.n_samples / scene.sample_rate
    always = (np.array([-1.0, duration + 1]), np.ones(2))
    if insect_db is not None:
        voices = [_insect(gen, insect_db, scene.sample_rate) for _ in range(gen.integers(1, 4))]
        scene.choruses.append((*always, [v for v in voices if v is not None]))
    if frog_db is not None:
        scene.choruses.append((*always, [_frog(gen, frog_db, scene.sample_rate)
                                         for _ in range(gen.integers(1, 3))]))
    if bird_db is not None:
        for _ in range(max(1, gen.poisson(0.2 * duration))):
            start = int(gen.uniform(-0.5, duration - 0.2) * scene.sample_rate)
            scene.events.append(_Event(start, _db(bird_db + gen.uniform(-6, 0)), "bird",
                                       (*scene.key, 3, int(gen.integers(2**31)))))


def background(duration_s: float, sample_rate: int = CLIP_RATE,
               rng: int | np.random.Generator | None = None, *, wind_db: float = -35.0,
               insect_db: float | None = None, frog_db: float | None = None,
               bird_db: float | None = None, floor_db: float = -66.0) -> np.ndarray:
    """Field background: gusting wind, optional insect/frog chorus and other birds' chirps.

    Levels are in dBFS: ``wind_db`` and ``floor_db`` (white self-noise) as RMS, the chorus
    levels as the peak of one singer, ``bird_db`` as a phrase's peak. ``None`` leaves the
    component out. Returns float32 samples.
    """
    gen = _rng(rng)
    key = (int(gen.integers(2**31)),)
    scene = _scene(duration_s, sample_rate, key, gen, wind_db=wind_db, floor_db=floor_db)
    _constant_background(scene, gen, insect_db, frog_db, bird_db)
    return _render(scene)


def clip_plan(seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """The labelled-clip layout for ``seed``: labels plus where and how loud each sound is.

    Row 0 is a song, row 1 an absence, rows 8 and 22 the two calls. Times are seconds in
    the clip (NaN when absent); levels are dBFS (NaN: component left out).

    The clips come from the same simulated site as :func:`synthetic_recording`: its
    recorder self-noise, wind, insect and frog choruses, other birds, and peents at the
    levels and distances of the field recording, so a model trained on them meets the
    same kind of background in the recording.
    """
    gen = _rng(seed, 10)
    kinds = np.empty(29, dtype=object)
    kinds[[0, 1, 8, 22]] = ["song", "absent", "call", "call"]
    free = np.flatnonzero(kinds == None)  # noqa: E711 - object array comparison
    kinds[free] = gen.permutation(["song"] * 19 + ["absent"] * 6)
    absent = np.flatnonzero(kinds == "absent")
    songs = np.flatnonzero(kinds == "song")
    loud_absent = set(gen.choice(absent[1:], 2, replace=False))
    faint_song = set(gen.choice(songs[1:], 3, replace=False))
    rows = []
    for i, kind in enumerate(kinds):
        r = {"filename": hashlib.md5(f"woodcock-{seed}-{i}".encode()).hexdigest() + ".wav",
             "woodcock": "absent" if kind == "absent" else "present",
             "sound_type": "na" if kind == "absent" else kind,
             "wind_db": gen.uniform(-48, -36), "floor_db": gen.uniform(-94, -90),
             "insect_db": gen.uniform(-50, -38) if gen.random() < 0.5 else np.nan,
             "frog_db": gen.uniform(-48, -34) if gen.random() < 0.45 else np.nan,
             "bird_db": gen.uniform(-40, -18) if gen.random() < 0.6 else np.nan,
             "peent_start": np.nan, "peent_end": np.nan, "peent_db": np.nan,
             "intro_start": np.nan, "intro_db": np.nan}
        if kind == "song":
            params = PeentParams.random(_rng(seed, 11, i))
            r["peent_db"] = gen.uniform(-38, -14)
            has_intro = gen.random() < 0.6 or i == 0
            earliest = 0.35 if has_intro else 0.05
            r["peent_start"] = gen.uniform(earliest, CLIP_SECONDS - params.duration_s - 0.1)
            r["peent_end"] = r["peent_start"] + params.duration_s
            if has_intro:
                r["intro_start"] = r["peent_start"] - gen.uniform(0.12, 0.28)
                r["intro_db"] = r["peent_db"] - gen.uniform(12, 20)
        elif kind == "call":
            r["intro_start"], r["intro_db"] = gen.uniform(0.1, 1.8), gen.uniform(-38, -26)
        if i == 0:
            r.update(peent_db=-14.0, insect_db=np.nan, wind_db=-40.0)
        elif i == 1:
            r.update(wind_db=-40.0, insect_db=np.nan, frog_db=-38.0, bird_db=-22.0)
        elif i in loud_absent:  # a gusty, noisy moment
            r.update(wind_db=gen.uniform(-32, -28), frog_db=gen.uniform(-36, -32))
        elif i in faint_song:  # a distant bird on a calm night
            r.update(peent_db=gen.uniform(-48, -42), wind_db=gen.uniform(-48, -44),
                     insect_db=np.nan, frog_db=np.nan, intro_db=np.nan, intro_start=np.nan)
        rows.append(r)
    return pd.DataFrame(rows)


def _render_clip(row: pd.Series, index: int, seed: int) -> np.ndarray:
    gen = _rng(seed, 12, index)
    scene = _scene(CLIP_SECONDS, CLIP_RATE, (seed, 13, index), gen,
                   wind_db=row.wind_db, floor_db=row.floor_db)
    _constant_background(scene, gen, *[None if pd.isna(row[k]) else float(row[k])
                                       for k in ("insect_db", "frog_db", "bird_db")])
    if not pd.isna(row.peent_start):
        params = PeentParams.random(_rng(seed, 11, index), distance=_distance(row.peent_db))
        scene.events.append(_Event(int(row.peent_start * CLIP_RATE), _db(row.peent_db), "peent",
                                   (seed, 14, index), params))
    if not pd.isna(row.intro_start):
        scene.events.append(_Event(int(row.intro_start * CLIP_RATE), _db(row.intro_db), "intro",
                                   (seed, 15, index)))
    return _render(scene)


def _distance(level_db: float) -> float:
    """How far a peent of this level sounds (0 close, 1 far), as in the field recording."""
    return float(np.clip((-16.0 - level_db) / 36.0, 0.0, 1.0))


def _peent_times(gen: np.random.Generator, duration_s: float, n_peents: int) -> np.ndarray:
    """Onsets: mostly bursts of 2-6 peents 2-4.5 s apart, some isolated, spread over time."""
    sizes = []
    while sum(sizes) < n_peents:
        sizes.append(min(int(gen.integers(2, 7)) if gen.random() < 0.75 else 1,
                         n_peents - sum(sizes)))
    slot = (duration_s - 1.0) / len(sizes)
    times = []
    for k, size in enumerate(sizes):
        gap = min(gen.uniform(2.0, 4.5), max((slot - 0.4) / size, 0.35))
        span = gap * (size - 1)
        first = 0.1 + k * slot + gen.uniform(0, max(slot - span - 0.4, 0))
        times.extend(first + gap * np.arange(size) + gen.uniform(-0.1, 0.1, size) * (gap > 1))
    return np.clip(np.array(times), 0.05, duration_s - 0.35)


def _switching_gate(gen: np.random.Generator, duration_s: float, mean_on: float,
                    mean_off: float, fade_s: float = 3.0):
    """Knots of a chorus that switches on and off (random segment lengths, faded edges)."""
    t, on, knots_t, knots_v = -1.0, gen.random() < 0.5, [], []
    while t < duration_s + 1:
        level = gen.uniform(0.4, 1.0) if on else 0.0
        seg = gen.exponential(mean_on if on else mean_off) + 2 * fade_s
        knots_t += [t, t + seg - fade_s]
        knots_v += [level, level]
        t, on = t + seg, not on
    return np.array(knots_t), np.array(knots_v)


def synthetic_recording(duration_s: float, sample_rate: int = 32000, seed: int = 0,
                        n_peents: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """A field-like recording of ``duration_s`` seconds with woodcock peents at known times.

    The background changes over time (gusting wind, insect and frog choruses switching on
    and off, other birds); lone intro notes and bird phrases are distractors. Peents come
    mostly in bursts, some isolated, a few faint; ``n_peents`` defaults to one per 15 s
    (at most one per 2 s). Rendered in 10 s chunks, so an hour at 32 kHz takes seconds.

    Returns
    -------
    samples : numpy.ndarray
        float32 mono samples in [-1, 1].
    truth : pandas.DataFrame
        One row per peent: ``start_time, end_time, low_f, high_f, annotation``.
    """
    gen = _rng(seed, 20)
    scene = _scene(duration_s, sample_rate, (seed, 21), gen, wind_db=gen.uniform(-46, -38),
                   floor_db=-92.0, trend_db=5.0)
    n_peents = int(round(duration_s / 15)) if n_peents is None else n_peents
    if not isinstance(n_peents, (int, np.integer)) or not 0 <= n_peents <= duration_s / 2:
        raise ParameterError(f"n_peents must be an integer from 0 to duration_s/2 "
                             f"({int(duration_s / 2)}), got {n_peents!r}")
    sr = scene.sample_rate
    for mean_on, maker, level in ((120, _insect, gen.uniform(-48, -38)),
                                  (80, _frog, gen.uniform(-46, -34))):
        voices = [maker(gen, level, sr) for _ in range(gen.integers(2, 4))]
        scene.choruses.append((*_switching_gate(gen, duration_s, mean_on, 90.0),
                               [v for v in voices if v is not None]))
    onsets = _peent_times(gen, duration_s, n_peents) if n_peents else np.zeros(0)
    rows = []
    for i, onset in enumerate(onsets):
        level = gen.uniform(-58, -48) if gen.random() < 0.12 else gen.uniform(-38, -14)
        params = PeentParams.random(_rng(seed, 22, i), distance=_distance(level))
        scene.events.append(_Event(int(onset * sr), _db(level), "peent", (seed, 23, i), params))
        if gen.random() < 0.4 and onset > 0.4:
            intro_at = onset - gen.uniform(0.12, 0.28)
            scene.events.append(_Event(int(intro_at * sr), _db(level - gen.uniform(12, 20)),
                                       "intro", (seed, 24, i)))
        rows.append((onset, onset + params.duration_s, *params.band_hz(sr), "woodcock"))
    candidates = gen.uniform(0.1, max(duration_s - 0.3, 0.2), 20 + n_peents)
    far = np.all(np.abs(candidates[:, None] - onsets[None, :]) > 1.0, axis=1)
    for k, at in enumerate(candidates[far][:max(2, n_peents // 8)]):
        scene.events.append(_Event(int(at * sr), _db(gen.uniform(-38, -26)), "intro",
                                   (seed, 25, k)))
    for k, at in enumerate(gen.uniform(-0.5, duration_s, gen.poisson(duration_s / 12))):
        scene.events.append(_Event(int(at * sr), _db(gen.uniform(-40, -18)), "bird",
                                   (seed, 26, k)))
    samples = _render(scene)
    np.clip(samples, -1.0, 1.0, out=samples)
    truth = pd.DataFrame(rows, columns=TRUTH_COLUMNS)
    return samples, truth


def write_raven_table(truth: pd.DataFrame, path: str | Path) -> Path:
    """Write ``truth`` (``start_time, end_time, low_f, high_f, annotation``) as a Raven table."""
    path = Path(path)
    lines = ["\t".join(RAVEN_COLUMNS)]
    for i, r in enumerate(truth.itertuples(index=False), start=1):
        lines.append(f"{i}\tSpectrogram 1\t1\t{r.start_time:.4f}\t{r.end_time:.4f}\t"
                     f"{r.low_f:.1f}\t{r.high_f:.1f}\t{r.annotation}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_pcm16(path: Path, samples: np.ndarray, sample_rate: int, fmt: str) -> Path:
    peak = float(np.max(np.abs(samples)))
    if peak > 0.97:
        samples = samples * (0.97 / peak)
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
    extra = {"compression_level": 1.0} if fmt == "FLAC" else {}
    sf.write(path, pcm, sample_rate, format=fmt, subtype="PCM_16", **extra)
    return path


def generate(out_dir: str | Path = "sample_data", seed: int = DEFAULT_SEED) -> dict:
    """Write the labelled clips, their CSV, the field recording and its Raven table.

    Returns a dict of the paths written: ``labels`` (CSV), ``clips`` (list of WAVs),
    ``field_recording`` (FLAC) and ``selections`` (Raven table).
    """
    out = Path(out_dir)
    clip_dir, field_dir = out / "woodcock_labeled_data", out / "field_recording"
    for folder in (clip_dir, field_dir):
        folder.mkdir(parents=True, exist_ok=True)
    plan = clip_plan(seed)
    clips = [_write_pcm16(clip_dir / row.filename, _render_clip(row, i, seed), CLIP_RATE, "WAV")
             for i, row in plan.iterrows()]
    labels = clip_dir / "woodcock_labels.csv"
    plan[LABEL_COLUMNS].to_csv(labels, index=False, lineterminator="\n")
    samples, truth = synthetic_recording(FIELD_SECONDS, CLIP_RATE, seed, FIELD_PEENTS)
    flac = _write_pcm16(field_dir / "field_recording.flac", samples, CLIP_RATE, "FLAC")
    table = write_raven_table(truth, field_dir / "field_recording.Table.1.selections.txt")
    return {"labels": labels, "clips": clips, "field_recording": flac, "selections": table}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m soundscape.sample_data``."""
    parser = argparse.ArgumentParser(prog="python -m soundscape.sample_data",
                                     description="Write the synthetic woodcock sample data.")
    parser.add_argument("--out", default="sample_data", help="output folder (%(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed (%(default)s)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    paths = generate(args.out, args.seed)
    print(f"wrote {len(paths['clips'])} clips and {paths['field_recording']} under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
