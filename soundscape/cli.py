"""The `soundscape` command line (also `python -m soundscape`).

Commands: ``train``, ``evaluate``, ``predict``, ``export``, ``birdnet``, ``embed``,
``activity``, ``review``, ``visualize``, ``config show|reference``, ``datasets list|download``. Exit status:
0 on success, 2 for a usage or config mistake, 1 when
the work fails (bad data, unreadable files, training failure), 130 when interrupted; the reason
is one line on stderr (``--debug`` re-raises to show the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from . import __version__
from .errors import ConfigError

#: the plots of `soundscape visualize` (see soundscape.visualize.VISUALIZATIONS)
VISUALIZATION_NAMES = ["confusion_matrix", "learning_curves", "precision_recall", "roc_curves"]

_EXAMPLES = {
    "train": "soundscape train --config config.yaml --dataset emotions.csv\n"
             "  soundscape train --config config.yaml --dataset soundscape://sample_woodcock "
             "--output_directory results --experiment_name woodcock\n"
             "  soundscape train --config config.yaml --dataset emotions.csv --k_fold 5   "
             "# mean and spread over 5 folds",
    "evaluate": "soundscape evaluate --model_path results/experiment_run/model "
                "--dataset emotions.csv --split test --output_directory test_results",
    "predict": "soundscape predict --model_path results/experiment_run/model "
               "--dataset new_audio.csv --output_directory predictions\n"
               "  soundscape predict --model_path results/experiment_run/model "
               "--dataset recordings/ --output_directory predictions   # every window of every file",
    "birdnet": "soundscape birdnet --dataset recordings/ --output_directory birdnet_results\n"
               "  soundscape birdnet --dataset recordings/ --lat 42.45 --lon -76.48 --week 22 "
               "--min_conf 0.25\n"
               "  soundscape birdnet --dataset recordings/ --species_list my_species.txt",
    "embed": "soundscape embed --dataset recordings/ --output_directory embeddings --clip_overlap 1.5",
    "export": "soundscape export --model_path results/experiment_run/model --output model.onnx\n"
              "  soundscape export --model_path best.model --output model.onnx --frontend   # waveform input",
    "visualize": "soundscape visualize --visualization confusion_matrix "
                 "--ground_truth_metadata results/experiment_run/model/training_set_metadata.json "
                 "--test_statistics test_results/test_statistics.json --output_directory "
                 "visualizations --file_format png\n"
                 "  soundscape visualize --visualization learning_curves --training_statistics "
                 "results/experiment_run/training_statistics.json --output_directory visualizations",
    "config": "soundscape config show config.yaml      # the full config, defaults filled in\n"
              "  soundscape config reference             # every key, its default and allowed values",
    "datasets": "soundscape datasets list\n  soundscape datasets download esc50\n"
                "  soundscape datasets download esc10 --data_root ../shared/data",
}


def _sub(subparsers, name: str, help_text: str, common) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name, help=help_text, description=help_text, parents=[common],
        epilog=f"example:\n  {_EXAMPLES[name]}", formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def _engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="folder input: score here (local, default) or on Ray actors (needs the ray extra)")
    p.add_argument("--address", help="--engine ray: the cluster (auto, ray://HOST:10001); "
                                     "default: a local Ray instance")
    p.add_argument("--num_actors", "--num-actors", type=int,
                   help="--engine ray: models running at once (default: one per CPU of the cluster)")


def _engine_kwargs(args) -> dict:
    if args.engine == "local":
        return {}
    return {"engine": args.engine, "address": args.address, "num_actors": args.num_actors}


def _precision_option(p: argparse.ArgumentParser, training: bool = False) -> None:
    choices = ["auto", "fp32", "bf16", "fp16"]
    if training:
        p.add_argument("--precision", choices=choices, default=None,
                       help="number format of training (default: the config's trainer.precision, "
                            "auto: bf16 on CPUs with native bf16 and on GPUs, else fp32)")
        return
    p.add_argument("--precision", choices=choices, default="auto",
                   help="number format of the model (default auto: bf16 on CPUs with native bf16 "
                        "and on GPUs, else fp32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network first (about a minute; pays off on long runs)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or progress messages")
    parser = argparse.ArgumentParser(
        prog="soundscape", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and run animal-sound classifiers from a YAML config and a CSV of audio paths.",
        epilog="run `soundscape COMMAND --help` for a command's options and an example",
    )
    parser.add_argument("--version", action="version", version=f"soundscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _sub(sub, "train", "train a model from a config and a CSV", common)
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--dataset", help="CSV/TSV/Parquet table, or soundscape://NAME / ludwig://NAME; "
                                      "split as the config's `split:` says")
    p.add_argument("--training_set", help="training table (instead of --dataset)")
    p.add_argument("--validation_set", help="validation table (with --training_set)")
    p.add_argument("--test_set", help="test table (with --training_set)")
    p.add_argument("--output_directory", default="results", help="where the run folder goes (default: results)")
    p.add_argument("--resume_from", help="an interrupted run folder: continue from its last checkpoint")
    p.add_argument("--k_fold", type=int, metavar="N",
                   help="cross-validate: train N models, each tested on one of N folds of --dataset, "
                        "and report the mean and spread of the test metrics")
    p.add_argument("--experiment_name", default="experiment",
                   help="run folder name prefix: <name>_run, <name>_run_1 ... (default: experiment)")
    p.add_argument("--data_root", help="folder holding local data sets (esc10/, fsdd/) for URIs")
    _device_option(p)
    _precision_option(p, training=True)

    p = _sub(sub, "evaluate", "evaluate a trained model on a labelled CSV", common)
    p.add_argument("--model_path", required=True, help="model folder (results/<run>/model) or model file")
    p.add_argument("--dataset", required=True, help="labelled CSV/TSV/Parquet table or URI")
    p.add_argument("--split", default="full", choices=["full", "training", "validation", "test"],
                   help="rows to evaluate: full (default), or the training/validation/test part of "
                        "the split made at training time (same config, same table)")
    p.add_argument("--output_directory", default="test_results",
                   help="writes test_statistics.json and predictions.parquet/.csv (default: test_results)")
    p.add_argument("--skip_save_predictions", action="store_true",
                   help="do not write the predictions (they are written by default)")
    p.add_argument("--batch_size", type=int, help="examples per batch (default: the trainer's)")
    p.add_argument("--data_root", help="folder holding local data sets for URIs")
    _device_option(p)
    _precision_option(p)

    p = _sub(sub, "predict", "predict a CSV of audio files, or every window of a folder of recordings", common)
    p.add_argument("--model_path", required=True, help="model folder (results/<run>/model) or model file")
    p.add_argument("--dataset", required=True, help="CSV/TSV/Parquet with the model's input columns, "
                                                     "or a folder of recordings")
    p.add_argument("--output_directory", default="predictions",
                   help="writes predictions.parquet and predictions.csv (default: predictions)")
    p.add_argument("--clip_overlap", type=float, default=0.0,
                   help="folder input: seconds of overlap between windows (default 0)")
    p.add_argument("--batch_size", type=int, help="examples per batch (default: the trainer's)")
    p.add_argument("--data_root", help="folder holding local data sets for URIs")
    _device_option(p)
    _precision_option(p)
    _engine_options(p)

    p = _sub(sub, "export", "write a model as an ONNX file (the network, or waveform -> logits)", common)
    p.add_argument("--model_path", required=True, help="model folder (results/<run>/model) or model file")
    p.add_argument("--output", required=True, help="the ONNX file to write (e.g. model.onnx)")
    p.add_argument("--frontend", action="store_true",
                   help="include the front end: the graph takes waveforms (batch, clip samples) at the "
                        "model's sample rate instead of features")

    from .pretrained.commands import add_arguments

    birdnet = _sub(sub, "birdnet", "BirdNET V2.4's species scores, detections and Raven tables "
                   "for every 3-s window of a folder of recordings (model CC BY-NC-SA 4.0)", common)
    embed = _sub(sub, "embed", "BirdNET embeddings of every window of a folder of recordings, "
                 "as a resumable Parquet store", common)
    add_arguments(birdnet, embed)
    _engine_options(embed)

    p = _sub(sub, "visualize", "plot training or test statistics", common)
    p.add_argument("--visualization", "-v", required=True, choices=VISUALIZATION_NAMES)
    p.add_argument("--training_statistics", nargs="+", help="training_statistics.json file(s)")
    p.add_argument("--test_statistics", nargs="+", help="test_statistics.json file(s)")
    p.add_argument("--ground_truth_metadata", help="training_set_metadata.json (class names)")
    p.add_argument("--output_feature_name", help="output to plot (default: the first)")
    p.add_argument("--model_names", nargs="+", help="one name per statistics file")
    p.add_argument("--top_n_classes", type=int, help="confusion matrix: keep the most frequent classes")
    p.add_argument("--normalize", action="store_true", help="confusion matrix: divide rows by their totals")
    p.add_argument("--output_directory", default="visualizations", help="(default: visualizations)")
    p.add_argument("--file_format", default="png", choices=["png", "pdf", "svg"])

    p = _sub(sub, "config", "print a config with every default filled in, or the key reference", common)
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser("show", help="print the full config (YAML)", parents=[common])
    show.add_argument("config", help="YAML config file")
    csub.add_parser("reference", help="list every config key with its default and allowed values",
                    parents=[common])

    from .dataset_registry import REGISTRY

    p = _sub(sub, "datasets", "list or download named data sets", common)
    dsub = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    dsub.add_parser("list", help="the registered data sets", parents=[common])
    dl = dsub.add_parser("download", help="download (or index a local set) and write NAME.csv",
                         parents=[common])
    dl.add_argument("name", choices=sorted(REGISTRY))
    dl.add_argument("--output_directory", default=".", help="where NAME.csv and NAME/ go (default: .)")
    dl.add_argument("--data_root", help="folder holding esc10/ and fsdd/ (local sets)")
    dl.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the server (default 5)")
    from .activity import add_command as _add_activity

    _add_activity(sub, common)
    from .review.command import add_command as _add_review

    _add_review(sub, common)
    return parser


# ------------------------------------------------------------------------------ commands
def _config_file(path: str) -> str:
    """`path` of a config file that exists (a usage mistake otherwise: exit status 2)."""
    if os.path.isdir(path):
        raise _Usage(f"config file {path} is a folder, not a YAML file")
    if os.path.islink(path) and not os.path.exists(path):
        raise _Usage(f"config file {path} is a broken symbolic link or a link loop")
    if not os.path.isfile(path):
        raise _Usage(f"config file not found: {path}")
    return path


def _train(args) -> int:
    from .config import load_config

    config = load_config(_config_file(args.config))  # config mistakes surface before the heavy imports
    from .workflow import train

    if not args.dataset and not args.training_set:
        raise _Usage("give --dataset (split by the config) or --training_set")
    if args.dataset and args.training_set:
        raise _Usage("give either --dataset or --training_set, not both")
    if args.k_fold is not None:
        return _train_kfold(args, config)
    results = train(
        config, args.dataset, training_set=args.training_set, validation_set=args.validation_set,
        test_set=args.test_set, output_directory=args.output_directory,
        experiment_name=args.experiment_name, data_root=args.data_root, device=args.device,
        progress=not args.quiet, resume_from=args.resume_from, precision=args.precision,
    )
    print(f"run folder: {results.run_directory}")
    print(f"model: {results.model_directory}")
    if results.test_statistics:
        print("test: " + _summary(results.test_statistics))
    return 0


def _train_kfold(args, config) -> int:
    from .workflow import kfold_cross_validate

    if args.training_set or args.resume_from:
        raise _Usage("--k_fold makes its own folds from --dataset; it cannot take --training_set "
                     "or --resume_from")
    if args.k_fold < 2:
        raise _Usage(f"--k_fold must be at least 2, got {args.k_fold}")
    results = kfold_cross_validate(
        args.k_fold, config, args.dataset, output_directory=args.output_directory,
        experiment_name=args.experiment_name, data_root=args.data_root, device=args.device,
        progress=not args.quiet)
    for row, fold in zip(results.fold_statistics.to_dict("records"), results.folds):
        print(f"fold {row['fold']}/{args.k_fold}: test " + _summary(fold.test_statistics))
    print(f"k-fold ({args.k_fold} folds) test: {results.describe()} (mean ± standard deviation "
          "over the folds)")
    print(f"run folder: {results.run_directory}")
    return 0


def _summary(stats: dict) -> str:
    name = next(k for k in stats if k != "combined")
    s = stats[name]

    def fmt(v):
        return "n/a" if v is None or v != v else f"{v:.3f}"

    return (f"{name}: loss {fmt(s['loss'])}, accuracy {fmt(s['accuracy'])}, macro F1 "
            f"{fmt(s['macro_f1'])}, ROC-AUC {fmt(s['roc_auc'])} ({s['num_examples']} examples)")


def _evaluate(args) -> int:
    from .workflow import evaluate

    stats, _, out = evaluate(
        args.model_path, args.dataset, split=args.split, output_directory=args.output_directory,
        collect_predictions=not args.skip_save_predictions, data_root=args.data_root,
        device=args.device, batch_size=args.batch_size, progress=not args.quiet,
        precision=args.precision, compile=args.compile,
    )
    print(_summary(stats))
    print(f"wrote {out / 'test_statistics.json'}")
    return 0


def _predict(args) -> int:
    import math

    from .workflow import predict

    model = args.model_path
    if not math.isfinite(args.clip_overlap) or args.clip_overlap < 0:
        raise _Usage(f"--clip_overlap must be a number of seconds >= 0, got {args.clip_overlap}")
    if os.path.isdir(args.dataset):  # windows of a folder: check the overlap against the model
        from .workflow.model import load_detector

        model = load_detector(args.model_path)
        clip = model.preprocessing.clip_duration
        if clip is not None and args.clip_overlap >= clip:
            raise _Usage(f"--clip_overlap {args.clip_overlap:g} must be smaller than the model's "
                         f"clip length ({clip:g} s)")
    preds, out = predict(
        model, args.dataset, output_directory=args.output_directory,
        data_root=args.data_root, device=args.device, batch_size=args.batch_size,
        clip_overlap=args.clip_overlap, progress=not args.quiet, precision=args.precision,
        compile=args.compile, **_engine_kwargs(args),
    )
    print(f"wrote {len(preds)} predictions to {out / 'predictions.csv'}")
    return 0


def _export(args) -> int:
    from .workflow.model import load_detector

    detector = load_detector(args.model_path)
    path = detector.export_onnx(args.output, frontend=args.frontend)
    what = "waveform" if args.frontend else "features"
    print(f"wrote {path} (input: {what}, output: logits of {len(detector.classes)} classes)")
    return 0


def _visualize(args) -> int:
    from .visualize import VISUALIZATIONS

    fn, needs = VISUALIZATIONS[args.visualization]
    kwargs = dict(output_feature_name=args.output_feature_name, model_names=args.model_names,
                  output_directory=args.output_directory, file_format=args.file_format)
    if needs == "training":
        if not args.training_statistics:
            raise _Usage(f"--visualization {args.visualization} needs --training_statistics")
        paths = fn(args.training_statistics, **kwargs)
    else:
        if not args.test_statistics:
            raise _Usage(f"--visualization {args.visualization} needs --test_statistics")
        if args.visualization == "confusion_matrix":
            kwargs.update(ground_truth_metadata=args.ground_truth_metadata,
                          top_n_classes=args.top_n_classes, normalize=args.normalize)
        paths = fn(args.test_statistics, **kwargs)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _config(args) -> int:
    from .config import load_config, schema_reference

    if args.config_command == "show":
        sys.stdout.write(load_config(_config_file(args.config)).to_yaml())
        return 0
    rows = schema_reference()
    width = max(len(r[0]) for r in rows)
    for key, default, allowed, when in rows:
        extra = f"  [{when}]" if when else ""
        print(f"{key:<{width}}  default {default:<10}  {allowed}{extra}")
    return 0


def _datasets(args) -> int:
    from .dataset_registry import download, list_datasets

    if args.datasets_command == "list":
        for info in list_datasets():
            where = info.url if info.kind == "download" else "local"
            print(f"{info.name:<16} {info.kind:<9} {info.size:<8} {info.description}  ({where})")
        return 0
    csv = download(args.name, args.output_directory, data_root=args.data_root, timeout=args.timeout,
                   progress=not args.quiet)
    print(f"wrote {csv}")
    return 0


def _activity(args) -> int:
    from .activity import run_command

    return run_command(args)


def _review(args) -> int:
    from .review.command import run_command

    return run_command(args)


def _birdnet(args) -> int:
    from .pretrained.commands import run_birdnet

    return run_birdnet(args)


def _embed(args) -> int:
    from .pretrained.commands import run_embed

    return run_embed(args, **_engine_kwargs(args))


_COMMANDS = {"train": _train, "evaluate": _evaluate, "predict": _predict, "export": _export,
             "birdnet": _birdnet, "embed": _embed, "activity": _activity, "visualize": _visualize,
             "config": _config, "datasets": _datasets, "review": _review}


class _Usage(Exception):
    """A command-line mistake found after parsing (exit status 2)."""


def _check_device(args) -> None:
    """``--device`` names a device of this machine (a usage mistake otherwise: exit status 2)."""
    if getattr(args, "device", None) is None:
        return
    from .errors import ParameterError
    from .runtime import resolve_device

    try:
        resolve_device(args.device)
    except ParameterError as exc:
        raise _Usage(f"--device: {exc}") from None


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"{record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


def _setup_output(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger("soundscape")
    logger.handlers = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    warnings.showwarning = lambda message, category, *a, **k: print(f"warning: {message}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    problems = getattr(exc, "problems", None)
    if problems and len(problems) > 1:
        head = str(exc).splitlines()[0].rstrip(":")
        return f"{head}: " + "; ".join(problems)
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines) if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0)
    args.debug = getattr(args, "debug", False)
    args.quiet = getattr(args, "quiet", False)
    if args.command is None:
        parser.print_help()
        return 0
    _setup_output(args.quiet)
    from .errors import SoundscapeError

    try:
        _check_device(args)
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stdout = open(os.devnull, "w")
        return 0
    except (ConfigError, _Usage) as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (SoundscapeError, FileNotFoundError, KeyError, ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback is one flag away
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
