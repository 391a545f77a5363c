"""Print the README's "Fast inference" tables from ``benchmarks/results.json`` and
``benchmarks/opensoundscape_compare.json`` (markdown).

Usage::

    .venv/bin/python benchmarks/readme_table.py            # prints the table
    .venv/bin/python benchmarks/readme_table.py --update   # rewrites it in README.md

The table lies between the ``<!-- compare-table -->`` and ``<!-- /compare-table -->``
markers of README.md; nothing else there is touched.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- compare-table -->", "<!-- /compare-table -->"
NAMES = {"fp32": "fp32", "bf16": "bf16 autocast + channels-last", "bf16+compile": "bf16 + torch.compile",
         "int8": "int8 (torch.ao x86, calibrated)", "onnxruntime": "ONNX Runtime (fp32)"}


def _f(value, digits=1, suffix=""):
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def table(results: dict) -> str:
    compare = results.get("compare") or {}
    lines = []
    if compare.get("cases"):
        rec = compare["recording"]
        before, after = compare.get("load_average_before"), compare.get("load_average_after")
        lines += [
            f"Prediction: ResNet18 (224x224x3, 5-s windows), {rec['minutes']:g}-minute {rec['sample_rate']} Hz "
            f"recording, batch {compare['batch_size']}; {compare['rounds']} round(s) per case, bare model "
            f"measured before and after each. Load average {before[0]:.1f} before, {after[0]:.1f} after "
            f"({compare['started']}).",
            "",
            "| model runs as | pipeline clips/s | bare model clips/s | pipeline / bare | CPU-time ratio "
            "| max abs score diff vs fp32 | peak RSS MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in compare["cases"]:
            name = NAMES.get(c["case"], c["case"])
            if "error" in c:
                lines.append(f"| {name} | failed: see results.json | | | | | |")
                continue
            diff = c.get("max_abs_score_diff_vs_fp32")
            lines.append(f"| {name} | {_f(c['clips_per_s'])} | {_f(c['bare_clips_per_s'])} | "
                         f"{_f(100 * c['ratio'], 0, ' %')} | {_f(c.get('cpu_ratio'), 2)} | "
                         f"{'-' if diff is None or c['case'] == 'fp32' else f'{diff:.4f}'} | "
                         f"{_f(c.get('peak_rss_mib'), 0)} |")
    training = results.get("training_compare") or {}
    if "fp32" in training and "bf16" in training:
        lines += [
            "",
            f"Training: ResNet18 on ESC-10 folds 1-4 ({training['train_clips']} clips) + "
            f"{training['valid_clips']} validation clips, one epoch with the cache warm, batch "
            f"{training['batch_size']}.",
            "",
            "| precision | train() epoch s | bare fwd+bwd s | epoch / bare |",
            "|---|---|---|---|",
        ]
        for p in ("fp32", "bf16"):
            t = training[p]
            lines.append(f"| {p} | {_f(t['epoch_s'])} | {_f(t['bare_s'])} | {_f(t['ratio'], 2)} |")
    return "\n".join(lines)


def _load(load) -> str:
    return f"{load[0]:.1f}" if load else "?"


def _section(intro: str, columns: list[str]) -> list[str]:
    """A paragraph, then the head of a markdown table with `columns`."""
    return [intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def peer_table(peer: dict) -> str:
    """Ours against OpenSoundscape 0.13.2 (``opensoundscape_compare.py``), both sections."""
    lines = []
    pred = peer.get("prediction")
    if pred:
        rec = pred["recording"]
        lines += _section(
            f"Against OpenSoundscape 0.13.2 (`benchmarks/opensoundscape_compare.py`): the same "
            f"ResNet18 (random weights, 2 classes) on the same {rec['minutes']:g}-minute "
            f"{rec['sample_rate']} Hz recording, 5-s windows, batch 32, each run its own process, "
            f"{len(next(iter(pred['runs'].values())))} interleaved rounds (medians). Load average "
            f"{_load(pred['load_average_before'])} before, {_load(pred['load_average_after'])} after.",
            ["prediction", "clips/s", "x real time", "vs OpenSoundscape (best setting)"])
        best = pred["opensoundscape_best_clips_per_s"]
        for k, v in pred["median_clips_per_s"].items():
            lines.append(f"| {k} | {v:.1f} | {v * rec['clip_duration']:.0f} | {v / best:.2f}x |")
    train = peer.get("training")
    if train:
        rounds = len(next(iter(train["runs"].values())))
        lines += [""] + _section(
            f"Training: {train['data']}, two epochs per run, {rounds} interleaved round(s) (medians; "
            f"OpenSoundscape: `CNN.train`, bf16 autocast, its default augmentations; ours: "
            f"`train(precision=\"auto\")`, second epoch with the cache warm). Load average "
            f"{_load(train['load_average_before'])} before, {_load(train['load_average_after'])} after.",
            ["training", "s per epoch", "OpenSoundscape (best) / this"])
        best = train["opensoundscape_best_epoch_s"]
        for k, v in train["median_epoch_s"].items():
            lines.append(f"| {k} | {v:.1f} | {best / v:.2f}x |")
        first = train["soundscape_epoch_1_s"]
        lines.append(f"| soundscape, first epoch (cold cache) | {first:.1f} | {best / first:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results.json"))
    ap.add_argument("--update", action="store_true", help="rewrite the table in README.md")
    args = ap.parse_args(argv)
    text = table(json.loads(Path(args.results).read_text()))
    peer = Path(args.results).with_name("opensoundscape_compare.json")
    if peer.exists():
        text += "\n\n" + peer_table(json.loads(peer.read_text()))
    if not args.update:
        print(text)
        return
    readme = ROOT / "README.md"
    doc = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    readme.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", doc), encoding="utf-8")
    print("updated README.md")


if __name__ == "__main__":
    main()
