"""Reports of a train-head run, drawn from its out-of-fold predictions (written by `train`,
re-read by `olymp report`):

    RUN_DIR/
      per_class.csv       class, precision, recall, f1, support (classification; argmax of the OOF probabilities;
                          multilabel: one row per label at each fold's cross-fitted threshold or --threshold, + AP)
      confusion.png       row-normalised confusion matrix (classification)
      fold_scores.png     per fold on an axis from 0, values on the bars, the all-OOF score as a line:
                          the task's readable metric first (accuracy for multiclass), then the run's
                          own metric when that is another (logloss)
      pred_vs_true.png    out-of-fold prediction against the truth on the truth's range (regression)
      label_ap.png        each label's out-of-fold average precision (multilabel)
    BLEND_DIR/blend.png   each member's OOF score and weight next to the blend's (draw_blend)

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

from pipelines.core.errors import InputError
from pipelines.train.blenddir import BLEND_KIND, load_blend, manifest_kind
from pipelines.train.rundir import CONFUSION, FOLD_SCORES, LABEL_AP, PER_CLASS, PRED_VS_TRUE, REPORT_FILES, load_run

BLEND_PICTURE = "blend.png"
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
    _save(fig, path)


# The metric a picture shows first: the one a contestant reads (accuracy, not logloss, for multiclass).
PICTURE_FIRST = {"binary": "auc", "multiclass": "accuracy", "regression": "rmse", "multilabel": "lwlrap"}
MAIN_COLOUR, OOF_COLOUR, BLEND_COLOUR = "#4c72b0", "#dd8452", "#55a868"


def picture_metrics(task: str, metric: str) -> list[str]:
    """The metrics a fold-score or blend picture shows, in order: the task's readable main metric,
    then the run's own (the one early stopping watched) when that is another."""
    first = PICTURE_FIRST.get(task, metric)
    return [first] if first == metric else [first, metric]


def _save(fig, path: Path) -> None:
    from pipelines.core.io import write_atomic

    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    pyplot().close(fig)


def _bounded(metric: str) -> bool:
    return metric in ("accuracy", "f1_macro", "f1_micro", "auc", "lwlrap", "map")


def _value_label(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.4g}"


def _bars(ax, names: list[str], values: list[float], colours, metric: str, horizontal: bool = False) -> None:
    """Bars from 0 with each value written on its bar; the value axis starts at 0 (a metric that
    can go negative, such as R², gets its negative range too)."""
    values = np.asarray(values, dtype=np.float64)
    shown = np.nan_to_num(values, nan=0.0)
    draw = ax.barh if horizontal else ax.bar
    bars = draw(names, shown, color=colours)
    finite = values[np.isfinite(values)]
    span = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-12)
    for bar, value in zip(bars, values):
        size = bar.get_width() if horizontal else bar.get_height()
        inside = np.isfinite(value) and abs(size) > 0.25 * span  # inside the bar's end: clear of the OOF line
        end = (bar.get_width(), bar.get_y() + bar.get_height() / 2) if horizontal \
            else (bar.get_x() + bar.get_width() / 2, bar.get_height())
        step = (-4 if inside else 3) * (1 if size >= 0 else -1)
        ax.annotate(
            _value_label(value), xy=end, xytext=(step, 0) if horizontal else (0, step), textcoords="offset points",
            ha=("right" if inside else "left") if horizontal else "center",
            va="center" if horizontal else ("top" if inside else "bottom"),
            fontsize=8, color="white" if inside else "black", fontweight="bold" if inside else "normal",
        )
    high = max(float(finite.max()) if finite.size else 0.0, 0.0)
    low = min(float(finite.min()) if finite.size else 0.0, 0.0)
    top = 1.0 if _bounded(metric) and high <= 1.0 else (high * 1.12 or 1.0)
    limits = (low * 1.12 if low < 0 else 0.0, top * 1.08 if top == 1.0 else top)
    (ax.set_xlim if horizontal else ax.set_ylim)(*limits)
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    ax.set_axisbelow(True)


