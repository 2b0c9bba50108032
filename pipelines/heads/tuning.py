"""Tuning inside a fold: each head's small search space, scored on an inner split of the fold's
training part only.

`tune` is called once per outer fold with that fold's training part (the rows it is scored on
are not passed at all). It draws one inner split the way the head's own early stopping does
(`inner_split`: stratified, iterative stratification, whole groups), scores the head's
candidates (`Head.candidates`, `Head.search`) on the inner-validation part with the run's main
metric, and returns the winner (ties: the earlier, i.e. the defaults first). The winner replaces
the defaults only when it beats them on most bootstrap resamples of the inner-validation rows
(`SWITCH_CONFIDENCE`) and again on a second inner split with another seed (`confirm`), so that
noise (a small inner part, one lucky initialisation) does not move a fold off defaults that are
as good. The caller then fits the saved model on the whole training part with those
parameters, as without tuning.

    --tune auto   the head's own budget (`Head.auto_candidates`: logreg every scaling x its C path,
                  cut once the inner score only falls; mlp 4, lgbm 3 candidates)
    --tune off    the defaults, no search
    --tune N      the first N candidates of the head's list
    --time-budget T   (train-head) each fold's search gets its share of T and tries candidates
                  while the next is expected to fit in it; with --tune auto the head's whole list
                  is open to it. How many it reached is recorded ("tried" of "of").
A parameter the user fixed with --param leaves the search: it is never varied.
Deterministic for a given seed without --time-budget (how far a budget reaches depends on the
machine's speed: the run records how many candidates were tried; --tune N repeats that).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from pipelines.core.errors import ConfigError
from pipelines.heads.base import FitProgress, InnerData, inner_split

TUNE_MODES = ("auto", "off")
# A candidate replaces the defaults only when it beats them on at least this share of bootstrap
# resamples of the inner-validation rows (about one standard error, one-sided).
SWITCH_CONFIDENCE = 0.84
BOOTSTRAP_ROUNDS = 200


@dataclass(frozen=True)
class TuneSpec:
    mode: str = "auto"  # auto | off | count
    count: int | None = None  # with mode "count": how many candidates

    @classmethod
    def parse(cls, value) -> TuneSpec:
        """--tune auto | off | N."""
        text = str(value).strip().lower()
        if text in TUNE_MODES:
            return cls(text)
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            raise ConfigError(f"--tune {value!r} is not auto, off or a number of candidates; e.g. --tune auto, --tune off or --tune 8")
        return cls("count", count)

    def limit(self, head_cls) -> int:
        if self.mode == "off":
            return 0
        return head_cls.auto_candidates if self.mode == "auto" else int(self.count)

    def describe(self) -> str:
        return str(self.count) if self.mode == "count" else self.mode


@dataclass
class Tuned:
    params: dict  # the chosen overrides (the searched keys only); {} = the defaults
    record: dict | None  # what the run keeps for this fold (None: tuning off)


def scorer(task: str, metric: str):
    """(y, predictions) -> the metric, signed so that higher is better; NaN (undefined on this
    inner part, e.g. AUC with one class) counts as the worst."""
    from pipelines.data.metrics import score

    sign = metric_sign(metric)

    def signed(y_true, pred) -> float:
        value = score(task, y_true, pred, [metric])[metric]
        return -math.inf if value != value else sign * float(value)

    return signed


def tune(
    head_cls, task: str, n_classes: int, fixed: dict, metric: str, seed: int, X: np.ndarray, y: np.ndarray,
    groups: np.ndarray | None, spec: TuneSpec, progress: FitProgress | None = None, budget_s: float | None = None,
) -> Tuned:
    """The best of `head_cls`'s candidates on an inner split of this training part (X, y).
    `budget_s` (this fold's share of --time-budget): candidates are tried in order while the next
    is expected to end within it; with --tune auto the whole list is open to it."""
    limit = spec.limit(head_cls)
    if limit == 0:
        return Tuned({}, None)
    started = time.perf_counter()
    every = head_cls.candidates(task, n_classes, dict(fixed), X)
    candidates = every if budget_s is not None and spec.mode == "auto" else every[:limit]
    record = {"metric": metric, "spec": spec.describe(), "fixed": sorted(fixed)}
    if budget_s is not None:
        record["budget_s"] = round(float(budget_s), 3)
    if len(candidates) < 2:
        return Tuned({}, {**record, "params": {}, "skipped": "nothing left to tune (every searched parameter is fixed by --param)",
                          "tried": len(candidates), "seconds": round(time.perf_counter() - started, 3)})
    split = inner_split(task, np.asarray(y), n_classes, seed, groups)
    if split is None:
        return Tuned({}, {**record, "params": {}, "skipped": "too few rows for an inner split: defaults kept",
                          "tried": 0, "seconds": round(time.perf_counter() - started, 3)})
    deadline = None if budget_s is None else started + float(budget_s)
    inner = InnerData(np.asarray(X), np.asarray(y), groups, split[0], split[1], scorer(task, metric), deadline)
    scored = run_search(head_cls, inner, candidates, task, n_classes, dict(fixed), metric, seed)
    best = max(range(len(scored)), key=lambda i: (scored[i][1], -i))  # ties: the earlier candidate
    chosen, best_score, best_pred = scored[best]
    proposed = dict(chosen)
    default = next((entry for entry in scored if entry[0] == {}), None)
    confidence, confirmation = None, None
    if default is not None and chosen != {}:
        y_held = inner.y[inner.held_rows]
        confidence = beats_share(inner.score, y_held, best_pred, default[2], seed)
        if confidence < SWITCH_CONFIDENCE:  # not clearly better than the defaults on these rows: keep them
            chosen, best_score = {}, default[1]
        else:
            confirmation = confirm(head_cls, task, n_classes, fixed, metric, seed, X, y, groups, chosen)
            if confirmation is not None and not confirmation["confirmed"]:
                chosen, best_score = {}, default[1]
    sign = metric_sign(metric)
    if progress is not None:
        progress(f"tuned: {describe_params(chosen)} (inner {metric} {sign * best_score:.4f}, {len(scored)} tried)")
    return Tuned(dict(chosen), {
        **record, "params": dict(chosen), "proposed": proposed,  # the search's best before the two checks
        "inner_score": sign * best_score,
        "default_inner_score": None if default is None else sign * default[1],
        "best_beats_defaults": confidence,  # share of bootstrap resamples of the held rows where the best beat the defaults
        "confirmation": confirmation,  # the best and the defaults again on a second inner split (None: not needed)
        "tried": len(scored), "of": len(candidates), "inner_rows": [int(len(split[0])), int(len(split[1]))],
        "seconds": round(time.perf_counter() - started, 3),
        "candidates": [{"params": dict(candidate), "score": sign * value} for candidate, value, _ in scored],
    })


def confirm(head_cls, task, n_classes, fixed, metric, seed, X, y, groups, chosen: dict) -> dict | None:
    """The search's winner against the defaults once more, on a second inner split drawn with
    another seed (other rows held out, other initial weights): it replaces the defaults only when
    it is clearly better there too (the same bootstrap rule). The search's margin is biased up
    (the best of several noisy scores) and one split's bootstrap sees row noise but not the
    seed's: measured on the CIFAR-10 subset, an mlp candidate 0.036 ahead in inner log loss on
    the search's split was 0.002 ahead on a second one and 2 points behind on the outer fold
    (README, train-head's Tuning). None when no second split can be drawn."""
    split = inner_split(task, np.asarray(y), n_classes, seed + 1, groups)
    if split is None:
        return None
    inner = InnerData(np.asarray(X), np.asarray(y), groups, split[0], split[1], scorer(task, metric))
    again = run_search(head_cls, inner, [{}, dict(chosen)], task, n_classes, dict(fixed), metric, seed + 1)
    scored = {describe_params(c): (value, pred) for c, value, pred in again}
    if len(scored) < 2:  # a head's search may score fewer than it is given
        return None
    (best, best_pred), (default, default_pred) = scored[describe_params(chosen)], scored["defaults"]
    share = beats_share(inner.score, inner.y[inner.held_rows], best_pred, default_pred, seed + 1)
    sign = metric_sign(metric)
    return {"score": sign * best, "default_score": sign * default, "beats_defaults": share,
            "confirmed": bool(best > default and share >= SWITCH_CONFIDENCE)}


def beats_share(score, y: np.ndarray, pred: np.ndarray, default_pred: np.ndarray, seed: int) -> float:
    """Share of bootstrap resamples of the held rows (seeded) on which `pred` scores better than
    `default_pred`: the inner part is small, and a candidate that wins on it by chance would
    replace defaults that are as good (measured: mlp on the CIFAR-10 subset, README)."""
    rng = np.random.default_rng(seed)
    wins = 0
    for _ in range(BOOTSTRAP_ROUNDS):
        rows = rng.integers(0, len(y), len(y))
        wins += score(y[rows], pred[rows]) > score(y[rows], default_pred[rows])
    return round(wins / BOOTSTRAP_ROUNDS, 3)


def run_search(head_cls, inner: InnerData, candidates, task, n_classes, fixed, metric, seed):
    """The head's search over `candidates` (a seam tests record: everything it sees is the fold's training part)."""
    return head_cls.search(inner, candidates, task, n_classes, fixed, metric, seed)


def metric_sign(metric: str) -> float:
    """+1 where higher is better, -1 where lower is (scores are compared signed, shown unsigned)."""
    from pipelines.data.metrics import GREATER_IS_BETTER

    return 1.0 if GREATER_IS_BETTER[metric] else -1.0


def describe_params(params: dict) -> str:
    """{"scaling": "standard", "C": 0.003} -> "scaling=standard C=0.003"; {} -> "defaults"."""
    if not params:
        return "defaults"
    return " ".join(f"{key}={_short(value)}" for key, value in params.items())


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "0"
    return str(value)


def without_fixed(candidates: list[dict], fixed_names) -> list[dict]:
    """Candidates with every fixed key dropped, duplicates removed (order kept); {} first."""
    out: list[dict] = [{}]
    for candidate in candidates:
        kept = {key: value for key, value in candidate.items() if key not in fixed_names}
        if kept not in out:
            out.append(kept)
    return out
