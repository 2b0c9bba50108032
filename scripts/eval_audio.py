"""`make eval` section: which logmel-stats features pay, and the default audio route, on ESC-10.

ESC-10 (400 clips, 44.1 kHz, the official folds as groups): every feature set of the weight-free
`logmel-stats` backbone x head (logreg, mlp), the log-mel -> efficientnet_lite0 route (the other
route that runs with no audio CNN weights), and the 10-line hand probe of scripts/eval.py.

    - logmel-stats' default set is extracted by olymp's own `run_extraction` (resumed from the
      cache): the "(default)" row is what a user gets. The other sets are slices of one
      `load_logmel_stats(features=STATS_FEATURE_NAMES)` embedding of each clip decoded and
      resampled here (soundfile + soxr, one window per clip: ESC-10 clips are under 10 s); each
      block is computed on its own, so a slice is what `features=...` gives (tests check it);
    - the heads are olymp's own (pipelines.heads), fitted per official fold, scored out of fold;
    - "ms/clip": the backbone's forward alone on CPU, 16 ESC-10 clips padded to the backbone's
      window as the reader does (decode and resampling excluded), after one warm-up batch, the
      median of three; a shared CPU makes it noisy: read it as an order of magnitude.

Prints one plain-text table and appends its rows to <cache>/eval_audio.csv.

    python scripts/eval.py --only esc10          # this section runs inside make eval
    python scripts/eval_audio.py [--devdata ../shared/devdata] [--heads logreg,mlp]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = 42
FEATURE_SETS = (  # the ablation, smallest first; the last one is logmel-stats' default
    ("logmel",),
    ("logmel", "delta"),
    ("logmel", "delta", "delta2"),
    ("logmel", "mfcc"),
    ("logmel", "contrast"),
    ("logmel", "delta", "delta2", "mfcc"),
    ("logmel", "delta", "delta2", "contrast"),
    ("logmel", "delta", "delta2", "mfcc", "contrast"),
    ("logmel", "delta", "mfcc", "contrast"),
)
LITE0_ROUTE = "log-mel----efficientnet_lite0"  # scripts/eval.py's folder for that route: shared
TIMING_CLIPS = 16


def run(devdata: Path, cache: Path, args) -> None:
    esc = devdata / "esc10"
    if getattr(args, "only", None) not in (None, "esc10"):
        return
    if not (esc / "labels.csv").is_file():
        print(f"\neval_audio: no esc10/labels.csv in {devdata}; skipped")
        return
    if REPO.as_posix() not in sys.path:
        sys.path.insert(0, REPO.as_posix())
    import numpy as np
    import pandas as pd

    from pipelines.backbones.audio.logmel import STATS_FEATURE_NAMES, STATS_FEATURES, load_logmel_stats, stats_layout

    heads = [h.strip() for h in getattr(args, "heads", "logreg,mlp").split(",") if h.strip()]
    labels = pd.read_csv(esc / "labels.csv")
    labels["id"] = labels["id"].astype(str)
    files = {path.stem: path for path in esc.rglob("*.ogg")}
    listing = cache / "esc10-listing.csv"
    _write_listing(listing, labels["id"], files)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731

    full = load_logmel_stats()
    from pipelines.core.hashing import json_digest

    stats_dir = cache / "esc10" / f"logmel-stats-{json_digest(full.frontend)[:8]}"
    stats_X, stats_extract = _extract(listing, stats_dir, {"backbone": "logmel-stats"}, labels["id"], log)
    lite_dir = cache / "esc10" / LITE0_ROUTE
    lite_X, lite_extract = _extract(listing, lite_dir, {"backbone": "efficientnet_lite0", "modality": "audio"},
                                    labels["id"], log)
    classes = sorted(labels["label"].unique())
    y = labels["label"].map({c: k for k, c in enumerate(classes)}).to_numpy()
    groups = labels["fold"].to_numpy()
    clips = _timing_clips(labels["id"], files)
    every_X = _embed_clips(load_logmel_stats(features=STATS_FEATURE_NAMES), clips)

    layout = stats_layout(STATS_FEATURE_NAMES)
    rows = []
    for features in FEATURE_SETS:
        columns = np.concatenate([np.arange(layout[f"{name} {stat}"].start, layout[f"{name} {stat}"].stop)
                                  for name in features for stat in ("mean", "std")])
        ms = _ms_per_clip(load_logmel_stats(features=features), clips[:TIMING_CLIPS])
        default = features == STATS_FEATURES
        name = "logmel-stats " + "+".join(features) + (" (default)" if default else "")
        for head in heads:
            rows.append(_row(name, head, stats_X if default else every_X[:, columns], y, groups, len(classes), ms,
                             stats_extract if default else ""))
            log(f"  {name} {head}: {100 * rows[-1]['accuracy']:.1f}%")
    from pipelines.backbones.audio import load_audio_backbone

    ms = _ms_per_clip(load_audio_backbone("efficientnet_lite0")[0], clips[:TIMING_CLIPS])
    for head in heads:
        rows.append(_row("log-mel -> efficientnet_lite0", head, lite_X, y, groups, len(classes), ms, lite_extract))
        log(f"  lite0 {head}: {100 * rows[-1]['accuracy']:.1f}%")
    from eval import audio_probe  # scripts/ is on sys.path when run as a script or from eval.py

    started = time.perf_counter()
    probe = audio_probe(esc, esc / "labels.csv")
    rows.append({"route": "hand probe (scripts/eval.py)", "head": "logreg", "dim": 128, "accuracy": round(probe, 4),
                 "ms_per_clip": "", "extract_s_per_clip": round((time.perf_counter() - started) / len(labels), 3)})
    print("\nesc10 audio features (official folds as groups), OOF accuracy")
    print(_table(rows), flush=True)
    _append_csv(cache / "eval_audio.csv", rows)
    print(f"results: {cache / 'eval_audio.csv'}")


def _write_listing(path: Path, ids, files: dict) -> None:
    import pandas as pd

    from pipelines.core.io import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, pd.DataFrame({"id": ids, "path": [str(files[i]) for i in ids]}).to_csv(index=False))


def _extract(listing: Path, output: Path, settings: dict, ids, log):
    """(vectors in the labels' order, extraction seconds per clip or "cached")."""
    import numpy as np

    from pipelines.data.embeddings import read_embeddings
    from pipelines.extract.config import ExtractConfig
    from pipelines.extract.runner import run_extraction

    started = time.perf_counter()
    summary = run_extraction(ExtractConfig(inputs=str(listing), output=str(output), device="cpu", **settings))
    seconds = time.perf_counter() - started
    log(f"esc10: {output.name}: {summary.embedded} embedded ({summary.processed} this run) in {seconds:.0f} s")
    embeddings = read_embeddings(output)
    where = {str(i): k for k, i in enumerate(embeddings.ids)}
    vectors = embeddings.vectors[[where[i] for i in ids]].astype(np.float32)
    return vectors, round(seconds / summary.processed, 3) if summary.processed else "cached"


def _timing_clips(ids, files: dict):
    import soundfile

    clips = []
    for clip in ids:
        audio, rate = soundfile.read(files[clip], dtype="float32", always_2d=True)
        clips.append((audio.mean(axis=1), rate))
    return clips


def _embed_clips(backbone, clips, batch: int = 16):
    """(N, D) embeddings of whole clips (one window each, zero-padded within a batch: padding is
    left out of logmel-stats' statistics), for the feature-set ablation."""
    import numpy as np
    import soxr
    import torch

    rows = []
    for start in range(0, len(clips), batch):
        part = clips[start : start + batch]
        waves = [soxr.resample(audio, rate, backbone.sample_rate).astype(np.float32) for audio, rate in part]
        padded = np.zeros((len(waves), max(len(w) for w in waves)), np.float32)
        for k, wave in enumerate(waves):
            padded[k, : len(wave)] = wave
        rows.append(backbone.embed(torch.from_numpy(padded), [rate for _, rate in part]).numpy())
    return np.concatenate(rows)


def _ms_per_clip(backbone, clips) -> float:
    """The backbone's forward on CPU, clips resampled and padded to its window beforehand."""
    import numpy as np
    import soxr
    import torch

    samples = int(backbone.window_seconds * backbone.sample_rate)
    batch = np.zeros((len(clips), samples), np.float32)
    for k, (audio, rate) in enumerate(clips):
        wave = soxr.resample(audio, rate, backbone.sample_rate)[:samples]
        batch[k, : len(wave)] = wave
    waveforms, rates = torch.from_numpy(batch), [rate for _, rate in clips]
    backbone.model.to("cpu")
    backbone.embed(waveforms[:2], rates[:2])  # warm-up
    seconds = []
    for _ in range(3):  # the median of three: a shared CPU makes single timings jumpy
        started = time.perf_counter()
        backbone.embed(waveforms, rates)
        seconds.append(time.perf_counter() - started)
    return round(1000 * sorted(seconds)[1] / len(clips), 1)


def _row(route: str, head: str, X, y, groups, n_classes: int, ms: float, extract) -> dict:
    return {"route": route, "head": head, "dim": X.shape[1], "accuracy": round(_oof_accuracy(head, X, y, groups, n_classes), 4),
            "ms_per_clip": ms, "extract_s_per_clip": extract}


def _oof_accuracy(head: str, X, y, groups, n_classes: int) -> float:
    """olymp's head fitted on every other official fold, scored on its own fold."""
    import numpy as np

    from pipelines.heads import get_head

    head_cls = get_head(head)
    predicted = np.zeros(len(y), dtype=int)
    for fold in np.unique(groups):
        train, valid = groups != fold, groups == fold
        model = head_cls("multiclass", n_classes, seed=SEED)
        model.fit(X[train], y[train], groups=groups[train])
        predicted[valid] = model.predict(X[valid]).argmax(axis=1)
    return float((predicted == y).mean())


def _table(rows: list[dict]) -> str:
    header = f"{'route / feature set':<56} {'head':<7} {'accuracy':>8} {'dim':>5} {'ms/clip':>8} {'extract s/clip':>14}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['route']:<56} {row['head']:<7} {100 * row['accuracy']:>7.1f}% {row['dim']!s:>5} "
                     f"{row['ms_per_clip']!s:>8} {row['extract_s_per_clip']!s:>14}")
    return "\n".join(lines)


def _append_csv(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    from pipelines.core.io import write_text_atomic

    frame = pd.DataFrame(rows).assign(when=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if path.is_file():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    write_text_atomic(path, buffer.getvalue())


def main(argv=None) -> int:
    from eval import CACHE, DEFAULT_DEVDATA  # scripts/ is on sys.path when this runs as a script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devdata", type=Path, default=Path(os.environ.get("OLYMP_DEVDATA", DEFAULT_DEVDATA)))
    parser.add_argument("--heads", default="logreg,mlp")
    args = parser.parse_args(argv)
    if not args.devdata.is_dir():
        print(f"eval_audio: no devdata at {args.devdata}; nothing to do")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run(args.devdata, CACHE, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
