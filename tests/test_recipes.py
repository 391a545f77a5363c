"""Tests for soundscape.recipes and the recipe options of train(): real training steps."""

import io
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape import recipes
from soundscape.datasets import SingleTargetAudioDataset
from soundscape.errors import ParameterError
from soundscape.model_file import load_model
from soundscape.torch.compact import CompactCNN, compact_preprocessing
from soundscape.torch.train import train

RATE = 8000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- schedules
def _optimizer(lr=0.1, kind="sgd"):
    p = [torch.nn.Parameter(torch.zeros(2))]
    return torch.optim.SGD(p, lr=lr, momentum=0.9) if kind == "sgd" else torch.optim.AdamW(p, lr=lr)


def _lrs(opt, sched, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def test_cosine_schedule_warms_up_linearly_then_decays_to_the_floor():
    opt = _optimizer(0.1)
    sched = recipes.lr_schedule(opt, "cosine", epochs=10, steps_per_epoch=10, warmup_epochs=2,
                                min_lr_ratio=0.1)
    lrs = _lrs(opt, sched, 100)
    warm = lrs[:20]
    assert np.all(np.diff(warm) > 0) and np.allclose(np.diff(warm), np.diff(warm)[0])
    assert lrs.max() == pytest.approx(0.1, rel=1e-6)
    assert np.all(np.diff(lrs[20:]) <= 1e-12)  # never rises after the warm-up
    assert lrs[-1] == pytest.approx(0.01, rel=0.01)
    assert lrs[60] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + np.cos(np.pi * 40 / 80)), rel=1e-6)


def test_one_cycle_and_constant_schedules():
    opt = _optimizer(0.05, "adamw")
    lrs = _lrs(opt, recipes.lr_schedule(opt, "one_cycle", 5, 20, warmup_epochs=1), 100)
    assert int(np.argmax(lrs)) in range(18, 22)  # peak after the warm-up share (20 %)
    assert lrs.max() == pytest.approx(0.05, rel=1e-3)
    assert lrs[0] < 0.05 / 10 and lrs[-1] < 0.05 / 100
    opt = _optimizer(0.05)
    lrs = _lrs(opt, recipes.lr_schedule(opt, "constant", 5, 4, warmup_epochs=1), 20)
    assert np.all(np.diff(lrs[:4]) > 0) and np.allclose(lrs[4:], 0.05)


def test_schedule_arguments_are_checked():
    opt = _optimizer()
    with pytest.raises(ParameterError, match="lr_schedule must be one of"):
        recipes.lr_schedule(opt, "step", 5, 5)
    with pytest.raises(ParameterError, match="warmup_epochs"):
        recipes.lr_schedule(opt, "cosine", 5, 5, warmup_epochs=5)
    with pytest.raises(ParameterError, match="steps_per_epoch"):
        recipes.lr_schedule(opt, "cosine", 5, 0)


# --------------------------------------------------------------------------- early stopping
def test_early_stopping_counts_epochs_without_improvement():
    stop = recipes.EarlyStopping(patience=2, monitor="valid_macro_f1")
    flags = [stop.update({"epoch": e, "valid_macro_f1": v})
             for e, v in enumerate([0.5, 0.7, 0.69, 0.8, 0.8, 0.75])]
    assert flags == [True, True, False, True, False, False]
    assert stop.should_stop and stop.best_epoch == 3 and stop.best_score == 0.8
    loss = recipes.EarlyStopping(1, "valid_loss", min_delta=0.05)
    assert loss.mode == "min"
    assert loss.update({"epoch": 0, "valid_loss": 1.0})
    assert not loss.update({"epoch": 1, "valid_loss": 0.97})  # below min_delta
    assert loss.should_stop
    never = recipes.EarlyStopping(None)
    for e in range(20):
        never.update({"epoch": e, "valid_macro_f1": float("nan")})
    assert not never.should_stop and never.best_epoch == 0
    with pytest.raises(ParameterError, match="valid_auc"):
        recipes.EarlyStopping(3, "valid_auc").update({"epoch": 0, "valid_loss": 1.0})
    with pytest.raises(ParameterError, match="patience"):
        recipes.EarlyStopping(0)


# --------------------------------------------------------------------------- class balance
def test_class_weights_and_balanced_sampler_draw_classes_evenly():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    w = recipes.class_weights(labels)
    np.testing.assert_allclose(w.numpy(), [100 / 270, 100 / 27, 100 / 3], rtol=1e-6)
    assert float((w[labels]).mean()) == pytest.approx(1.0)
    sampler = recipes.balanced_sampler(labels, num_samples=6000,
                                       generator=torch.Generator().manual_seed(0))
    drawn = labels[np.array(list(sampler))]
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.03)
    assert len(recipes.balanced_sampler(labels)) == len(labels)


