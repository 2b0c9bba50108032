"""Cached mode: the frozen lower part of the network computed once per input and view, on disk.

With `--train-layers N` the stages below the top N never change, so their output for a given
input view never changes either. Each labelled file gets one safetensors file holding the frozen
part's output for its evaluation view ("eval": one row per window) and for `views` seeded
augmented views ("views"), float16. Files are keyed like extract's resume: the settings that
shape the features (backbone, weights SHA-256, frozen stages, data config, augmentation, seed,
views) name the folder, and each input's file name is a digest of its id and content
fingerprint (pipelines.core.hashing.file_fingerprint), so a changed file is recomputed and an
unchanged one never is, across folds, resumed runs and re-runs with --overwrite.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from pipelines.core.io import write_atomic, write_text_atomic
from pipelines.core.hashing import file_fingerprint, json_digest

SETTINGS_FILE = "settings.json"


class FeatureCache:
    def __init__(self, root: str | Path, settings: dict):
        self.settings = settings
        self.folder = Path(root) / json_digest(settings)[:20]
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / SETTINGS_FILE).is_file():
            write_text_atomic(self.folder / SETTINGS_FILE, json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n")

    def _file(self, item) -> Path:
        key = hashlib.blake2b(f"{item.id}\0{file_fingerprint(item.path)}".encode(), digest_size=16).hexdigest()
        return self.folder / f"{key}.safetensors"

    def load(self, item) -> tuple[torch.Tensor, torch.Tensor] | None:
        from safetensors.torch import load_file

        path = self._file(item)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            return tensors["eval"], tensors["views"]
        except Exception:  # damaged: computed again
            return None

    def save(self, item, eval_features: torch.Tensor, views: torch.Tensor) -> None:
        from safetensors.torch import save_file

        tensors = {"eval": eval_features.to(torch.float16).contiguous(), "views": views.to(torch.float16).contiguous()}
        write_atomic(self._file(item), lambda tmp: save_file(tensors, str(tmp)))


def cached_features(inputs, lower, cache: FeatureCache, views: int, seed: int, device: torch.device,
                    batch_size: int, notify=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(eval, views) frozen-part outputs of every input (float16, CPU), computed where missing."""
    from pipelines.finetune.augment import view_seed

    out: list = [None] * len(inputs)
    todo = []
    for row, item in enumerate(inputs.items):
        found = cache.load(item)
        if found is None:
            todo.append(row)
        else:
            out[row] = found
    if notify and todo:
        notify("cache", f"computing the frozen part once for {len(todo)} inputs x (1 + {views} views) into {cache.folder}", {})
    per_batch = max(1, batch_size // (views + 1))
    for start in range(0, len(todo), per_batch):
        rows = todo[start: start + per_batch]
        parts, sizes = [], []
        for row in rows:
            evals = inputs.eval_inputs(row)
            augmented = torch.stack([inputs.train_input(row, view_seed(seed, row, v + 1)) for v in range(views)])
            parts += [evals, augmented]
            sizes += [len(evals), views]
        with torch.inference_mode():
            features = lower(torch.cat(parts).to(device)).float().cpu()
        chunks = torch.split(features, sizes)
        for i, row in enumerate(rows):
            eval_features, view_features = chunks[2 * i], chunks[2 * i + 1]
            cache.save(inputs.items[row], eval_features, view_features)
            out[row] = (eval_features.to(torch.float16), view_features.to(torch.float16))
        done = min(start + per_batch, len(todo))
        if notify and (done == len(todo) or done // max(1, len(todo) // 10) != (done - len(rows)) // max(1, len(todo) // 10)):
            notify("cache", f"frozen part: {done}/{len(todo)} inputs", {})
    return out
