"""ONNX export (network alone and with the front end) checked against torch, and the ONNX
Runtime backend of the predictor. Real audio: the sample field recording."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import soundscape
from soundscape.cli import main
from soundscape.errors import ParameterError
from soundscape.model_file import Detector
from soundscape.models.compact import compact_cnn, compact_preprocessing
from soundscape.preprocessing import Preprocessing
from soundscape.torch.models import build

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FIELD = Path(__file__).resolve().parents[1] / "sample_data" / "field_recording" / "field_recording.flac"
RATE = 22050


@pytest.fixture(scope="module")
def waves() -> torch.Tensor:
    audio, rate = sf.read(FIELD, frames=12 * RATE, dtype="float32")
    assert rate == RATE
    n = 2 * RATE
    return torch.from_numpy(np.stack([audio[i * n:(i + 1) * n] for i in range(6)]).copy())


def _detector(prep: Preprocessing, network=None) -> Detector:
    torch.manual_seed(0)
    network = network if network is not None else compact_cnn(3, in_channels=prep.channels)
    return Detector(network.eval(), "compact_cnn", ["a", "b", "c"], False, prep)


def _session(path) -> "ort.InferenceSession":
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("prep", [
    compact_preprocessing(sample_rate=RATE, clip_duration=2.0, frames=None),  # mel image, 1 channel
    Preprocessing(sample_rate=RATE, clip_duration=2.0, height=96, width=96, channels=3,
                  min_frequency=500.0, max_frequency=9000.0),  # band-limited 3-channel image
], ids=["mel_image", "band_image"])
def test_exported_detector_matches_torch_with_and_without_front_end(prep, waves, tmp_path):
    det = _detector(prep)
    features = prep.features(waves)
    with torch.inference_mode():
        ref = det(features).numpy()
    net_path = det.export_onnx(tmp_path / "net.onnx")
    got = _session(net_path).run(None, {"features": features.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)

    full_path = det.export_onnx(tmp_path / "full.onnx", frontend=True)
    session = _session(full_path)
    assert [i.name for i in session.get_inputs()] == ["waveform"]
    got = session.run(None, {"waveform": waves.numpy()})[0]
    # the graph's front end computes in float32 (the torch one's STFT in float64)
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["input"] == "waveform" and meta["classes"] == '["a", "b", "c"]'
    assert Preprocessing.from_dict(__import__("json").loads(meta["preprocessing"])) == prep
    got_one = session.run(None, {"waveform": waves[:1].numpy()})[0]  # the batch axis is free
    np.testing.assert_allclose(got_one, got[:1], atol=1e-5)


def test_config_fbank_model_exports_with_its_front_end(waves, tmp_path):
    from soundscape.workflow.model import ConfigModel

    config = soundscape.config.load_config({
        "input_features": [{"name": "audio", "type": "audio",
                            "encoder": {"type": "stacked_cnn", "num_filters": 8, "num_layers": 2,
                                        "output_size": 16},
                            "preprocessing": {"type": "fbank", "sample_rate": RATE,
                                              "audio_file_length_limit_in_s": 2.0, "num_filter_bands": 40}}],
        "output_features": [{"name": "label", "type": "category"}],
    }).to_dict()
    meta = {"label": {"type": "category", "idx2str": ["x", "y"], "str2idx": {"x": 0, "y": 1}, "vocab_size": 2}}
    torch.manual_seed(0)
    network = ConfigModel(config, meta, 2).eval()
    det = Detector(network, "config_model", ["x", "y"], False, network.preprocessing)
    with torch.inference_mode():
        ref = det(det.preprocessing.features(waves)).numpy()
    path = det.export_onnx(tmp_path / "fbank.onnx", frontend=True)
    got = _session(path).run(None, {"waveform": waves.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)


def test_phase_feature_exports_the_network_only(tmp_path):
    prep = Preprocessing(sample_rate=8000, clip_duration=1.0, feature="stft_phase")
    det = Detector(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2)), "x", ["a", "b"], False, prep)
    det(torch.zeros(1, *prep.input_shape))  # materialise the lazy layer
    with pytest.raises(ParameterError, match="atan2"):
        det.export_onnx(tmp_path / "x.onnx", frontend=True)
    assert det.export_onnx(tmp_path / "x.onnx").is_file()


def test_onnxruntime_backend_scores_like_torch(tmp_path):
    audio, rate = sf.read(FIELD, frames=40 * RATE, dtype="float32")
    sf.write(tmp_path / "part.wav", audio, rate)
    prep = Preprocessing(sample_rate=RATE, clip_duration=2.0, height=64, width=64)
    det = _detector(prep, build("resnet18", 3))
    ref = soundscape.predict_recordings(det, tmp_path / "part.wav", precision="fp32", progress=False,
                                        clip_overlap=1.0)
    got = soundscape.predict_recordings(det, tmp_path / "part.wav", backend="onnxruntime", progress=False,
                                        clip_overlap=1.0)
    assert got.attrs["summary"]["backend"] == "onnxruntime"
    assert got.attrs["summary"]["precision"] == "fp32"
    pd.testing.assert_index_equal(got.index, ref.index)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-5)
    with pytest.raises(ParameterError, match="fp32 models"):
        soundscape.predict_recordings(det, tmp_path / "part.wav", backend="onnxruntime", precision="bf16",
                                      progress=False)
    with pytest.raises(ParameterError, match="backend must be one of"):
        soundscape.predict_recordings(det, tmp_path / "part.wav", backend="tensorrt", progress=False)


def test_cli_export(tmp_path, waves, capsys):
    prep = compact_preprocessing(sample_rate=RATE, clip_duration=2.0, frames=None)
    det = _detector(prep)
    model = det.save(tmp_path / "m.model")
    assert main(["export", "--model_path", str(model), "--output", str(tmp_path / "m.onnx"),
                 "--frontend"]) == 0
    assert "input: waveform" in capsys.readouterr().out
    with torch.inference_mode():
        ref = det(prep.features(waves)).numpy()
    got = _session(tmp_path / "m.onnx").run(None, {"waveform": waves.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)
    assert main(["export", "--model_path", str(tmp_path / "missing.model"), "--output",
                 str(tmp_path / "x.onnx")]) == 1
