import copy
import textwrap

import pytest
import yaml

from soundscape.config import Config, ConfigWarning, load_config, schema_reference, validate
from soundscape.errors import ConfigError

# --- the configs of the Ludwig audio-classification example, as written there -----------------
BASIC_YAML = """
input_features:
  - name: audio
    type: audio
    encoder:
      type: stacked_cnn
output_features:
  - name: emotion
    type: category
trainer:
  epochs: 20
"""
BASIC_DICT = {
    "input_features": [{"name": "audio", "type": "audio", "encoder": {"type": "stacked_cnn"}}],
    "output_features": [{"name": "emotion", "type": "category"}],
    "trainer": {"epochs": 20},
}
# The two "Tips" snippets show only input_features; they are used inside the basic config.
NESTED_PREPROCESSING_YAML = """
input_features:
  - name: audio
    type: audio
    encoder:
      type: stacked_cnn
    preprocessing:
      audio_feature:
        type: fbank         # mel-filterbank energies
        num_filter_bands: 80
        window_length_in_s: 0.025
        window_shift_in_s: 0.010
      audio_file_length_limit_in_s: 5.0  # clip/pad all files to 5 seconds
      norm: per_file
"""
TRANSFORMER_YAML = """
input_features:
  - name: audio
    type: audio
    encoder:
      type: transformer
      num_heads: 4
      num_layers: 2
      hidden_size: 256
"""
SPEAKER_YAML = """
input_features:
  - name: audio
    type: audio
    encoder:
      type: stacked_cnn
  - name: gender
    type: category
  - name: age
    type: number
output_features:
  - name: emotion
    type: category
trainer:
  epochs: 20
"""
ESC50_YAML = """
input_features:
  - name: audio_path
    type: audio
    encoder:
      type: stacked_cnn
    preprocessing:
      audio_file_length_limit_in_s: 5.0
output_features:
  - name: target
    type: category
trainer:
  epochs: 50
"""
FLAT_PREPROCESSING = {
    "type": "fbank",
    "num_filter_bands": 80,
    "window_length_in_s": 0.025,
    "window_shift_in_s": 0.010,
    "audio_file_length_limit_in_s": 5.0,
    "norm": "per_file",
    "sample_rate": 16000,
}


def with_inputs(snippet: str) -> dict:
    cfg = copy.deepcopy(BASIC_DICT)
    cfg["input_features"] = yaml.safe_load(snippet)["input_features"]
    return cfg


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    return str(info.value)


def test_basic_yaml_and_dict_forms_agree(tmp_path):
    from_file = load_config(write(tmp_path, BASIC_YAML))
    from_dict = load_config(BASIC_DICT)
    assert from_file == from_dict
    assert from_file.source.endswith("config.yaml") and from_dict.source is None
    assert from_file.audio_features[0]["encoder"]["type"] == "stacked_cnn"
    assert from_file.output_feature == {"name": "emotion", "type": "category"}
    assert from_file.notes == []


def test_speaker_features_and_esc50(tmp_path):
    cfg = load_config(write(tmp_path, SPEAKER_YAML))
    assert [(f["name"], f["type"]) for f in cfg.input_features] == [
        ("audio", "audio"),
        ("gender", "category"),
        ("age", "number"),
    ]
    assert [f["name"] for f in cfg.audio_features] == ["audio"]
    assert cfg.input_features[2]["normalization"] == "zscore"
    esc = load_config(write(tmp_path, ESC50_YAML, "esc50.yaml"))
    assert esc.audio_features[0]["name"] == "audio_path"
    assert esc.output_feature["name"] == "target" and esc.trainer["epochs"] == 50


def test_transformer_snippet():
    enc = load_config(with_inputs(TRANSFORMER_YAML)).audio_features[0]["encoder"]
    assert enc == {
        "type": "transformer",
        "num_heads": 4,
        "num_layers": 2,
        "hidden_size": 256,
        "dropout": 0.1,
    }


def test_nested_preprocessing_is_normalised_to_flat_form():
    nested = with_inputs(NESTED_PREPROCESSING_YAML)
    original = copy.deepcopy(nested)
    with pytest.warns(ConfigWarning, match="flat form is preferred"):
        cfg = load_config(nested)
    assert nested == original  # the caller's dict is not modified
    assert "input_features[0].preprocessing.audio_feature" in cfg.notes[0]
    flat = with_inputs(NESTED_PREPROCESSING_YAML)
    flat["input_features"][0]["preprocessing"] = dict(FLAT_PREPROCESSING)
    assert cfg.to_dict() == load_config(flat).to_dict()
    pre = cfg.audio_features[0]["preprocessing"]
    assert {k: pre[k] for k in FLAT_PREPROCESSING} == FLAT_PREPROCESSING
    assert "audio_feature" not in pre


