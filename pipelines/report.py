"""Reports of a train-head run, drawn from its out-of-fold predictions (written by `train`,
re-read by `olymp report`):

    RUN_DIR/
      per_class.csv       class, precision, recall, f1, support (classification; argmax of the OOF probabilities;
                          multilabel: one row per label at each fold's cross-fitted threshold or --threshold, + AP)
      confusion.png       row-normalised confusion matrix (classification)
      fold_scores.png     the main metric per fold, with the all-OOF score
      pred_vs_true.png    out-of-fold prediction against the truth (regression)

matplotlib (Agg backend) is imported only here, only when drawing.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.errors import InputError

PER_CLASS = "per_class.csv"
CONFUSION = "confusion.png"
FOLD_SCORES = "fold_scores.png"
PRED_VS_TRUE = "pred_vs_true.png"
REPORT_FILES = (PER_CLASS, CONFUSION, FOLD_SCORES, PRED_VS_TRUE)
MAX_LABELLED_CLASSES = 40  # beyond this, the confusion matrix drops its tick labels and cell numbers


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed, safe in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _quiet_drawing(draw):
    """matplotlib's warnings (tight_layout, identical limits...) are about the picture, not the
    results: never printed (they would show even under --quiet)."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return draw(*args, **kwargs)
    return drawn