@_quiet_drawing
def draw_fold_scores(path: Path, task: str, metric: str, folds: list[dict], oof: dict) -> None:
    _save(fold_scores_figure(task, metric, folds, oof), path)


def fold_scores_figure(task: str, metric: str, folds: list[dict], oof: dict):
    """One panel per shown metric (picture_metrics): a bar per fold on an axis from 0, its value on
    it, and the all-OOF score as a dashed line named in a legend below the panel."""
    plt = pyplot()
    shown = [name for name in picture_metrics(task, metric) if any(name in fold for fold in folds)] or [metric]
    width = max(4.0, 0.7 * len(folds) + 2.5)
    fig, axes = plt.subplots(1, len(shown), figsize=(width * len(shown), 4.0), squeeze=False)
    for ax, name in zip(axes[0], shown):
        values = [np.nan if fold.get(name) is None else float(fold[name]) for fold in folds]
        _bars(ax, [str(fold["fold"]) for fold in folds], values, MAIN_COLOUR, name)
        score = oof.get(name)
        if score is not None and np.isfinite(score):
            ax.axhline(score, color=OOF_COLOUR, linestyle="--", label=f"all out-of-fold: {score:.4f}")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        ax.set_xlabel("fold")
        ax.set_ylabel(name)
        better = "higher" if metrics_greater(name) else "lower"
        ax.set_title(f"{name} per fold ({better} is better)")
    fig.tight_layout()
    return fig


def metrics_greater(name: str) -> bool:
    from pipelines.train.metrics import GREATER_IS_BETTER

    return GREATER_IS_BETTER.get(name, True)


@_quiet_drawing
def draw_pred_vs_true(path: Path, y_true: np.ndarray, pred: np.ndarray) -> None:
    _save(pred_vs_true_figure(y_true, pred), path)