def test_nested_and_flat_conflict():
    cfg = with_inputs(NESTED_PREPROCESSING_YAML)
    cfg["input_features"][0]["preprocessing"]["num_filter_bands"] = 40
    msg = error_of(cfg)  # errors win: no normalisation warning then
    assert "preprocessing.num_filter_bands: given twice" in msg


def test_defaults_filled():
    cfg = load_config(
        {
            "input_features": [{"name": "a", "type": "audio"}],
            "output_features": [{"name": "y", "type": "binary"}],
        }
    )
    assert cfg.trainer == {
        "epochs": 20,
        "batch_size": 32,
        "learning_rate": 0.001,
        "optimizer": "adam",
        "early_stop": None,
        "weight_decay": 0.0,
        "seed": 42,
        "lr_schedule": None,
        "warmup_epochs": 0.0,
        "label_smoothing": 0.0,
        "mixup_alpha": 0.0,
        "class_balance": None,
        "augmentation": {"time_masks": 0, "frequency_masks": 0, "max_mask_fraction": 0.1,
                         "add_noise": False},
        "precision": "auto",
    }
    assert cfg.split == {"type": "random", "probabilities": [0.7, 0.1, 0.2]}
    audio = cfg.audio_features[0]
    assert audio["encoder"] == {
        "type": "stacked_cnn",
        "num_filters": 64,
        "filter_size": 3,
        "num_layers": 3,
        "pool_size": 2,
        "output_size": 128,
        "dropout": 0.1,
    }
    assert {k: audio["preprocessing"][k] for k in FLAT_PREPROCESSING} == FLAT_PREPROCESSING
    assert cfg.output_feature["threshold"] == 0.5
    assert list(audio) == ["name", "type", "encoder", "preprocessing"]


@pytest.mark.parametrize(
    "encoder, expected",
    [
        (
            {"type": "rnn"},
            {"cell_type": "lstm", "hidden_size": 128, "num_layers": 2, "bidirectional": True},
        ),
        ("rnn", {"cell_type": "lstm"}),  # shorthand: just the type name
        (
            {"type": "rnn", "cell_type": "gru", "bidirectional": False},
            {"cell_type": "gru", "bidirectional": False},
        ),
        ({"type": "parallel_cnn"}, {"filter_sizes": [2, 3, 4, 5], "num_filters": 64}),
        ({"type": "resnet18"}, {"weights": None}),
        (
            {"type": "transformer"},
            {"num_heads": 4, "num_layers": 2, "hidden_size": 256, "dropout": 0.1},
        ),
    ],
)
def test_encoder_defaults(encoder, expected):
    cfg = copy.deepcopy(BASIC_DICT)
    cfg["input_features"][0]["encoder"] = encoder
    enc = validate(cfg)["input_features"][0]["encoder"]
    assert {k: enc[k] for k in expected} == expected


def test_preprocessing_variants_and_yaml_quirks():
    cfg = copy.deepcopy(BASIC_DICT)
    cfg["input_features"][0]["preprocessing"] = {
        "type": "spectrogram_image",
        "max_frequency_hz": 8000,
    }
    cfg["trainer"] = {"learning_rate": "1e-4", "batch_size": 16.0}  # PyYAML reads 1e-4 as a string
    out = validate(cfg)
    pre = out["input_features"][0]["preprocessing"]
    assert (pre["height"], pre["width"], pre["max_frequency_hz"]) == (224, 224, 8000.0)
    assert "num_filter_bands" not in pre
    assert out["trainer"]["learning_rate"] == 1e-4 and out["trainer"]["batch_size"] == 16
    cfg["input_features"][0]["preprocessing"] = {"type": "stft", "norm": None, "sample_rate": 22050}
    pre = validate(cfg)["input_features"][0]["preprocessing"]
    assert pre["norm"] is None and pre["sample_rate"] == 22050 and pre["window_type"] == "hamming"


def test_unknown_key_names_path_and_suggests():
    cfg = with_inputs(TRANSFORMER_YAML)
    cfg["input_features"][0]["encoder"]["num_head"] = cfg["input_features"][0]["encoder"].pop(
        "num_heads"
    )
    msg = error_of(cfg)
    assert "input_features[0].encoder.num_head: unknown key; did you mean 'num_heads'?" in msg
    assert "'num_layers'" in msg and "'hidden_size'" in msg  # what is allowed
    msg = error_of({**BASIC_DICT, "trainers": {}})
    assert "trainers: unknown key; did you mean 'trainer'?" in msg
    msg = error_of({**BASIC_DICT, "zzz": 1})
    assert "zzz: unknown key. Allowed keys here: 'input_features'" in msg