def test_multi_target_balance_weights():
    labels = np.array([[1, 0], [1, 0], [1, 0], [1, 1], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(recipes.class_weights(labels).numpy(), [1 / 4, 4 / 1])
    weights = recipes.sample_weights(labels)
    assert weights[3] == pytest.approx(1.0)  # the only clip with the rare class
    assert weights[4] == pytest.approx(1.0)  # the only clip with no class
    assert weights[0] == pytest.approx(0.25)


# --------------------------------------------------------------------------- targets, mixup
def test_label_smoothing_matches_torch_and_smooths_binary_targets():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    ours = recipes.SmoothedLoss(torch.nn.CrossEntropyLoss(), 0.1, multi_target=False)(logits, y)
    ref = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, y)
    assert float(ours) == pytest.approx(float(ref), rel=1e-6)
    soft = recipes.smooth_targets(torch.tensor([[1.0, 0.0]]), 0.2)
    np.testing.assert_allclose(soft.numpy(), [[0.9, 0.1]])
    rows = recipes.smooth_targets(y, 0.2, 4)
    np.testing.assert_allclose(rows.sum(dim=1).numpy(), 1.0, rtol=1e-6)
    assert float(rows[0, 0]) == pytest.approx(0.85)


def test_mixup_mixes_inputs_and_labels_with_one_weight():
    n = 8
    x = torch.eye(n).reshape(n, 1, 1, n)  # each input marks its own position
    y = torch.arange(n)
    gen = torch.Generator().manual_seed(3)
    mixed, y_a, y_b, lam = recipes.mixup(x, y, alpha=0.4, generator=gen)
    assert mixed.shape == x.shape and 0.5 <= lam <= 1
    assert torch.equal(y_a, y)
    flat = mixed.reshape(n, n)
    for i in range(n):
        expected = lam * torch.eye(n)[i] + (1 - lam) * torch.eye(n)[int(y_b[i])]
        torch.testing.assert_close(flat[i], expected)
    assert sorted(y_b.tolist()) == list(range(n))  # a permutation of the batch
    soft = recipes.mix_targets(y_a, y_b, lam, num_classes=n)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(n))
    assert torch.equal(soft.argmax(dim=1), y) or lam == 0.5
    logits = torch.randn(n, n, generator=torch.Generator().manual_seed(1))
    ce = torch.nn.CrossEntropyLoss()
    torch.testing.assert_close(recipes.mixed_loss(ce, logits, y_a, y_b, lam), ce(logits, soft))
    with pytest.raises(ParameterError, match="alpha"):
        recipes.mixup(x, y, alpha=0)


def test_recipe_validates_and_reports_options():
    r = recipes.Recipe(lr_schedule="cosine", warmup_epochs=1, mixup_alpha=0.2, early_stopping=3)
    assert r.restores_best and r.to_dict()["mixup_alpha"] == 0.2
    assert not recipes.Recipe().restores_best
    for bad, match in ((dict(lr_schedule="linear"), "lr_schedule"),
                       (dict(warmup_epochs=2), "warmup_epochs needs lr_schedule"),
                       (dict(label_smoothing=1.0), "label_smoothing"),
                       (dict(mixup_alpha=-1), "mixup_alpha"),
                       (dict(class_balance="oversample"), "class_balance"),
                       (dict(early_stopping=0), "patience")):
        with pytest.raises(ParameterError, match=match):
            recipes.Recipe(**bad)
    with pytest.raises(ParameterError, match="CrossEntropyLoss or BCEWithLogitsLoss"):
        recipes.Recipe(class_balance="loss").training_loss(
            torch.nn.MSELoss(), lambda: np.array([0, 1]), 2, False)


