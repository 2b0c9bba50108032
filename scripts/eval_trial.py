"""`make eval` section: does `recommend --trial` pick well? (issue 14)

Per dev dataset, the trial is run as a user would run `olymp recommend DATA --trial LABELS`
(the library function behind it, `pipelines.select.trial.recommend_and_trial`, default settings, CPU),
with the eval cache as its --trial-cache: a route whose full extraction `scripts/eval.py` already
made (same backbone and settings, every sampled id in it) is reused, the others are extracted
into the cache once and reused by later runs. Printed per dataset: the trial's table (route x
head, mean ± std over its folds), then the winner beside the best single route x head of
scripts/eval.py's table (OOF accuracy, read from its results CSV) and the hand probe, and whether
the goals hold: winner >= the best single route it tried (by construction: the trial keeps its
argmax) and >= the best of eval.py's table, and >= the hand probe + 3 points.

    python scripts/eval_trial.py [--devdata ../shared/devdata] [--only cifar10|esc10]

Rows are appended to <cache>/trial-results.csv.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path

GOAL_OVER_PROBE = 0.03  # the trial winner must beat the hand probe by 3 points


def _datasets(devdata: Path, cache: Path) -> list[tuple[str, Path, Path, str | None]]:
    """(name, inputs, labels, group column) for the dev datasets present."""
    cifar, esc = devdata / "cifar10-subset", devdata / "esc10"
    found = []
    if (cifar / "train_labels.csv").is_file():
        found.append(("cifar10", cifar / "train", cifar / "train_labels.csv", None))
    if (esc / "labels.csv").is_file():
        from eval import esc_listing  # scripts/ is on sys.path when eval.py (or this file) runs

        found.append(("esc10", esc_listing(esc), esc / "labels.csv", "fold"))
    return found


def _eval_rows(cache: Path, dataset: str) -> list[dict]:
    """scripts/eval.py's rows for the dataset (its results CSV), or [] when it has not run."""
    for name in ("results.csv", f"results-{dataset}.csv"):
        path = cache / name
        if path.is_file():
            with path.open() as f:
                rows = [row for row in csv.DictReader(f) if row["dataset"] == dataset]
            if rows:
                return rows
    return []


def trial_table(trial) -> str:
    header = f"{'route':<36} {'head':<7} {trial.metric + ' mean ± std':>22} {'extract/item':>12} {'fit s':>6}"
    lines = [header, "-" * len(header)]
    order = sorted(trial.rows, key=lambda r: (r.mean is None, -(r.mean or 0.0)))
    for row in order:
        if row.mean is None:
            lines.append(f"{row.route:<36} {row.head:<7} skipped: {row.skipped}")
            continue
        per_item = "cached" if row.extract_cached else f"{1000 * row.extract_seconds_per_item:.0f} ms"
        mark = "  <- winner" if row is trial.winner else ""
        lines.append(f"{row.route:<36} {row.head:<7} {100 * row.mean:>13.1f}% ± {100 * row.std:>4.1f} "
                     f"{per_item:>12} {row.fit_seconds:>6.1f}{mark}")
    return "\n".join(lines)


def run(devdata: Path, cache: Path, args) -> None:
    from pipelines.core.io import write_text_atomic
    from pipelines.select.recommend import RecommendConfig
    from pipelines.select.trial import recommend_and_trial

    only = getattr(args, "only", None)
    out_rows = []
    for name, inputs, labels, group_col in _datasets(devdata, cache):
        if only and name != only:
            continue
        started = time.perf_counter()
        result = recommend_and_trial(RecommendConfig(
            data_path=str(inputs), trial_labels=str(labels), group_col=group_col, device="cpu",
            trial_cache=str(cache / name),
        ), on_progress=lambda line: print(line, file=sys.stderr, flush=True))
        trial = result.trial
        seconds = time.perf_counter() - started
        grouped = f"folds grouped by {group_col}" if group_col else "stratified folds"
        print(f"\n{name}: recommend --trial ({trial.sample} of {trial.labelled} rows, {trial.folds} {grouped}; "
              f"{trial.size_reason}; {seconds:.0f} s)")
        print(trial_table(trial))
        for note in trial.notes:
            print(f"note: {note}")
        won = trial.winner
        evaluated = [r for r in _eval_rows(cache, name) if r["route"] != "hand probe"]
        probe = next((float(r["oof"]) for r in _eval_rows(cache, name) if r["route"] == "hand probe"), None)
        best = max(evaluated, key=lambda r: float(r["oof"])) if evaluated else None
        tried = max((r.mean for r in trial.rows if r.mean is not None), default=None)
        print(f"trial winner     {won.route} + {won.head}: {100 * won.mean:.1f}% (mean over folds)" if won else
              "trial winner     none (nothing scored)")
        if best is not None:
            print(f"eval.py best     {best['route']} + {best['head']}: {100 * float(best['oof']):.1f}% (OOF)")
        if probe is not None:
            print(f"hand probe       {100 * probe:.1f}%")
        if won is not None:
            checks = [("winner >= best route x head it tried", won.mean >= (tried or 0.0) - 1e-9)]
            if best is not None:
                checks.append(("winner >= eval.py's best (within 0.5 point: mean over folds vs OOF)",
                               won.mean >= float(best["oof"]) - 0.005))
            if probe is not None:
                checks.append(("winner >= hand probe + 3 points", won.mean >= probe + GOAL_OVER_PROBE))
            for text, ok in checks:
                print(f"  {'ok  ' if ok else 'MISS'} {text}")
            print(f"next: {trial.extract_command}\n      {trial.train_command}")
        out_rows.append({
            "dataset": name, "sample": trial.sample, "folds": trial.folds,
            "winner_route": won.route if won else "", "winner_head": won.head if won else "",
            "winner_mean": round(won.mean, 4) if won else "", "winner_std": round(won.std, 4) if won else "",
            "eval_best": best["oof"] if best else "", "eval_best_route": f"{best['route']} + {best['head']}" if best else "",
            "hand_probe": probe if probe is not None else "", "seconds": round(seconds, 1),
            "routes": "; ".join(trial.routes),
        })
    if not out_rows:
        return
    path = cache / "trial-results.csv"
    old = path.read_text() if path.is_file() else ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(out_rows[0]))
    if not old:
        writer.writeheader()
    writer.writerows(out_rows)
    write_text_atomic(path, old + buffer.getvalue())
    print(f"\ntrial results: {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--devdata", type=Path, default=Path(os.environ.get("OLYMP_DEVDATA", repo.parent / "shared" / "devdata")))
    parser.add_argument("--only", choices=("cifar10", "esc10"), default=None)
    args = parser.parse_args(argv)
    if not args.devdata.is_dir():
        print(f"eval_trial: no devdata at {args.devdata}; nothing to do")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = Path(os.environ.get("OLYMP_EVAL_CACHE", repo / ".bench" / "eval"))
    cache.mkdir(parents=True, exist_ok=True)
    run(args.devdata, cache, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