def test_nested_unknown_key_path_points_into_nested_block():
    cfg = with_inputs(NESTED_PREPROCESSING_YAML)
    cfg["input_features"][0]["preprocessing"]["audio_feature"]["num_filter_band"] = 40
    msg = error_of(cfg)  # errors win: no normalisation warning then
    assert (
        "preprocessing.audio_feature.num_filter_band: unknown key; did you mean 'num_filter_bands'?"
        in msg
    )


def test_enum_values_listed():
    cfg = copy.deepcopy(BASIC_DICT)
    cfg["input_features"][0]["encoder"] = {"type": "stacked_cn"}
    msg = error_of(cfg)
    assert (
        "input_features[0].encoder.type: 'stacked_cn' is not allowed; did you mean 'stacked_cnn'?"
        in msg
    )
    assert "Allowed values: 'stacked_cnn', 'parallel_cnn', 'rnn', 'transformer', 'resnet18'" in msg
    cfg = {**BASIC_DICT, "trainer": {"optimizer": "rmsprop"}}
    assert (
        "trainer.optimizer: 'rmsprop' is not allowed. Allowed values: 'adam', 'adamw', 'sgd'"
        in error_of(cfg)
    )


@pytest.mark.parametrize(
    "trainer, expected",
    [
        ({"epochs": "20"}, "trainer.epochs: expected an integer, got '20' (str)"),
        ({"epochs": 2.5}, "trainer.epochs: expected an integer, got 2.5"),
        ({"epochs": 0}, "trainer.epochs: must be >= 1, got 0"),
        ({"early_stop": True}, "trainer.early_stop: expected an integer or null, got True (bool)"),
        ({"learning_rate": "fast"}, "trainer.learning_rate: expected a number, got 'fast'"),
        ({"learning_rate": None}, "trainer.learning_rate: expected a number, got null"),
        ([1, 2], "trainer: expected a mapping of keys to values, got [1, 2] (list)"),
    ],
)
def test_wrong_types(trainer, expected):
    assert expected in error_of({**BASIC_DICT, "trainer": trainer})


@pytest.mark.parametrize(
    "split, expected",
    [
        ({"probabilities": [0.7, 0.3]}, "split.probabilities: expected exactly 3 entries, got 2"),
        ({"probabilities": [0.7, 0.2, 0.2]}, "split.probabilities: entries must sum to 1.0"),
        (
            {"probabilities": [0.0, 0.5, 0.5]},
            "split.probabilities: the first (training) share must be above 0",
        ),
        ({"probabilities": [1.2, -0.1, -0.1]}, "split.probabilities[0]: must be <= 1"),
        ({"type": "group"}, "split.column: missing required key 'column'"),
        ({"type": "fixd"}, "split.type: 'fixd' is not allowed; did you mean 'fixed'?"),
    ],
)
def test_split_errors(split, expected):
    assert expected in error_of({**BASIC_DICT, "split": split})


def test_split_variants():
    assert validate({**BASIC_DICT, "split": {"type": "fixed"}})["split"] == {
        "type": "fixed",
        "column": "split",
    }
    group = validate({**BASIC_DICT, "split": {"type": "group", "column": "recording"}})["split"]
    assert group == {"type": "group", "column": "recording", "probabilities": [0.7, 0.1, 0.2]}


def test_missing_name_and_type():
    cfg = copy.deepcopy(SPEAKER_DICT := yaml.safe_load(SPEAKER_YAML))
    del cfg["input_features"][1]["name"]
    del cfg["input_features"][2]["type"]
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert "input_features[1].name: missing required key 'name'" in str(info.value)
    assert (
        "input_features[2]: missing required key 'type' (one of: audio, category, number, binary)"
        in str(info.value)
    )
    assert len(info.value.problems) == 2 and "2 problems" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert SPEAKER_DICT["input_features"][1]["name"] == "gender"


def test_whole_config_rules():
    two_outputs = {
        **BASIC_DICT,
        "output_features": [{"name": "a", "type": "category"}, {"name": "b", "type": "binary"}],
    }
    assert "output_features: only one output feature is supported for now; got 2: a, b" in error_of(
        two_outputs
    )
    no_audio = {**BASIC_DICT, "input_features": [{"name": "age", "type": "number"}]}
    assert "at least one input feature must have type 'audio'" in error_of(no_audio)
    clash = {**BASIC_DICT, "output_features": [{"name": "audio", "type": "category"}]}
    assert "feature names must be unique; repeated: audio" in error_of(clash)
    assert "expected at least 1 entry" in error_of({**BASIC_DICT, "output_features": []})
    assert "input_features: missing required key" in error_of(
        {"output_features": BASIC_DICT["output_features"]}
    )
    assert "top level must be a mapping" in error_of([1, 2])


