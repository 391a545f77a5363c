"""Class activation maps of a briefly trained woodcock model concentrate on the peent."""

import io
from contextlib import redirect_stdout
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("pytorch_grad_cam", reason="the cams extra (grad-cam) is not installed")

from soundscape import sample_data  # noqa: E402
from soundscape.audio import Audio  # noqa: E402
from soundscape.cams import cams, default_target_layer, plot_cam  # noqa: E402
from soundscape.datasets import SingleTargetAudioDataset  # noqa: E402
from soundscape.errors import ParameterError  # noqa: E402
from soundscape.model_file import Detector  # noqa: E402
from soundscape.models import build  # noqa: E402
from soundscape.models.compact import CompactCNN, compact_preprocessing  # noqa: E402
from soundscape.torch.train import train  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "sample_data" / "woodcock_labeled_data"
RATE = 22050


@pytest.fixture(scope="module")
def woodcock_model(tmp_path_factory):
    """A compact CNN trained on clips like the ones it explains: a peent at a random time in
    quiet wind (half the clips), or wind alone, written as WAV files."""
    import soundfile

    folder = tmp_path_factory.mktemp("cam_clips")
    rows = []
    for k in range(48):
        gen = np.random.default_rng(1000 + k)
        if k % 2:
            audio, _ = _clip_with_peent(float(gen.uniform(0.1, 1.6)), 1000 + k)
            samples = audio.samples
        else:
            samples = sample_data.background(2.0, RATE, gen, wind_db=-45.0).astype(np.float32)
        path = folder / f"clip_{k:02d}.wav"
        soundfile.write(path, samples, RATE)
        rows.append({"file": str(path), "label": k % 2})
    table = pd.DataFrame(rows)
    prep = compact_preprocessing(sample_rate=RATE, clip_duration=2.0, n_mels=48,
                                 window_samples=512, min_frequency=500, max_frequency=8000)
    ds = SingleTargetAudioDataset(table, {0: "absent", 1: "woodcock"}, "file", "label",
                                  preprocessing=prep)
    torch.manual_seed(0)
    model = CompactCNN(2, widths=(16, 32, 64), dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with redirect_stdout(io.StringIO()):
        train(tmp_path_factory.mktemp("cam_model"), model, ds, ds, optimizer,
              torch.nn.CrossEntropyLoss(), epochs=8, batch_size=8, num_workers=0,
              log_every=100, seed=0, device="cpu", progress_bar=False, precision="fp32")
    return Detector(model, "compact_cnn", ["absent", "woodcock"], False, prep,
                    model.init_kwargs)


def _clip_with_peent(at: float = 1.2, seed: int = 3):
    gen = np.random.default_rng(seed)
    params = sample_data.PeentParams.random(gen)
    call = sample_data.peent(RATE, params, gen)
    samples = sample_data.background(2.0, RATE, gen, wind_db=-45.0).astype(np.float64)
    i = int(at * RATE)
    samples[i:i + len(call)] += 0.3 * call[: len(samples) - i]
    low, high = params.band_hz(RATE)
    return Audio(samples.astype(np.float32), RATE), (at, at + params.duration_s, low, high)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_map_concentrates_on_the_peent(woodcock_model, method, tmp_path):
    clips, boxes = zip(*[_clip_with_peent(at, seed) for at, seed in [(0.3, 1), (1.2, 2), (1.5, 3)]])
    result = cams(woodcock_model, list(clips), method=method, target="woodcock")
    assert result.maps.shape == (3, 48, woodcock_model.preprocessing.width)
    assert np.all(np.diff(result.frequencies) > 0) and result.times[-1] < 2.0
    for i, box in enumerate(boxes):
        energy, area = result.box_fraction(i, *box)
        print(f"{method} clip {i}: {energy / area:.1f}x the box's share of the map")
        assert energy > 4 * area, (i, energy, area)
    fig = plot_cam(result, 1, fname=tmp_path / "cam.png")
    assert (tmp_path / "cam.png").stat().st_size > 1000 and fig.axes


def test_table_input_resnet_and_errors(woodcock_model, tmp_path):
    files = sorted(DATA.glob("*.wav"))[:2]
    table = pd.DataFrame({"file": [str(f) for f in files], "start_time": 0.0, "end_time": 2.0})
    result = cams(woodcock_model, table)
    assert result.index["file"].tolist() == table["file"].tolist()
    assert set(result.targets) <= {"absent", "woodcock"}
    resnet = build("resnet18", 2)
    prep = woodcock_model.preprocessing.replace(height=64, width=64, channels=3)
    detector = Detector(resnet, "resnet18", ["absent", "woodcock"], False, prep)
    assert default_target_layer(resnet) is resnet.layer4[-1]
    out = cams(detector, [_clip_with_peent()[0]], method="gradcam++", target="woodcock")
    assert out.maps.shape == (1, 64, 64) and 0 <= out.maps.min() <= out.maps.max() <= 1
    with pytest.raises(ParameterError, match="unknown target"):
        cams(woodcock_model, table, target="owl")
    with pytest.raises(ParameterError, match="method"):
        cams(woodcock_model, table, method="score")
