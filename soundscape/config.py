"""Declarative (Ludwig-style) configs: load from YAML or a dict, validate, fill defaults, print.

The schema itself is the table in :mod:`soundscape.config_schema`; this module walks it.
Every mistake in a config raises :class:`~soundscape.errors.ConfigError` whose message names
the key path (``input_features[0].encoder.num_head``), what was wrong and what is allowed.

Examples
--------
>>> from soundscape.config import load_config
>>> cfg = load_config({"input_features": [{"name": "audio", "type": "audio"}],
...                    "output_features": [{"name": "emotion", "type": "category"}]})
>>> cfg.trainer["epochs"], cfg.audio_features[0]["preprocessing"]["type"]
(20, 'fbank')
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import yaml

from .config_schema import REQUIRED, ROOT
from .errors import ConfigError
from .helpers import atomic_path
from .io import missing_file

__all__ = ["Config", "ConfigWarning", "load_config", "validate", "schema_reference"]


class ConfigWarning(UserWarning):
    """A config was accepted but written in a discouraged form (Ludwig's nested preprocessing)."""


_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "list": "a list",
    "mapping": "a mapping of keys to values",
    "union": "a mapping of keys to values",
}


def _show(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _not_allowed(head: str, word: Any, options: list, label: str) -> str:
    """``head``, a "did you mean" for a near miss (difflib), and the list of what is allowed."""
    match = difflib.get_close_matches(
        str(word), [str(o) for o in options if o is not None], n=1, cutoff=0.6
    )
    sep = f"; did you mean {match[0]!r}?" if match else "."
    return f"{head}{sep} {label}: {', '.join(_show(o) for o in options)}"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


class _Walker:
    """Validates a value against a schema node, collecting every problem instead of stopping."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.notes: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path or 'config'}: {message}")

    def walk(self, node: dict, value: Any, path: str) -> Any:
        return getattr(self, "_" + node["kind"], self._scalar)(node, value, path)

    def _scalar(self, node: dict, value: Any, path: str) -> Any:
        kind, choices = node["kind"], node.get("choices")
        if value is None:
            if node["default"] is None or (choices and None in choices):
                return None
            return self.fail(path, f"expected {_KIND_WORDS[kind]}, got null")
        converted = _convert(kind, value)
        if converted is _BAD:
            nullable = " or null" if node["default"] is None else ""
            return self.fail(
                path,
                f"expected {_KIND_WORDS[kind]}{nullable}, got {value!r} ({type(value).__name__})",
            )
        if choices and converted not in choices:
            return self.fail(
                path,
                _not_allowed(f"{_show(value)} is not allowed", value, choices, "Allowed values"),
            )
        for rule, ok, words in (
            ("ge", lambda a, b: a >= b, ">="),
            ("gt", lambda a, b: a > b, ">"),
            ("le", lambda a, b: a <= b, "<="),
        ):
            if rule in node and not ok(converted, node[rule]):
                return self.fail(path, f"must be {words} {node[rule]}, got {_show(value)}")
        return converted

    def _list(self, node: dict, value: Any, path: str) -> Any:
        if value is None and node["default"] is None:
            return None
        if not isinstance(value, (list, tuple)):
            return self.fail(path, f"expected a list, got {value!r} ({type(value).__name__})")
        if "length" in node and len(value) != node["length"]:
            return self.fail(path, f"expected exactly {node['length']} entries, got {len(value)}")
        if len(value) < node.get("min_len", 0):
            return self.fail(
                path,
                f"expected at least {node['min_len']} entr{'y' if node['min_len'] == 1 else 'ies'}",
            )
        before = len(self.errors)
        items = [self.walk(node["item"], v, f"{path}[{i}]") for i, v in enumerate(value)]
        if (
            len(self.errors) == before
            and "total" in node
            and not math.isclose(sum(items), node["total"], abs_tol=1e-6)
        ):
            self.fail(
                path, f"entries must sum to {node['total']}, got {items} (sum {sum(items):g})"
            )
        return items

    def _mapping(
        self, node: dict, value: Any, path: str, origin: Mapping[str, str] | None = None
    ) -> Any:
        value = {} if value is None else value
        if not isinstance(value, Mapping):
            return self.fail(
                path,
                f"expected a mapping of keys to values, got {value!r} ({type(value).__name__})",
            )
        keys, origin, before = node["keys"], origin or {}, len(self.errors)
        for key in value:
            if key not in keys:
                self.fail(
                    _join(path, origin.get(key, key)),
                    _not_allowed("unknown key", key, list(keys), "Allowed keys here"),
                )
        out = {}
        for key, child in keys.items():
            sub = _join(path, origin.get(key, key))
            if key in value:
                out[key] = self.walk(child, value[key], sub)
            elif child["kind"] in ("mapping", "union") and child.get("default") is not REQUIRED:
                out[key] = self.walk(child, None, sub)
            elif child["default"] is REQUIRED:
                self.fail(sub, f"missing required key {key!r}")
            else:
                out[key] = copy.deepcopy(child["default"])
        if len(self.errors) == before:
            for check, key, message in node["checks"]:
                if not check(out):
                    text = message(out) if callable(message) else message.format(**out)
                    self.fail(_join(path, key), text)
        return out

    def _union(self, node: dict, value: Any, path: str) -> Any:
        if isinstance(value, str) and node["shorthand"]:  # `encoder: rnn` means {type: rnn}
            value = {"type": value}
        value = {} if value is None else value
        if not isinstance(value, Mapping):
            return self.fail(
                path,
                f"expected a mapping of keys to values, got {value!r} ({type(value).__name__})",
            )
        value, origin = self._hoist(node.get("hoist"), dict(value), path)
        tags = list(node["variants"])
        tag = value.get("type", node["default"])
        if tag is REQUIRED:
            return self.fail(path, f"missing required key 'type' (one of: {', '.join(tags)})")
        if not isinstance(tag, str) or tag not in tags:
            return self.fail(
                _join(path, "type"),
                _not_allowed(f"{_show(tag)} is not allowed", tag, tags, "Allowed values"),
            )
        return self._mapping(node["variants"][tag], value, path, origin)

    def _hoist(self, hoist: str | None, value: dict, path: str) -> tuple[dict, dict]:
        """Move the keys of a legacy nested sub-mapping (``audio_feature``) up to this level."""
        if not hoist or hoist not in value:
            return value, {}
        nested = value.pop(hoist)
        if not isinstance(nested, Mapping):
            self.fail(_join(path, hoist), f"expected a mapping of keys to values, got {nested!r}")
            return value, {}
        for key, val in nested.items():
            if key in value and value[key] != val:
                self.fail(
                    _join(path, key),
                    f"given twice with different values ({_show(value[key])} here, "
                    f"{_show(val)} in {hoist}); keep one",
                )
            value[key] = val
        self.notes.append(
            f"{_join(path, hoist)}: the nested form was normalised; the flat form is preferred: "
            f"put {', '.join(map(str, nested))} directly under {path}"
        )
        return value, {k: f"{hoist}.{k}" for k in nested}


_BAD = object()


def _convert(kind: str, value: Any) -> Any:
    """Return ``value`` as ``kind`` (int, float, bool, str), or ``_BAD``. Bools are not numbers."""
    if isinstance(value, bool):
        return value if kind == "bool" else _BAD
    if kind == "int":
        return (
            int(value)
            if isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            else _BAD
        )
    if kind == "float":
        if isinstance(value, str):  # PyYAML reads `1e-3` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                return _BAD
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else _BAD
    return value if isinstance(value, {"str": str, "bool": bool}[kind]) else _BAD


def _normalise(raw: Any, source: str | None = None) -> tuple[dict, list[str]]:
    walker = _Walker()
    if not isinstance(raw, Mapping):
        walker.fail(
            "", f"the top level must be a mapping of keys to values, got {type(raw).__name__}"
        )
        data = None
    else:
        data = walker.walk(ROOT, raw, "")
    if walker.errors:
        where = f"{source}: " if source else ""
        if len(walker.errors) == 1:
            error = ConfigError(f"{where}invalid config: {walker.errors[0]}")
        else:
            error = ConfigError(
                f"{where}invalid config, {len(walker.errors)} problems:\n  - "
                + "\n  - ".join(walker.errors)
            )
        error.problems = walker.errors
        raise error
    for note in walker.notes:
        warnings.warn(note, ConfigWarning, stacklevel=3)
    return data, walker.notes


def validate(config: Mapping) -> dict:
    """Validate a config dict and return it normalised, with every default filled in.

    Raises ConfigError naming each problem's key path; warns (ConfigWarning) about discouraged
    forms.
    """
    return _normalise(config)[0]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=all(not isinstance(x, (dict, list)) for x in data)
    ),
)


class Config:
    """A validated config: the normalised dict with every default filled in.

    Accessors return copies, so a Config never changes after loading.
    """

    def __init__(
        self, data: dict, notes: list[str] | None = None, source: str | None = None
    ) -> None:
        self._data = data
        self.notes = list(notes or [])  # discouraged forms that were normalised
        self.source = source  # the YAML file it came from, if any

    def to_dict(self) -> dict:
        return copy.deepcopy(self._data)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """Return the full config as YAML; also write it (atomically) to ``path`` if given."""
        text = yaml.dump(self._data, Dumper=_Dumper, sort_keys=False)
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
        return text

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._data[key])

    input_features = property(lambda self: self["input_features"])
    output_features = property(lambda self: self["output_features"])
    trainer = property(lambda self: self["trainer"])
    split = property(lambda self: self["split"])
    audio_features = property(lambda self: [f for f in self.input_features if f["type"] == "audio"])
    output_feature = property(lambda self: self.output_features[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._data == other._data

    def __str__(self) -> str:
        return self.to_yaml()

    def __repr__(self) -> str:
        inputs = ", ".join(f"{f['name']}:{f['type']}" for f in self._data["input_features"])
        out = self.output_feature
        return (
            f"Config(inputs=[{inputs}], output={out['name']}:{out['type']}, source={self.source!r})"
        )


def load_config(config: str | os.PathLike | Mapping | Config) -> Config:
    """Load a config from a YAML file path or a dict, validate it and fill in defaults.

    Raises
    ------
    FileNotFoundError
        The file does not exist (message names it).
    ConfigError
        Invalid YAML (file, line and column given) or an invalid config (key paths given).
    """
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config(*_normalise(config))
    if not isinstance(config, (str, os.PathLike)):
        raise ConfigError(f"expected a path to a YAML file or a dict, got {type(config).__name__}")
    path = Path(config)
    if not path.is_file():
        raise missing_file(path, "config file")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty")
    return Config(*_normalise(raw, str(path)), source=str(path))


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(_plain, value)) + "]"
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def schema_reference(
    node: dict = ROOT, path: str = "", when: str = ""
) -> list[tuple[str, str, str, str]]:
    """Rows ``(key path, default, allowed, when)`` describing every key, for docs and ``--help``.

    ``when`` gives the ``type`` choices under which the key exists (e.g. ``encoder.type=rnn``).
    """
    rows: list[tuple[str, str, str, str]] = []
    kind = node["kind"]
    if kind == "mapping":
        for key, child in node["keys"].items():
            if not (key == "type" and "choices" in child and len(child["choices"]) == 1):
                rows += schema_reference(child, _join(path, key), when)
    elif kind == "union":
        rows.append(
            (_join(path, "type"), _plain(node["default"]), ", ".join(node["variants"]), when)
        )
        prefix = path.rsplit("]", 1)[-1].lstrip(".")
        for tag, var in node["variants"].items():
            cond = f"{_join(prefix, 'type')}={tag}"
            rows += schema_reference(var, path, f"{when}, {cond}" if when else cond)
    elif kind == "list" and node["item"]["kind"] in ("mapping", "union"):
        rows += schema_reference(node["item"], f"{path}[]", when)
    else:
        leaf = node["item"] if kind == "list" else node
        allowed = (
            ", ".join(map(_plain, leaf.get("choices", [])))
            or _KIND_WORDS[leaf["kind"]].split(" ", 1)[1]
        )
        allowed += "".join(
            f", {op} {leaf[rule]}"
            for rule, op in (("ge", ">="), ("gt", ">"), ("le", "<="))
            if rule in leaf
        )
        if kind == "list":
            allowed = f"list of {node.get('length', '')} ({allowed})".replace("  ", " ")
        rows.append((path, _plain(node["default"]), allowed, when))
    return rows
