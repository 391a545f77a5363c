"""Loading untrusted files runs no code from them: load_model, train(resume_from=...)."""

from __future__ import annotations

import builtins
import io
import os
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape.datasets import SingleTargetAudioDataset
from soundscape.errors import ModelFileError
from soundscape.model_file import Detector, load_model, model_payload
from soundscape.preprocessing import Preprocessing
from soundscape.torch.models import build, register
from soundscape.torch.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 8000
SMALL = dict(height=32, width=32, audio_sample_rate=RATE, window_samples=256, overlap_samples=128)
LABELS = {0: "low", 1: "high"}
PREP = Preprocessing(sample_rate=8000, clip_duration=0.5, window_samples=128, overlap_samples=64,
                     height=24, width=24, channels=3, n_mels=None, min_frequency=100.0)


class OwnNet(torch.nn.Module):
    """A network of the user's own class: not a registered architecture (stored pickled)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=4)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class RunsCode:
    """Unpickling this runs `code` (through `func`, default builtins.exec)."""

    def __init__(self, code, func=builtins.exec):
        self.code, self.func = code, func

    def __reduce__(self):
        return self.func, (self.code,)


class CallsWith:
    """Unpickling this calls `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _write_marker_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


@register("test_security_tiny")
def _tiny(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(2, num_classes))


def _hostile_model_file(path: Path, evil) -> Path:
    """A soundscape model file (registered architecture) with `evil` in its metadata."""
    det = Detector(build("test_security_tiny", 2), "test_security_tiny", ["a", "b"], False, PREP)
    payload = model_payload(det)
    payload["metadata"] = {"note": evil}
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sec_clips")
    t = np.arange(RATE // 2) / RATE
    rows = []
    for i in range(8):
        label = i % 2
        x = 0.5 * np.sin(2 * np.pi * (500 if label == 0 else 2500) * t) + 0.01 * i
        path = folder / f"c{i}.wav"
        sf.write(path, x.astype(np.float32), RATE)
        rows.append({"file": str(path), "label": label})
    df = pd.DataFrame(rows)
    make = lambda d: SingleTargetAudioDataset(d, LABELS, filename_column="file",  # noqa: E731
                                              label_column="label", **SMALL)
    return make(df.iloc[:6]), make(df.iloc[6:])


def _train(save_dir, model, clips, **kw):
    train_ds, valid_ds = clips
    with redirect_stdout(io.StringIO()):
        return train(save_dir, model, train_ds, valid_ds,
                     optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                     loss_fn=torch.nn.CrossEntropyLoss(), batch_size=4, num_workers=0, seed=0,
                     device="cpu", progress_bar=False, **kw)


# ---------------------------------------------------------------------------- item 1: train
def _hostile_checkpoint(save_dir: Path, clips, marker: Path) -> Path:
    """A real checkpoint of an OwnNet run, with an object that runs code when unpickled."""
    _train(save_dir, OwnNet(), clips, epochs=1, log_every=1)
    path = save_dir / "epoch-0.tar"
    ckpt = torch.load(path, weights_only=False)  # our own file: trusted here
    ckpt["metrics"]["note"] = RunsCode(_write_marker_code(marker))
    torch.save(ckpt, path)
    return path


def test_resume_of_own_network_does_not_unpickle_code_without_trusted(clips, tmp_path):
    marker = tmp_path / "ran.txt"
    path = _hostile_checkpoint(tmp_path / "run", clips, marker)
    with pytest.raises(ModelFileError, match=r"resume_from: .*epoch-0\.tar.*trusted=True") as info:
        _train(tmp_path / "run2", OwnNet(), clips, epochs=2, resume_from=path)
    assert not marker.exists(), "the checkpoint's code ran although trusted=True was not given"
    assert "builtins.exec" in str(info.value)


def test_resume_of_own_network_with_trusted_loads_it(clips, tmp_path):
    save_dir = tmp_path / "run"
    _train(save_dir, OwnNet(), clips, epochs=1, log_every=1)
    with pytest.raises(ModelFileError, match="pass trusted=True to train"):
        _train(save_dir, OwnNet(), clips, epochs=2, resume_from=save_dir)
    history = _train(save_dir, OwnNet(), clips, epochs=2, resume_from=save_dir, trusted=True)
    assert list(history["epoch"]) == [0, 1]


def test_resume_of_torch_layer_network_needs_no_trust(clips, tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    _train(tmp_path, net, clips, epochs=1, log_every=1)
    history = _train(tmp_path, net, clips, epochs=2, resume_from=tmp_path)
    assert list(history["epoch"]) == [0, 1]


def test_restore_best_does_not_unpickle_code_without_trusted(tmp_path):
    from soundscape.torch import train as train_module

    marker = tmp_path / "ran.txt"
    torch.save({"state_dict": OwnNet().state_dict(),
                "architecture_kwargs": {"module": RunsCode(_write_marker_code(marker))}},
               tmp_path / "best.model")
    run = SimpleNamespace(best_state=None, save_dir=tmp_path, network=OwnNet(),
                          architecture="torch_module")
    with pytest.raises(ModelFileError, match="trusted=True"):
        train_module._restore_best(run)
    assert not marker.exists()


# ---------------------------------------------------------------------------- item 2: load_model
def _global_hooks() -> dict:
    from torch.nn.modules import module

    return {name: dict(getattr(module, name)) for name in dir(module)
            if name.startswith("_global_") and isinstance(getattr(module, name), dict)}


@pytest.fixture
def restore_global_hooks():
    """Remove global module hooks a (wrongly) loaded file left behind, whatever happens."""
    from torch.nn.modules import module

    before = _global_hooks()
    yield before
    for name, entries in before.items():
        current = getattr(module, name)
        for key in [k for k in current if k not in entries]:
            del current[key]


HOOK_FUNCTIONS = ["register_module_forward_pre_hook", "register_module_forward_hook",
                  "register_module_full_backward_hook", "register_module_buffer_registration_hook",
                  "register_module_parameter_registration_hook"]


@pytest.mark.parametrize("function", HOOK_FUNCTIONS)
def test_torch_nn_module_functions_are_not_called_at_load(tmp_path, function, restore_global_hooks):
    from torch.nn.modules import module

    if not hasattr(module, function):
        pytest.skip(f"torch {torch.__version__} has no {function}")
    path = _hostile_model_file(tmp_path / "hook.model",
                               CallsWith(getattr(module, function), torch.nn.Identity))
    with pytest.raises(ModelFileError, match=rf"{function}.*trusted=True"):
        load_model(path)
    assert _global_hooks() == restore_global_hooks, f"loading the file ran {function}"


@pytest.mark.parametrize("evil", [
    pytest.param(lambda m: RunsCode(_write_marker_code(m)), id="builtins.exec"),
    pytest.param(lambda m: RunsCode(f"touch {m}", func=os.system), id="os.system"),
    pytest.param(lambda m: CallsWith(np.save, str(m), np.zeros(2)), id="numpy.save"),
    pytest.param(lambda m: CallsWith(Path.write_text, Path(m), "ran"), id="pathlib-method"),
])
def test_hostile_model_files_run_no_code(tmp_path, evil):
    marker = tmp_path / "ran.npy"
    path = _hostile_model_file(tmp_path / "evil.model", evil(marker))
    with pytest.raises(ModelFileError, match="trusted=True"):
        load_model(path)
    assert not marker.exists()


def test_allowlist_holds_layer_classes_only():
    from soundscape.model_file import safe_layer_classes

    allowed = safe_layer_classes()
    layers = {k: v for k, v in allowed.items() if not k.startswith(("torch._utils.", "torch.nn.parameter."))}
    assert all(isinstance(v, type) and issubclass(v, torch.nn.Module) for v in layers.values())
    for name in ("torch.nn.modules.conv.Conv2d", "torch.nn.modules.container.Sequential",
                 "torchvision.models.resnet.ResNet", "torchvision.models.resnet.BasicBlock",
                 "torchvision.models.resnet.Bottleneck", "torchvision.ops.misc.Conv2dNormActivation"):
        assert name in allowed
    assert not any(k.endswith(tuple(HOOK_FUNCTIONS)) for k in allowed)
    assert "torch.nn.modules.module.Module" in allowed  # the base class is a class
    assert all(not callable(v) or isinstance(v, type) or k.startswith("torch._utils.")
               for k, v in allowed.items())


def test_torchvision_network_stored_whole_loads_without_trust(tmp_path):
    import torchvision

    from soundscape.torch.models import identify

    net = torchvision.models.resnet18(num_classes=2)
    arch, kwargs = identify(net, 2)
    det = Detector(build(arch, 2, **kwargs), arch, ["a", "b"], False, PREP.replace(height=32, width=32),
                   kwargs)
    loaded = load_model(det.save(tmp_path / "r.model"))
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(det.eval()(x), loaded(x))


# ---------------------------------------------------------------------------- item 3: old torch
def test_untrusted_load_is_refused_without_safe_globals(tmp_path, monkeypatch):
    marker = tmp_path / "ran.txt"
    path = _hostile_model_file(tmp_path / "evil.model", RunsCode(_write_marker_code(marker)))
    monkeypatch.delattr(torch.serialization, "safe_globals")
    with pytest.raises(ModelFileError, match=r"torch >= 2\.6.*trusted=True"):
        load_model(path)
    assert not marker.exists()


def test_dependency_floor_has_safe_globals():
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert "torch>=2.6" in deps and "torchvision>=0.21" in deps  # 2.6: weights_only fix of CVE-2025-32434
    assert hasattr(torch.serialization, "safe_globals")  # the installed torch meets it


