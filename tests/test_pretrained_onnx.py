"""OnnxBackbone round trip: a small torch model exported here, run with onnxruntime."""

import io
import pickle
import warnings

import numpy as np
import pytest
import torch

from soundscape.errors import ParameterError
from soundscape.pretrained import OnnxBackbone, get_backbone

pytest.importorskip(
    "onnxruntime", reason='ONNX tests need the onnx extra: pip install "soundscape[onnx]"'
)
pytest.importorskip("onnx", reason='ONNX tests need the onnx extra: pip install "soundscape[onnx]"')

SAMPLE_RATE = 8000
CLIP_DURATION = 0.5
SAMPLES = 4000


class TinyEncoder(torch.nn.Module):
    """Strided conv + mean pool -> 16-d embedding, and a 3-class head."""

    def __init__(self, channel_axis: bool = False, kernel_size: int = 64):
        super().__init__()
        torch.manual_seed(0)
        self.channel_axis = channel_axis
        self.conv = torch.nn.Conv1d(1, 16, kernel_size=kernel_size, stride=32)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, waveform):
        x = waveform if self.channel_axis else waveform[:, None]
        embedding = self.conv(x).relu().mean(-1)
        return embedding, self.head(embedding)


def export(model: torch.nn.Module, channel_axis: bool = False) -> bytes:
    """ONNX bytes with a dynamic batch axis (legacy exporter: needs no onnxscript)."""
    example = torch.randn(2, 1, SAMPLES) if channel_axis else torch.randn(2, SAMPLES)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter is deprecated but offline-safe
        torch.onnx.export(
            model.eval(),
            (example,),
            buffer,
            input_names=["waveform"],
            output_names=["embedding", "logits"],
            dynamo=False,
            dynamic_axes={
                "waveform": {0: "batch"},
                "embedding": {0: "batch"},
                "logits": {0: "batch"},
            },
        )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def torch_model():
    return TinyEncoder()


@pytest.fixture(scope="module")
def onnx_file(torch_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    path.write_bytes(export(torch_model))
    return path


@pytest.fixture(scope="module")
def waveforms(request):
    """Eight real 0.5-s clips of spoken digits (FSDD, 8 kHz), zero-padded.

    Without shared/data (a fresh clone) the round trip still runs, on synthetic chirps.
    """
    try:
        folder = request.getfixturevalue("shared_data") / "fsdd" / "audio"
    except pytest.skip.Exception:
        folder = None
    files = sorted(folder.glob("*.wav"))[:8] if folder is not None and folder.is_dir() else []
    if not files:
        t = np.arange(SAMPLES) / SAMPLE_RATE
        chirps = [0.5 * np.sin(2 * np.pi * (200 * (k + 1) + 800 * t) * t) for k in range(8)]
        return torch.from_numpy(np.stack(chirps).astype(np.float32))
    soundfile = pytest.importorskip("soundfile")
    clips = []
    for path in files:
        audio, rate = soundfile.read(str(path), dtype="float32")
        assert rate == SAMPLE_RATE
        clips.append(np.pad(audio[:SAMPLES], (0, max(0, SAMPLES - len(audio)))))
    return torch.from_numpy(np.stack(clips))


def test_round_trip_matches_torch(torch_model, onnx_file, waveforms):
    backbone = get_backbone(
        "onnx", path=onnx_file, sample_rate=SAMPLE_RATE, clip_duration=CLIP_DURATION
    )
    assert (
        backbone.embedding_size == 16
        and backbone.classes == []
        and backbone.clip_samples == SAMPLES
    )
    with torch.no_grad():
        expected, _ = torch_model(waveforms)
    embeddings = backbone.embed(waveforms)
    assert embeddings.shape == (8, 16) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(backbone(waveforms), embeddings)
    assert list(backbone.parameters()) == []


def test_logits_output_and_classes(torch_model, onnx_file, waveforms):
    backbone = OnnxBackbone(
        onnx_file,
        SAMPLE_RATE,
        CLIP_DURATION,
        output_name="embedding",
        logits_name="logits",
        classes=["a", "b", "c"],
        output="logits",
    )
    with torch.no_grad():
        _, expected = torch_model(waveforms)
    torch.testing.assert_close(backbone(waveforms), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ParameterError, match="3 columns but 2 classes"):
        OnnxBackbone(
            onnx_file, SAMPLE_RATE, CLIP_DURATION, logits_name="logits", classes=["a", "b"]
        )
    with pytest.raises(
        ParameterError, match=r"output_name='nope' is not an output.*\['embedding', 'logits'\]"
    ):
        OnnxBackbone(onnx_file, SAMPLE_RATE, CLIP_DURATION, output_name="nope")
    with pytest.raises(ParameterError, match="shape \\(batch, 4000\\)"):
        OnnxBackbone(onnx_file, SAMPLE_RATE, CLIP_DURATION).embed(torch.zeros(1, 8000))


def test_state_dict_is_self_contained(onnx_file, waveforms, tmp_path):
    scratch = tmp_path / "scratch.onnx"
    scratch.write_bytes(onnx_file.read_bytes())
    backbone = OnnxBackbone(scratch, SAMPLE_RATE, CLIP_DURATION)
    state = backbone.state_dict()
    assert state["model_bytes"].dtype == torch.uint8
    assert state["model_bytes"].numpy().tobytes() == onnx_file.read_bytes()
    saved = tmp_path / "backbone.pt"
    torch.save(state, saved)
    scratch.unlink()  # the ONNX file is not needed any more
    rebuilt = OnnxBackbone.from_state_dict(torch.load(saved, weights_only=True))
    assert torch.equal(rebuilt.embed(waveforms), backbone.embed(waveforms))
    assert (rebuilt.sample_rate, rebuilt.clip_duration) == (SAMPLE_RATE, CLIP_DURATION)


def test_load_state_dict_swaps_in_another_model(onnx_file, waveforms, tmp_path):
    other_path = tmp_path / "other.onnx"
    other = TinyEncoder(kernel_size=32)  # another size: the byte buffer must be resized
    other_path.write_bytes(export(other))
    target = OnnxBackbone(onnx_file, SAMPLE_RATE, CLIP_DURATION)
    source = OnnxBackbone(other_path, SAMPLE_RATE, CLIP_DURATION)
    assert source.model_bytes.shape != target.model_bytes.shape
    net = torch.nn.Sequential(target, torch.nn.Linear(16, 1))
    net.load_state_dict(
        {"0." + k: v for k, v in source.state_dict().items()}
        | {"1." + k: v for k, v in net[1].state_dict().items()}
    )
    assert torch.equal(net[0].embed(waveforms), source.embed(waveforms))


def test_pickle_rebuilds_session(onnx_file, waveforms):
    backbone = OnnxBackbone(onnx_file, SAMPLE_RATE, CLIP_DURATION)
    clone = pickle.loads(pickle.dumps(backbone))
    assert clone._session is None
    assert torch.equal(clone.embed(waveforms), backbone.embed(waveforms))


def test_channel_axis_input(waveforms):
    model = TinyEncoder(channel_axis=True)
    backbone = OnnxBackbone(export(model, channel_axis=True), SAMPLE_RATE, CLIP_DURATION)
    with torch.no_grad():
        expected, _ = model(waveforms[:, None])
    torch.testing.assert_close(backbone.embed(waveforms), expected, rtol=1e-4, atol=1e-5)


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00junk")
    with pytest.raises(Exception, match="junk.onnx"):
        OnnxBackbone(path, SAMPLE_RATE, CLIP_DURATION)