def test_cross_key_checks():
    cfg = with_inputs(TRANSFORMER_YAML)
    cfg["input_features"][0]["encoder"]["num_heads"] = 3
    assert "encoder.hidden_size: must be divisible by num_heads (3)" in error_of(cfg)
    cfg = copy.deepcopy(BASIC_DICT)
    cfg["input_features"][0]["preprocessing"] = {"window_shift_in_s": 0.05}
    assert (
        "preprocessing.window_shift_in_s: must not exceed window_length_in_s (0.025)"
        in error_of(cfg)
    )


def test_set_output_with_columns():
    cfg = {
        **BASIC_DICT,
        "output_features": [{"name": "species", "type": "set", "columns": ["robin", "wren"]}],
    }
    out = load_config(cfg).output_feature
    assert out == {
        "name": "species",
        "type": "set",
        "threshold": 0.5,
        "delimiter": "|",
        "columns": ["robin", "wren"],
    }


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = write(
        tmp_path, "input_features:\n  - name: audio\n    type: audio\n  encoder: [\n", "bad.yaml"
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml, line \d+, column \d+: invalid YAML"):
        load_config(bad)
    dup = write(tmp_path, BASIC_YAML + "trainer:\n  epochs: 3\n", "dup.yaml")
    with pytest.raises(
        ConfigError,
        match=r"dup\.yaml, line 12, column 1: invalid YAML: key 'trainer' is given twice",
    ):
        load_config(dup)
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, "# nothing\n", "empty.yaml"))
    typo = write(tmp_path, BASIC_YAML.replace("epochs", "epoch"), "typo.yaml")
    with pytest.raises(
        ConfigError,
        match=r"typo\.yaml: invalid config: trainer\.epoch: unknown key; did you mean 'epochs'",
    ):
        load_config(typo)


def test_yaml_round_trip(tmp_path):
    cfg = load_config(write(tmp_path, SPEAKER_YAML))
    cfg_file = tmp_path / "out" / "full.yaml"
    cfg_file.parent.mkdir()
    text = cfg.to_yaml(cfg_file)
    assert cfg_file.read_text() == text
    assert load_config(cfg_file) == cfg
    assert "probabilities: [0.7, 0.1, 0.2]" in text and str(cfg) == text
    assert (
        "Config(inputs=[audio:audio, gender:category, age:number], output=emotion:category"
        in repr(cfg)
    )


@pytest.mark.parametrize(
    "encoder", ["stacked_cnn", "parallel_cnn", "rnn", "transformer", "resnet18"]
)
@pytest.mark.parametrize("pre", ["fbank", "stft", "stft_phase", "group_delay", "spectrogram_image"])
def test_to_yaml_reloads_to_same_config(encoder, pre):
    cfg = copy.deepcopy(BASIC_DICT)
    cfg["input_features"][0].update(encoder={"type": encoder}, preprocessing={"type": pre})
    cfg["output_features"] = [{"name": "s", "type": "set"}]
    first = load_config(cfg)
    again = load_config(yaml.safe_load(first.to_yaml()))
    assert again == first and again.to_dict() == first.to_dict()


def test_accessors_return_copies():
    cfg = load_config(BASIC_DICT)
    cfg.trainer["epochs"] = 99
    cfg.audio_features[0]["encoder"]["num_filters"] = 1
    assert (
        cfg.trainer["epochs"] == 20
        and cfg.to_dict()["input_features"][0]["encoder"]["num_filters"] == 64
    )
    assert load_config(cfg) is cfg
    with pytest.raises(ConfigError, match="expected a path to a YAML file or a dict"):
        load_config(42)


def test_schema_reference_covers_keys():
    rows = {(r[0], r[3]): r for r in schema_reference()}
    assert rows[("trainer.epochs", "")][1] == "20"
    assert (
        rows[("input_features[].encoder.cell_type", "type=audio, encoder.type=rnn")][2]
        == "lstm, gru"
    )
    assert rows[("split.column", "split.type=group")][1] == "required"
    assert isinstance(load_config(BASIC_DICT), Config)


def test_non_finite_and_bare_string_features():
    cfg = {**BASIC_DICT, "trainer": {"learning_rate": "nan"}}
    assert "trainer.learning_rate: expected a number, got 'nan'" in error_of(cfg)
    cfg = {**BASIC_DICT, "output_features": ["emotion"]}
    assert "output_features[0]: expected a mapping of keys to values, got 'emotion'" in error_of(
        cfg
    )
