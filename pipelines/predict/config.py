"""`predict`'s settings (also the [predict] table of an `olymp run` config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PredictConfig:
    # --- inputs
    run_dir: str  # a train-head run, a blend, or a finetune run directory
    inputs: list[str]  # test embedding dirs in the training order, or one raw input (folder / listing; a finetune run: only this)
    # --- output
    output: str | None = None  # submission CSV to write; None: only return the frame
    proba: bool = False  # one probability column per class (or label) instead of the predicted label(s)
    threshold: float | None = None  # multilabel: decision threshold; None: the run's (tuned at train-head)
    sample_submission: str | None = None  # the contest's sample: row order, id and target column names
    # --- extraction of raw inputs (ignored for embedding dirs)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int | None = None  # images per forward pass; None: the per-device default of extract
    tta: str = "none"  # finetune runs: none | hflip (mean of the original and the mirrored view, where the run allows it)
    # --- checks
    allow_tta_mismatch: bool = False  # accept test embeddings made with another --tta than training
