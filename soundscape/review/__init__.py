"""Review detections in the browser and feed the verdicts back into training.

`serve` (and ``soundscape review``) starts a local web page showing one clip at a time:
its spectrogram, an audio player, class, score, file and time, and buttons / keys for a
verdict. Verdicts go at once to a review table (`ReviewTable`), which reads back as
training labels (`review_labels`), Raven tables (`write_review_raven`) or a folder of
WAV clips (`export_clips`); `review_report` / `write_report` estimate precision by score,
fit a logistic calibration curve and give thresholds for a target precision.

Modules: `selection` (which clips), `table` (the review table), `report` (precision and
thresholds), `media` (spectrogram pictures, WAV cuts, path confinement), `app` (the web
app), `command` (the CLI).
"""

from .app import serve
from .report import fit_logistic, plot_report, precision_by_bin, review_report, write_report
from .selection import MODES, candidates, read_candidates, select_clips
from .table import (VERDICTS, ReviewTable, default_review_path, export_clips, read_review,
                    review_events, review_labels, write_review_raven)


__all__ = ["serve", "ReviewTable", "VERDICTS", "MODES", "candidates", "read_candidates",
           "select_clips", "read_review", "review_labels", "review_events",
           "write_review_raven", "export_clips", "default_review_path", "review_report",
           "plot_report", "write_report", "fit_logistic", "precision_by_bin"]