def per_class_table(classes: list[str], y_true: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    from sklearn.metrics import precision_recall_fscore_support

    y_pred = proba.argmax(axis=1)
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return pd.DataFrame({
        "class": pd.Series(classes, dtype=object), "precision": precision, "recall": recall,
        "f1": f1, "support": support.astype(int),
    })


def per_label_table(labels: list[str], Y: np.ndarray, proba: np.ndarray, threshold: float) -> pd.DataFrame:
    """Multilabel: each label scored as its own binary decision at the run's threshold."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    Y = np.asarray(Y, dtype=np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        Y, (proba >= threshold).astype(np.int64), average=None, zero_division=0
    )
    average_precision = [
        average_precision_score(Y[:, j], proba[:, j]) if 0 < Y[:, j].sum() < len(Y) else np.nan
        for j in range(Y.shape[1])
    ]
    return pd.DataFrame({
        "class": pd.Series(labels, dtype=object), "precision": precision, "recall": recall, "f1": f1,
        "support": np.asarray(support).astype(int), "average_precision": average_precision,
    })


@_quiet_drawing
def draw_confusion(path: Path, classes: list[str], y_true: np.ndarray, proba: np.ndarray) -> None:
    from sklearn.metrics import confusion_matrix

    plt = pyplot()
    counts = confusion_matrix(y_true, proba.argmax(axis=1), labels=np.arange(len(classes)))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    size = min(12.0, 3.0 + 0.4 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if k <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(k), classes, rotation=90 if k > 8 else 0)
        ax.set_yticks(range(k), classes)
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    if counts[i, j]:
                        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"out-of-fold confusion ({len(y_true)} rows)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@_quiet_drawing
def draw_fold_scores(path: Path, metric: str, folds: list[dict], oof_score: float | None) -> None:
    plt = pyplot()
    values = [np.nan if fold.get(metric) is None else float(fold[metric]) for fold in folds]
    finite = [v for v in values if np.isfinite(v)]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(values) + 2), 3.5))
    ax.bar([str(fold["fold"]) for fold in folds], values, color="#4c72b0")
    if oof_score is not None and np.isfinite(oof_score):
        ax.axhline(oof_score, color="#dd8452", linestyle="--", label=f"all out-of-fold: {oof_score:.4f}")
        ax.legend(loc="lower right")
    if finite:
        low, high = min(finite), max(finite)
        pad = (high - low) * 0.5 or abs(high) * 0.05 or 0.05
        ax.set_ylim(low - pad if low - pad > 0 or low < 0 else 0, high + pad)
    ax.set_xlabel("fold")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per fold")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@_quiet_drawing
def draw_pred_vs_true(path: Path, y_true: np.ndarray, pred: np.ndarray) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y_true, pred, s=6, alpha=0.5)
    low, high = float(min(y_true.min(), pred.min())), float(max(y_true.max(), pred.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1, label="prediction = truth")
    ax.set_xlabel("true")
    ax.set_ylabel("out-of-fold prediction")
    ax.set_title(f"predicted vs true ({len(y_true)} rows)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_reports(run_dir: Path, task: str, classes: list[str] | None, y: np.ndarray, oof: np.ndarray,
                  scores: dict, threshold: float | None = None) -> dict[str, str]:
    """Draw the run's report files; returns {kind: file name} as recorded in the manifest."""
    run_dir = Path(run_dir)
    written = {}
    metric = scores["metric"]
    if task == "multilabel":  # no single confusion matrix: one row of scores per label
        per_label_table(classes, y, oof, 0.5 if threshold is None else threshold).to_csv(run_dir / PER_CLASS, index=False)
        written["per_class"] = PER_CLASS
    elif classes:
        per_class_table(classes, y, oof).to_csv(run_dir / PER_CLASS, index=False)
        written["per_class"] = PER_CLASS
        draw_confusion(run_dir / CONFUSION, classes, y, oof)
        written["confusion"] = CONFUSION
    else:
        draw_pred_vs_true(run_dir / PRED_VS_TRUE, y, oof)
        written["pred_vs_true"] = PRED_VS_TRUE
    draw_fold_scores(run_dir / FOLD_SCORES, metric, scores["folds"], scores["oof"].get(metric))
    written["fold_scores"] = FOLD_SCORES
    return written


# --------------------------------------------------------------------------- reading a run back

@dataclass
class RunReport:
    """What `olymp report` shows; attribute names match TrainResult so one table renders both."""

    run_dir: Path
    head: str
    task: str
    classes: list[str] | None
    metric: str
    metrics: list[str]
    fold_scores: list[dict]
    mean: dict
    std: dict
    oof: dict
    n_rows: int
    per_class: pd.DataFrame | None
    pictures: dict[str, str]  # kind -> path
    provenance: dict[str, str] = field(default_factory=dict)  # how each number was obtained (scores.json)

    def summary(self) -> dict:
        return {
            "run_dir": str(self.run_dir), "head": self.head, "task": self.task, "classes": self.classes,
            "metric": self.metric, "n_rows": self.n_rows, "folds": self.fold_scores, "mean": self.mean,
            "std": self.std, "oof": self.oof,
            "per_class": None if self.per_class is None else self.per_class.to_dict(orient="records"),
            "pictures": self.pictures, "provenance": self.provenance,
        }


def load_report(run_dir: str | Path) -> RunReport:
    from pipelines.blend import BLEND_KIND, load_blend, manifest_kind
    from pipelines.train import load_run

    run_dir = Path(run_dir)
    is_blend = manifest_kind(run_dir) == BLEND_KIND
    manifest = load_blend(run_dir) if is_blend else load_run(run_dir)
    scores_path = run_dir / "scores.json"
    if not scores_path.is_file():
        raise InputError(f"{run_dir} has no scores.json; re-run olymp train-head to rebuild the run")
    scores = json.loads(scores_path.read_text())
    per_class = None
    if (run_dir / PER_CLASS).is_file():
        per_class = pd.read_csv(run_dir / PER_CLASS, dtype={"class": str}, keep_default_na=False)
    pictures = {
        kind: str(run_dir / name) for kind, name in manifest.get("reports", {}).items()
        if name.endswith(".png") and (run_dir / name).is_file()
    }
    return RunReport(
        run_dir=run_dir, head=f"blend ({manifest.get('method')})" if is_blend else manifest["head"]["name"],
        task=manifest["task"], classes=manifest.get("classes"),
        metric=scores["metric"], metrics=scores["metrics"], fold_scores=scores["folds"], mean=scores["mean"],
        std=scores["std"], oof=scores["oof"], n_rows=int(manifest["n_rows"]), per_class=per_class, pictures=pictures,
        provenance=scores.get("provenance") or {},
    )
