"""`make eval`: olymp's quality benchmark on real data (../shared/devdata), never a timed test.

Per dataset, every route (backbone setup) x head gets its out-of-fold score through olymp's own
library, as a user would get it: `run_extraction` into a cache folder (.bench/eval/, reused
between runs by extract's own resume) and `train` (a run folder per route x head). Beside them,
a hand-written probe computed here, the bar any route must clear:

    images (CIFAR-10 subset train, 2,000 photos, 5-fold stratified CV): raw 32x32 RGB pixels,
        StandardScaler + LogisticRegression;
    audio (ESC-10, 400 clips, the official folds as groups): 16 kHz, 64-mel power spectrogram,
        log(x + 1e-6), per-band mean and std over time, StandardScaler + LogisticRegression.

Prints one plain-text table per dataset (route, head, OOF accuracy, seconds: extraction once per
route, "cached" when resume found it all done, then each head's fit) and writes them all to .bench/eval/results.csv.

    python scripts/eval.py [--devdata ../shared/devdata] [--heads logreg,mlp] [--only cifar10|esc10]

Skips politely (exit 0) when the devdata folder is absent.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import eval_heads  # noqa: E402 (scripts/ is on sys.path when this runs as a script)
import eval_finetune  # scripts/eval_finetune.py (this folder is on sys.path when run as a script)
import eval_audio  # scripts/ is on sys.path: this file's folder
import eval_trial  # noqa: E402 — scripts/ is on sys.path when this file runs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEVDATA = REPO.parent / "shared" / "devdata"
CACHE = Path(os.environ.get("OLYMP_EVAL_CACHE", REPO / ".bench" / "eval"))
SEED = 42


@dataclass
class Route:
    name: str
    extract: dict  # ExtractConfig fields besides inputs/output


@dataclass
class Dataset:
    name: str
    inputs: Path  # a folder, or a listing (id,path) with the labels' ids
    labels: Path
    group_col: str | None
    routes: list[Route]
    probe: callable = field(repr=False)


def image_probe(inputs: Path, labels: Path) -> float:
    """Raw pixels + standardized logistic regression, 5-fold stratified (seeded)."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    table = pd.read_csv(labels)
    files = {path.stem: path for path in inputs.rglob("*") if path.is_file()}
    X = np.stack([np.asarray(Image.open(files[i]).convert("RGB").resize((32, 32)), np.float32).ravel()
                  for i in table["id"]])
    y = table["label"].to_numpy(dtype=str)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=SEED)
    return float((cross_val_predict(model, X, y, cv=folds) == y).mean())


def audio_probe(inputs: Path, labels: Path) -> float:
    """The 10-line log-mel probe: 16 kHz, 64 mels, log(power + 1e-6), mean+std, logreg; official folds."""
    import numpy as np
    import pandas as pd
    import soundfile
    import soxr
    import torch
    import torchaudio
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    table = pd.read_csv(labels)
    files = {path.stem: path for path in inputs.rglob("*.ogg")}
    mel = torchaudio.transforms.MelSpectrogram(16000, n_mels=64)
    rows = []
    for clip in table["id"]:
        audio, rate = soundfile.read(files[clip], dtype="float32", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), rate, 16000).astype(np.float32)
        logmel = torch.log(mel(torch.from_numpy(audio)) + 1e-6)
        rows.append(torch.cat([logmel.mean(1), logmel.std(1)]).numpy())
    y = table["label"].to_numpy(dtype=str)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    predicted = cross_val_predict(model, np.stack(rows), y, groups=table["fold"].to_numpy(), cv=LeaveOneGroupOut())
    return float((predicted == y).mean())


def datasets(devdata: Path) -> list[Dataset]:
    cifar, esc = devdata / "cifar10-subset", devdata / "esc10"
    found = []
    if (cifar / "train_labels.csv").is_file():
        found.append(Dataset("cifar10", cifar / "train", cifar / "train_labels.csv", None, [
            Route("efficientnet_lite0", {}),
            Route("efficientnet_lite0 --layers -2,-1", {"layers": "-2,-1"}),
        ], image_probe))
    if (esc / "labels.csv").is_file():
        found.append(Dataset("esc10", esc_listing(esc), esc / "labels.csv", "fold", [
            Route("logmel-stats", {"backbone": "logmel-stats"}),
            Route("log-mel -> efficientnet_lite0", {"backbone": "efficientnet_lite0", "modality": "audio"}),
        ], audio_probe))
    return found