# --------------------------------------------------------------------------- train() options
@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """24 clips, 0.5 s: a low tone (class 0) or a high tone (class 1), with noise."""
    folder = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    t = np.arange(RATE // 2) / RATE
    rows = []
    for i in range(24):
        label = i % 2
        f = rng.uniform(300, 500) if label == 0 else rng.uniform(2500, 3000)
        x = 0.4 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(folder / f"c{i:02d}.wav", x.astype(np.float32), RATE)
        rows.append({"file": str(folder / f"c{i:02d}.wav"), "label": label})
    return pd.DataFrame(rows)


PREP = compact_preprocessing(sample_rate=RATE, clip_duration=0.5, n_mels=16, window_samples=256)


def _run(tmp_path, train_df, valid_df, epochs=6, lr=0.01, **options):
    labels = {0: "low", 1: "high"}
    make = lambda d: SingleTargetAudioDataset(d, labels, "file", "label",  # noqa: E731
                                              preprocessing=PREP)
    torch.manual_seed(0)
    model = CompactCNN(2, widths=(8, 16), dropout=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    out = io.StringIO()
    with redirect_stdout(out):
        history = train(tmp_path, model, make(train_df), make(valid_df), opt,
                        torch.nn.CrossEntropyLoss(), epochs=epochs, batch_size=4, num_workers=0,
                        log_every=100, seed=0, device="cpu", progress_bar=False, **options)
    return model, history, out.getvalue()


def test_early_stopping_stops_and_restores_the_best_weights(tones, tmp_path):
    flipped = tones.iloc[16:].assign(label=lambda d: 1 - d["label"])  # learning makes it worse
    model, history, log = _run(tmp_path, tones.iloc[:16], flipped, epochs=30, lr=0.03,
                               early_stopping=3)
    best = history.attrs["best_epoch"]
    assert history.attrs["stopped_early"] and len(history) < 30
    assert len(history) == best + 4  # the best epoch, then 3 without improvement
    assert best == int(np.argmax(history["valid_macro_f1"].to_numpy()))
    assert "Early stopping: valid_macro_f1 did not improve for 3 epochs" in log
    saved = load_model(tmp_path / "best.model").network.state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[name])  # the best weights are back
    final = torch.load(tmp_path / f"epoch-{len(history) - 1}.tar", weights_only=False)
    assert any(not torch.equal(v, final["model_state_dict"][k])
               for k, v in model.state_dict().items())  # and they differ from the last epoch's


def test_train_with_schedule_mixup_smoothing_and_balance_learns(tones, tmp_path):
    unbalanced = pd.concat([tones.iloc[:16][tones.iloc[:16]["label"] == 0],
                            tones.iloc[:16][tones.iloc[:16]["label"] == 1].head(3)])
    _, history, log = _run(tmp_path, unbalanced, tones.iloc[16:], epochs=12, lr=0.02,
                           lr_schedule="cosine", warmup_epochs=1, mixup_alpha=0.3,
                           label_smoothing=0.1, class_balance="sampler")
    assert log.startswith("Epoch 0\n  Validation results:\n    train_loss: ")
    assert history["valid_accuracy"].iloc[-1] >= 0.85
    assert history["lr"].iloc[-1] < 0.02 * 0.01  # cosine decayed to ~0 by the last batch
    _, history, _ = _run(tmp_path / "loss", unbalanced, tones.iloc[16:], epochs=12, lr=0.02,
                         lr_schedule="one_cycle", class_balance="loss")
    assert history["valid_accuracy"].iloc[-1] >= 0.85
    with pytest.raises(ParameterError, match="not both"):
        model = CompactCNN(2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        ds = SingleTargetAudioDataset(tones, {0: "low", 1: "high"}, "file", "label",
                                      preprocessing=PREP)
        train(tmp_path / "x", model, ds, ds, opt, torch.nn.CrossEntropyLoss(), epochs=1,
              num_workers=0, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1),
              lr_schedule="cosine", print_logging=False)


# --------------------------------------------------------------------------- declarative workflow
@pytest.mark.parametrize("output, recipe", [
    ({"name": "label", "type": "category"},
     dict(lr_schedule="cosine", warmup_epochs=1, mixup_alpha=0.3, label_smoothing=0.1,
          class_balance="sampler")),
    ({"name": "present", "type": "binary"},
     dict(lr_schedule="one_cycle", label_smoothing=0.05, class_balance="loss")),
    ({"name": "tags", "type": "set"}, dict(lr_schedule="constant", warmup_epochs=2,
                                           class_balance="loss", mixup_alpha=0.2)),
])
def test_workflow_trainer_recipe_keys_train_each_output_type(tmp_path, output, recipe):
    from _workflow_data import make_dataset, tiny_config
    from soundscape.workflow import train as workflow_train

    data = make_dataset(tmp_path / "data", n=24)
    cfg = tiny_config(epochs=12, learning_rate=0.01, **recipe)
    cfg["output_features"] = [output]
    cfg["split"] = {"type": "fixed", "column": "split"}
    results = workflow_train(cfg, data, output_directory=None, progress=False)
    stats = results.train_stats
    name = output["name"]
    losses = stats["training"][name]["loss"]
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0]
    assert np.mean(stats["training"][name]["accuracy"][-3:]) >= 0.6  # of mixed inputs with mixup
    assert results.detector.network.config["trainer"]["lr_schedule"] == recipe["lr_schedule"]
