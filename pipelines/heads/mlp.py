"""MLP head: a small PyTorch network on standardized embeddings, early-stopped per fold.

Inside `fit` (which sees a fold's training part only): split it into inner-train /
inner-validation (`inner_split`), standardize with the inner-train mean/std (regression targets
too), train with AdamW under a one-cycle (or cosine / constant) learning-rate schedule, evaluate
the loss on the inner-validation part after every epoch, stop after `patience` epochs without a
better one; then refit from scratch on the whole training part for the best epoch count, with
the same learning-rate schedule (`REFIT`; otherwise the best epoch's weights are kept). Losses: cross-entropy (binary, multiclass), BCE per label
(multilabel), MSE (regression). Runs on the GPU when there is one (`device`), seeded so that a
run on one device repeats exactly.

Saved as `fold-K.safetensors` (weights + scaler tensors) next to `fold-K.json` (architecture and
params); `load` rebuilds the network from the JSON. No pickle.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np

from pipelines.core.device import resolve_device
from pipelines.core.errors import ConfigError
from pipelines.core.io import write_atomic, write_text_atomic
from pipelines.heads.base import REFIT, Head, inner_split

MLP_DEFAULTS = {
    "hidden": [512],  # hidden layer widths, e.g. [1024, 256]; [] is a linear model
    "dropout": 0.3,  # after every hidden layer
    "input_dropout": 0.2,  # on the standardized embedding itself (a cheap augmentation)
    "weight_decay": 1e-2,  # AdamW's decoupled weight decay
    "lr": 2e-3,  # peak learning rate
    "schedule": "onecycle",  # onecycle | cosine | constant
    "epochs": 40,  # upper bound; early stopping usually ends sooner
    "patience": 10,  # epochs without a lower validation loss before stopping
    "batch_size": 128,  # upper bound: small training parts use smaller batches (MIN_STEPS_PER_EPOCH)
    "device": "auto",  # auto (GPU when present) | cpu | cuda | cuda:N
}
SCHEDULES = ("onecycle", "cosine", "constant")
MIN_STEPS_PER_EPOCH = 8  # a few hundred rows still get enough optimizer steps per epoch
MIN_BATCH = 16
PREDICT_BATCH = 8192  # rows per forward pass at prediction time
# Below this many feature values in a training part, one CPU thread beats several: the per-step
# matrices are small, and spinning threads on a busy machine stall each other (5x slower on 2 cores).
SINGLE_THREAD_CELLS = 20_000_000


def _hidden_sizes(value) -> list[int]:
    """[512, 256] from 512, "512,256", "512-256", [512, 256] or []/0/"" (linear)."""
    if value in (None, 0, "", "0", "none"):
        return []
    if isinstance(value, (int, float)):
        value = [value]
    if isinstance(value, str):
        value = [v for v in value.replace("-", ",").replace("x", ",").split(",") if v.strip()]
    try:
        sizes = [int(v) for v in value]
    except (TypeError, ValueError):
        sizes = [0]
    if any(size < 1 for size in sizes):
        raise ConfigError(f"--param hidden={value!r} is not a list of layer widths; e.g. --param hidden=512,256")
    return sizes


def _check(params: dict) -> dict:
    checked = dict(params)
    checked["hidden"] = _hidden_sizes(params["hidden"])
    numbers = {"dropout": float, "input_dropout": float, "weight_decay": float, "lr": float, "epochs": int, "patience": int, "batch_size": int}
    for key, kind in numbers.items():
        try:
            checked[key] = kind(params[key])
        except (TypeError, ValueError):
            raise ConfigError(f"--param {key}={params[key]!r} is not a number; e.g. --param {key}={MLP_DEFAULTS[key]}") from None
    for key in ("dropout", "input_dropout"):
        if not 0.0 <= checked[key] < 1.0:
            raise ConfigError(f"--param {key}={checked[key]} must be in [0, 1); e.g. --param {key}=0.3")
    for key in ("lr", "epochs", "batch_size", "patience"):
        if checked[key] <= 0:
            raise ConfigError(f"--param {key}={checked[key]} must be positive; e.g. --param {key}={MLP_DEFAULTS[key]}")
    if checked["schedule"] not in SCHEDULES:
        raise ConfigError(f"--param schedule={checked['schedule']!r} is unknown; pass one of: {', '.join(SCHEDULES)}")
    return checked


def build_network(n_inputs: int, hidden: list[int], n_outputs: int, dropout: float, input_dropout: float = 0.0):
    """[Dropout on the input] then Linear → ReLU → Dropout per hidden width, then a linear output layer."""
    from torch import nn

    layers, width = ([nn.Dropout(input_dropout)] if input_dropout > 0 else []), n_inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


class MLPHead(Head):
    name = "mlp"
    suffix = ".safetensors"

    @classmethod
    def resolve_params(cls, task, n_classes, overrides, metric, seed):
        unknown = sorted(set(overrides) - set(MLP_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"the mlp head has no parameter {', '.join(repr(k) for k in unknown)}; "
                f"--param takes one of: {', '.join(MLP_DEFAULTS)}"
            )
        return _check({**MLP_DEFAULTS, **overrides})

    # ------------------------------------------------------------------ training

    def _n_outputs(self) -> int:
        return 1 if self.task == "regression" else self.n_classes

    def _loss(self):
        from torch import nn

        if self.task == "multilabel":
            return nn.BCEWithLogitsLoss()
        if self.task == "regression":
            return nn.MSELoss()
        return nn.CrossEntropyLoss()

    def _targets(self, y: np.ndarray):
        import torch

        if self.task in ("binary", "multiclass"):
            return torch.as_tensor(np.asarray(y), dtype=torch.long)
        if self.task == "regression":
            return torch.as_tensor((np.asarray(y, dtype=np.float64) - self.y_mean) / self.y_scale, dtype=torch.float32)[:, None]
        return torch.as_tensor(np.asarray(y), dtype=torch.float32)

    def _inputs(self, X: np.ndarray):
        import torch

        return torch.as_tensor((np.asarray(X, dtype=np.float32) - self.x_mean) / self.x_scale, dtype=torch.float32)

    def _scheduler(self, optimizer, total_steps: int):
        import torch

        p = self.params
        if p["schedule"] == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=p["lr"], total_steps=total_steps)
        if p["schedule"] == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        return None

    def _standardize_on(self, X: np.ndarray, y) -> None:
        self.x_mean = X.mean(axis=0)
        self.x_scale = X.std(axis=0)
        self.x_scale[self.x_scale < 1e-8] = 1.0  # constant features stay 0 after scaling
        self.y_mean, self.y_scale = 0.0, 1.0
        if self.task == "regression":
            self.y_mean = float(np.mean(y))
            self.y_scale = float(np.std(y)) or 1.0

    def fit(self, X, y, groups=None, progress=None):
        import torch

        p = self.params
        self.device = resolve_device(p["device"], "--param device=")
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        split = inner_split(self.task, y, self.n_classes, self.seed, groups)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and X.size < SINGLE_THREAD_CELLS:
            torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=devices):  # seeded without touching the caller's RNG
                if split is None:  # too few rows to hold some out: every epoch on the whole part
                    self.history = self._run(X, y, None, p["epochs"], progress, "")
                    self.info = {"best_epoch": p["epochs"], "epochs_run": p["epochs"]}
                else:
                    inner, held = split
                    self.history = self._run(X[inner], y[inner], (X[held], y[held]), p["epochs"], progress, "")
                    best_epoch = int(np.argmin(self.history)) + 1
                    self.info = {"best_epoch": best_epoch, "epochs_run": len(self.history)}
                    if REFIT:
                        self._run(X, y, None, best_epoch, progress, "refit ")
        finally:
            torch.set_num_threads(threads)
        self.network.eval()
        return self

    def _run(self, X, y, valid, stop_after: int, progress, label: str) -> list[float]:
        """A fresh seeded network trained on (X, y), standardized on X: with `valid`, early
        stopping on its loss (best epoch's weights restored); without, `stop_after` epochs of the
        same `epochs`-long schedule. Returns the validation loss of every epoch run."""
        import torch

        torch.manual_seed(self.seed)
        self._standardize_on(X, y)
        p = self.params
        network = build_network(X.shape[1], p["hidden"], self._n_outputs(), p["dropout"], p["input_dropout"])
        self.network = network.to(self.device)
        return self._train(X, y, valid, stop_after, progress, label)

    def _train(self, X, y, valid, stop_after: int, progress, label: str) -> list[float]:
        import torch

        p = self.params
        inputs, targets = self._inputs(X).to(self.device), self._targets(y).to(self.device)
        has_valid = valid is not None and len(valid[0]) > 0
        if has_valid:
            valid_inputs, valid_targets = self._inputs(valid[0]).to(self.device), self._targets(valid[1]).to(self.device)
        n = len(inputs)
        batch = max(1, min(p["batch_size"], max(MIN_BATCH, n // MIN_STEPS_PER_EPOCH), n))
        steps_per_epoch = math.ceil(n / batch)
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        scheduler = self._scheduler(optimizer, p["epochs"] * steps_per_epoch)
        loss_fn = self._loss()
        shuffler = torch.Generator().manual_seed(self.seed)

        history, best_loss, best_state, best_epoch = [], math.inf, None, p["epochs"] - 1
        for epoch in range(min(stop_after, p["epochs"])):
            self.network.train()
            order = torch.randperm(n, generator=shuffler).to(self.device)
            for start in range(0, n, batch):
                rows = order[start:start + batch]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(self.network(inputs[rows]), targets[rows]).backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            if not has_valid:
                if progress is not None and ((epoch + 1) % 10 == 0 or epoch + 1 == stop_after):
                    progress(f"{label}epoch {epoch + 1}/{stop_after}")
                continue
            self.network.eval()
            with torch.no_grad():
                loss = float(loss_fn(self._forward(valid_inputs), valid_targets))
            history.append(loss)
            if progress is not None:
                progress(f"{label}epoch {epoch + 1}/{p['epochs']}: inner-valid loss {loss:.4f}")
            if loss < best_loss:
                best_loss, best_epoch = loss, epoch
                best_state = copy.deepcopy(self.network.state_dict())
            elif epoch - best_epoch >= p["patience"]:
                break
        if best_state is not None:
            self.network.load_state_dict(best_state)
        return history

    # ------------------------------------------------------------------ prediction

    def _forward(self, inputs):
        import torch

        return torch.cat([self.network(inputs[i:i + PREDICT_BATCH]) for i in range(0, len(inputs), PREDICT_BATCH)])

    def predict(self, X):
        import torch

        self.network.eval()
        with torch.no_grad():
            logits = self._forward(self._inputs(X).to(self.device)).double().cpu()
        if self.task == "regression":
            return logits[:, 0].numpy() * self.y_scale + self.y_mean
        if self.task == "multilabel":
            return torch.sigmoid(logits).numpy()
        return torch.softmax(logits, dim=1).numpy()

    # ------------------------------------------------------------------ files

    def save(self, path):
        import torch
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {f"network.{k}": v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        tensors["x_mean"] = torch.as_tensor(self.x_mean, dtype=torch.float32)
        tensors["x_scale"] = torch.as_tensor(self.x_scale, dtype=torch.float32)
        write_atomic(path, lambda temp: save_file(tensors, str(temp)))
        architecture = {
            "head": self.name,
            "task": self.task,
            "n_classes": self.n_classes,
            "n_inputs": len(self.x_mean),
            "n_outputs": self._n_outputs(),
            "hidden": self.params["hidden"],
            "dropout": self.params["dropout"],
            "input_dropout": self.params["input_dropout"],
            "y_mean": self.y_mean,  # regression targets are fitted standardized
            "y_scale": self.y_scale,
            "params": self.params,
            "info": self.info,
        }
        write_text_atomic(path.with_suffix(".json"), json.dumps(architecture, indent=2))

    @classmethod
    def load(cls, path, task, n_classes=0):
        from safetensors.torch import load_file

        path = Path(path)
        architecture = json.loads(path.with_suffix(".json").read_text())
        tensors = load_file(str(path))
        head = cls.__new__(cls)
        head.task, head.n_classes, head.metric, head.seed = task, n_classes, None, 0
        head.params, head.info = architecture["params"], architecture.get("info", {})
        head.device = resolve_device("auto")
        head.x_mean, head.x_scale = tensors.pop("x_mean").numpy(), tensors.pop("x_scale").numpy()
        head.y_mean, head.y_scale = architecture["y_mean"], architecture["y_scale"]
        head.network = build_network(
            architecture["n_inputs"], architecture["hidden"], architecture["n_outputs"], architecture["dropout"],
            architecture.get("input_dropout", 0.0),
        )
        head.network.load_state_dict({k.removeprefix("network."): v for k, v in tensors.items()})
        head.network.to(head.device).eval()
        return head