def esc_listing(esc: Path) -> Path:
    """ESC-10's clips sit in class folders; its labels name them by file stem: an id,path listing."""
    import pandas as pd

    from pipelines.core.io import write_text_atomic

    files = {path.stem: path for path in esc.rglob("*.ogg")}
    ids = pd.read_csv(esc / "labels.csv")["id"].astype(str)
    listing = CACHE / "esc10-listing.csv"
    frame = pd.DataFrame({"id": ids, "path": [str(files[i]) for i in ids]})
    CACHE.mkdir(parents=True, exist_ok=True)
    write_text_atomic(listing, frame.to_csv(index=False))
    return listing


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def evaluate(dataset: Dataset, heads: list[str], log) -> list[dict]:
    from pipelines.extract.config import ExtractConfig
    from pipelines.extract.runner import run_extraction
    from pipelines.train.train import TrainConfig, train

    results = []
    probe_dir = dataset.inputs if dataset.inputs.is_dir() else dataset.labels.parent
    for route in dataset.routes:
        output = CACHE / dataset.name / slug(route.name)
        started = time.perf_counter()
        summary = run_extraction(ExtractConfig(inputs=str(dataset.inputs), output=str(output), device="cpu", **route.extract))
        extract_seconds = time.perf_counter() - started
        log(f"{dataset.name}: {route.name}: {summary.embedded} embedded ({summary.processed} this run) in {extract_seconds:.0f} s")
        for head in heads:
            started = time.perf_counter()
            result = train(TrainConfig(
                embeddings=[str(output)], labels=str(dataset.labels), output=str(CACHE / dataset.name / "runs" / f"{slug(route.name)}-{head}"),
                group_col=dataset.group_col, head=head, seed=SEED, overwrite=True,
            ))
            results.append({
                "dataset": dataset.name, "route": route.name, "head": head, "metric": "accuracy",
                "oof": round(float(result.oof["accuracy"]), 4), "logloss": round(float(result.oof["logloss"]), 4), "dim": result.n_features,
                "extract_s": round(extract_seconds, 1) if summary.processed else "cached", "fit_s": round(time.perf_counter() - started, 1),
            })
            log(f"  {head}: accuracy {result.oof['accuracy']:.4f}")
    started = time.perf_counter()
    score = dataset.probe(probe_dir, dataset.labels)
    results.append({"dataset": dataset.name, "route": "hand probe", "head": "logreg (inside the probe)",
                    "metric": "accuracy", "oof": round(score, 4), "logloss": "", "dim": "", "extract_s": "",
                    "fit_s": round(time.perf_counter() - started, 1)})
    return results


def table(rows: list[dict]) -> str:
    header = f"{'route':<36} {'head':<26} {'accuracy':>8} {'dim':>5} {'extract s':>9} {'fit s':>7}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['route']:<36} {row['head']:<26} {100 * row['oof']:>7.1f}% {row['dim']!s:>5} "
                     f"{row['extract_s']!s:>9} {row['fit_s']!s:>7}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devdata", type=Path, default=Path(os.environ.get("OLYMP_DEVDATA", DEFAULT_DEVDATA)))
    parser.add_argument("--heads", default="logreg,mlp", help="comma-separated heads (lgbm is slow on a shared CPU)")
    parser.add_argument("--tune-heads", dest="tune_heads", default="logreg,mlp,lgbm", help="heads of the tuned-vs-untuned section")
    parser.add_argument("--only", choices=("cifar10", "esc10"), default=None)
    args = parser.parse_args(argv)
    if not args.devdata.is_dir():
        print(f"make eval: no devdata at {args.devdata} (set OLYMP_DEVDATA or --devdata); nothing to do")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    heads = [head.strip() for head in args.heads.split(",") if head.strip()]
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    found = datasets(args.devdata)
    if not found:
        print(f"make eval: neither cifar10-subset/ nor esc10/ in {args.devdata}; nothing to do")
        return 0
    for dataset in found:
        if args.only and dataset.name != args.only:
            continue
        dataset_rows = evaluate(dataset, heads, lambda line: print(line, file=sys.stderr, flush=True))
        print(f"\n{dataset.name} ({'groups: ' + dataset.group_col if dataset.group_col else '5-fold stratified'}), OOF accuracy")
        print(table(dataset_rows), flush=True)
        rows += dataset_rows
    eval_audio.run(args.devdata, CACHE, args)
    from pipelines.core.io import write_text_atomic

    out = CACHE / ("results.csv" if not args.only else f"results-{args.only}.csv")
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out, buffer.getvalue())
    print(f"\nresults: {out}")
    eval_trial.run(args.devdata, CACHE, args)
    eval_heads.run(args.devdata, CACHE, args)  # tuned vs untuned heads + a hand-tuned logreg (scripts/eval_heads.py)
    eval_finetune.run(args.devdata, CACHE, args)  # frozen probe vs fine-tuning, side by side
    return 0


if __name__ == "__main__":
    sys.exit(main())
