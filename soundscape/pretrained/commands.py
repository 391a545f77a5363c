"""The ``soundscape birdnet`` and ``soundscape embed`` commands (see `soundscape.cli`).

``soundscape birdnet --dataset recordings/ --output_directory birdnet_out`` writes

* ``scores/``: BirdNET's scores per 3-s window and recording (a `predict_recordings`
  output folder: re-runs resume, unreadable files are listed in ``scores/errors.csv``);
* ``detections.csv``: windows scoring at least ``--min_conf`` merged into events
  (`soundscape.detections.detections`), one row per species and event;
* ``raven/``: the events as Raven selection tables, one per recording.

``soundscape embed --dataset recordings/ --output_directory embeddings`` writes the
Parquet embedding store of `soundscape.embed`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(birdnet: argparse.ArgumentParser, embed: argparse.ArgumentParser) -> None:
    """The options of the two commands."""
    for p in (birdnet, embed):
        p.add_argument("--dataset", required=True,
                       help="a folder of recordings (searched recursively), a file or a glob")
        p.add_argument("--clip_overlap", type=float, default=0.0,
                       help="seconds of overlap between consecutive 3-s windows (default 0)")
        p.add_argument("--batch_size", type=int, default=16, help="windows per call (default 16)")
        p.add_argument("--num_threads", type=int, default=1,
                       help="BirdNET interpreter threads (default 1)")
        p.add_argument("--overwrite", action="store_true",
                       help="start over in an output folder holding results of other settings")
    birdnet.add_argument("--output_directory", default="birdnet_results",
                         help="writes scores/, detections.csv and raven/ "
                              "(default: birdnet_results)")
    birdnet.add_argument("--species_list", help="text file, one species per line "
                                                "('Scientific name_Common name', or either name)")
    birdnet.add_argument("--lat", type=float, help="latitude: keep species expected there")
    birdnet.add_argument("--lon", type=float, help="longitude (with --lat)")
    birdnet.add_argument("--week", type=int, default=-1,
                         help="week 1-48 of BirdNET's year for --lat/--lon (default -1: all year)")
    birdnet.add_argument("--location_threshold", type=float, default=0.03,
                         help="lowest occurrence value of a kept species (default 0.03)")
    birdnet.add_argument("--sensitivity", type=float, default=1.0,
                         help="BirdNET's sigmoid sensitivity, 0.5-1.5 (default 1.0)")
    birdnet.add_argument("--min_conf", type=float, default=0.1,
                         help="lowest score of a detection (default 0.1, as BirdNET)")
    birdnet.add_argument("--output_format", default="csv", choices=["csv", "parquet"],
                         help="per-recording score tables (default csv)")
    embed.add_argument("--output_directory", default="embeddings",
                       help="the Parquet embedding store (default: embeddings)")
    embed.add_argument("--backbone", default="birdnet", choices=["birdnet"],
                       help="backbone (default birdnet; ONNX backbones from Python)")


def run_birdnet(args) -> int:
    """``soundscape birdnet``: BirdNET's scores, detections and Raven tables."""
    from ..annotations import write_raven
    from ..detections import detections
    from ..torch.predict import predict_recordings
    from .species import birdnet_detector

    out = Path(args.output_directory)
    model = birdnet_detector(species_list=args.species_list, lat=args.lat, lon=args.lon,
                             week=args.week, location_threshold=args.location_threshold,
                             sensitivity=args.sensitivity, num_threads=args.num_threads)
    scores = predict_recordings(
        model, args.dataset, clip_overlap=args.clip_overlap, final_clip="remainder",
        batch_size=args.batch_size, output_dir=out / "scores", output_format=args.output_format,
        progress=not args.quiet, overwrite=args.overwrite)
    events = detections(scores, threshold=args.min_conf)
    out.mkdir(parents=True, exist_ok=True)
    events.to_csv(out / "detections.csv", index=False)
    tables = write_raven(events, out / "raven") if len(events) else []
    summary = scores.attrs["summary"]
    print(f"BirdNET ({len(model.classes)} species): {summary['n_files']} recording(s), "
          f"{len(scores)} windows, {len(events)} detection(s) >= {args.min_conf}; wrote "
          f"{out / 'detections.csv'}, {len(tables)} Raven table(s) in {out / 'raven'}")
    return 0


def run_embed(args, **engine) -> int:
    """``soundscape embed``: the Parquet embedding store of a folder of recordings
    (`engine`: ``engine=``, ``address=``, ``num_actors=`` of `predict_recordings`)."""
    from .birdnet import BirdNET
    from .embeddings import embed

    backbone = BirdNET(num_threads=args.num_threads)
    store = embed(backbone, args.dataset, clip_overlap=args.clip_overlap,
                  output_dir=args.output_directory, progress=not args.quiet,
                  batch_size=args.batch_size, overwrite=args.overwrite, **engine)
    s = store.summary
    print(f"embedded {s['n_scored']} recording(s) ({s['n_windows']} windows), {s['n_skipped']} "
          f"already done, {s['n_failed']} failed; {len(store)} windows in {store.root}")
    return 0