def pred_vs_true_figure(y_true: np.ndarray, pred: np.ndarray):
    """Axes on the truth's range (5 % margin) with the identity line; predictions beyond it are
    drawn on the edge as triangles and counted in the legend, so one wild value cannot squash the
    picture."""
    plt = pyplot()
    y_true, pred = np.asarray(y_true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    low, high = float(np.nanmin(y_true)), float(np.nanmax(y_true))
    margin = (high - low) * 0.05 or abs(high) * 0.05 or 0.5
    low, high = low - margin, high + margin
    outside = (pred < low) | (pred > high)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(y_true[~outside], pred[~outside], s=8, alpha=0.5, color=MAIN_COLOUR)
    if outside.any():
        ax.scatter(y_true[outside], np.clip(pred[outside], low, high), s=24, marker="^", color="#c44e52",
                   label=f"{int(outside.sum())} beyond the truth's range, drawn at its edge")
    ax.plot([low, high], [low, high], color="grey", linewidth=1, label="prediction = truth")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("true")
    ax.set_ylabel("out-of-fold prediction")
    ax.set_title(f"predicted vs true ({len(y_true)} rows)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.tight_layout()
    return fig


@_quiet_drawing
def draw_label_ap(path: Path, table: pd.DataFrame) -> None:
    _save(label_ap_figure(table), path)


def label_ap_figure(table: pd.DataFrame):
    """Multilabel: each label's out-of-fold average precision as a horizontal bar (0 to 1), weakest
    at the top; the label's positive count next to its name. A label with no positive row is n/a."""
    plt = pyplot()
    rows = table.sort_values("average_precision", na_position="first", kind="stable")
    names = [f"{name} ({support})" for name, support in zip(rows["class"], rows["support"])]
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.32 * len(rows) + 1.4)))
    _bars(ax, names, rows["average_precision"].tolist(), MAIN_COLOUR, "map", horizontal=True)
    ax.invert_yaxis()
    mean = float(np.nanmean(table["average_precision"])) if table["average_precision"].notna().any() else np.nan
    if np.isfinite(mean):
        ax.axvline(mean, color=OOF_COLOUR, linestyle="--", label=f"mean (map): {mean:.4f}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlabel("average precision")
    ax.set_title("out-of-fold average precision per label (positive rows)")
    fig.tight_layout()
    return fig


@_quiet_drawing
def draw_blend(path: Path, task: str, metric: str, members: list[str], weights, member_scores: list[dict],
               blend_scores: dict) -> None:
    _save(blend_figure(task, metric, members, weights, member_scores, blend_scores), path)


def blend_figure(task: str, metric: str, members: list[str], weights, member_scores: list[dict], blend_scores: dict):
    """A blend: each member's OOF score (its weight in the label) next to the blend's, one panel per
    shown metric (picture_metrics), on an axis from 0."""
    plt = pyplot()
    shown = [name for name in picture_metrics(task, metric) if name in blend_scores] or [metric]
    names = [f"{member}\nweight {float(weight):.2f}" for member, weight in zip(members, weights)] + ["blend"]
    colours = [MAIN_COLOUR if float(weight) > 0 else "#b0b0b0" for weight in weights] + [BLEND_COLOUR]
    fig, axes = plt.subplots(1, len(shown), figsize=(6.0 * len(shown), max(2.5, 0.55 * len(names) + 1.5)),
                             squeeze=False)
    for ax, name in zip(axes[0], shown):
        values = [np.nan if s.get(name) is None else float(s[name]) for s in member_scores]
        values.append(np.nan if blend_scores.get(name) is None else float(blend_scores[name]))
        _bars(ax, names, values, colours, name, horizontal=True)
        ax.invert_yaxis()
        better = "higher" if metrics_greater(name) else "lower"
        ax.set_xlabel(f"out-of-fold {name} ({better} is better)")
        chosen = " (weights chosen on it)" if name == metric else ""
        ax.set_title(f"blend vs members: {name}{chosen}")
    fig.tight_layout()
    return fig


def write_reports(run_dir: Path, task: str, classes: list[str] | None, y: np.ndarray, oof: np.ndarray,
                  scores: dict, threshold: float | None = None) -> dict[str, str]:
    """Draw the run's report files; returns {kind: file name} as recorded in the manifest."""
    from pipelines.core.io import write_text_atomic

    run_dir = Path(run_dir)
    written = {}
    metric = scores["metric"]
    if task == "multilabel":  # no single confusion matrix: one row of scores per label
        table = per_label_table(classes, y, oof, 0.5 if threshold is None else threshold)
        write_text_atomic(run_dir / PER_CLASS, table.to_csv(index=False))
        written["per_class"] = PER_CLASS
        draw_label_ap(run_dir / LABEL_AP, table)
        written["label_ap"] = LABEL_AP
    elif classes:
        write_text_atomic(run_dir / PER_CLASS, per_class_table(classes, y, oof).to_csv(index=False))
        written["per_class"] = PER_CLASS
        draw_confusion(run_dir / CONFUSION, classes, y, oof)
        written["confusion"] = CONFUSION
    else:
        draw_pred_vs_true(run_dir / PRED_VS_TRUE, y, oof)
        written["pred_vs_true"] = PRED_VS_TRUE
    draw_fold_scores(run_dir / FOLD_SCORES, task, metric, scores["folds"], scores["oof"])
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
    if is_blend and (run_dir / BLEND_PICTURE).is_file():
        pictures["blend"] = str(run_dir / BLEND_PICTURE)
    return RunReport(
        run_dir=run_dir, head=f"blend ({manifest.get('method')})" if is_blend else manifest["head"]["name"],
        task=manifest["task"], classes=manifest.get("classes"),
        metric=scores["metric"], metrics=scores["metrics"], fold_scores=scores["folds"], mean=scores["mean"],
        std=scores["std"], oof=scores["oof"], n_rows=int(manifest["n_rows"]), per_class=per_class, pictures=pictures,
        provenance=scores.get("provenance") or {},
    )
