"""One fold's training: AdamW with discriminative LRs, warm-up + cosine (or one-cycle), label
smoothing, Mixup/CutMix, gradient clipping, bf16 autocast on GPUs (fp16 + GradScaler where bf16
is missing), channels_last on GPUs; early stopping on an inner split of the fold's training part
(the best epoch's weights restored); a checkpoint after every epoch so a killed fold resumes at
its last finished epoch.

Checkpoint (RUN_DIR/fold-K/checkpoint.safetensors + checkpoint.json, no pickle): the model's
current and best weights and the optimizer's tensors as safetensors; the epoch, the early-stopping
state, the history, the optimizer's param groups and the scheduler's state as JSON. Every epoch
reseeds torch and numpy from (seed, fold, epoch), so a resumed fold continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.core.errors import ConfigError
from pipelines.core.io import json_ready, write_atomic, write_json_atomic

CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
WARMUP_SHARE_ONECYCLE = 0.3

# notify(kind, message, data): kind "epoch" (data: fold, epoch, loss, stop_loss, stop_accuracy,
# items_per_second, eta_seconds), "fold", "cache", "warning", "task"
Notify = Callable[[str, str, dict], None]
# on_stop_rows(fold, rows): the row positions early stopping is about to read (an assertion hook)
StopRowsHook = Callable[[int, np.ndarray], None]


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype; None: fp32
    use_scaler: bool  # fp16: GradScaler
    batch_size: int
    workers: int

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        return f"{self.device} {precision}, batch {self.batch_size}"


def resolve_runtime(device: str, batch_size: int | None, workers: int | None) -> Runtime:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is visible; pass --device cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return Runtime(dev, torch.bfloat16 if bf16 else torch.float16, not bf16, batch_size or 0,
                       4 if workers is None else workers)
    return Runtime(dev, None, False, batch_size or 32, 0 if workers is None else workers)


@dataclass
class FoldOutcome:
    proba: np.ndarray  # (len(valid_rows), n_classes) probabilities of the fold's validation rows
    best_epoch: int  # 1-based
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0  # epochs that came from a checkpoint


class Feeder:
    """Training batches and evaluation of rows, from the cache (features) or from the files."""

    def __init__(self, network, inputs, labels: np.ndarray, runtime: Runtime, cached: list | None):
        self.network, self.inputs, self.labels, self.runtime, self.cached = network, inputs, labels, runtime, cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cached is not None:
            return self.network.upper(x)
        if self.network.frozen:
            with torch.no_grad():
                x = self.network.lower(x)
        return self.network.upper(x)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.runtime.device, non_blocking=True).float()
        if self.runtime.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_batches(self, rows: np.ndarray, epoch_seed: int, batch_size: int):
        from pipelines.finetune.augment import TrainViews

        rng = np.random.default_rng(epoch_seed)
        order = rows[rng.permutation(len(rows))]
        # A last batch of one row would meet BatchNorm in train mode alone: it joins the batch before.
        starts = list(range(0, len(order), batch_size))
        if len(starts) > 1 and len(order) - starts[-1] == 1:
            starts.pop()
        ends = starts[1:] + [len(order)]
        if self.cached is not None:
            for start, end in zip(starts, ends):
                chunk = order[start:end]
                picks = rng.integers(0, self.cached[0][1].shape[0], size=len(chunk))
                x = torch.stack([self.cached[int(r)][1][int(v)] for r, v in zip(chunk, picks)])
                yield self._to_device(x), torch.as_tensor(self.labels[chunk], device=self.runtime.device)
            return
        loader = torch.utils.data.DataLoader(
            TrainViews(self.inputs, order, self.labels, epoch_seed), batch_size=batch_size, shuffle=False,
            num_workers=self.runtime.workers, pin_memory=self.runtime.device.type == "cuda",
            persistent_workers=False, drop_last=len(order) > 1 and len(order) % batch_size == 1,
        )
        for x, y in loader:
            yield self._to_device(x), y.to(self.runtime.device)

    @torch.no_grad()
    def predict(self, rows: np.ndarray, batch_size: int) -> np.ndarray:
        """(len(rows), n_classes) probabilities: the softmax of a clip's logits averaged over its
        windows, which is what predict computes (the network's linear classifier on the clip's
        mean pre-logits, as extract pools them), so OOF and test predictions agree."""
        from pipelines.finetune.augment import EvalViews, collate_eval

        self.network.model.eval()
        position = {int(r): i for i, r in enumerate(rows)}
        sums, counts = None, np.zeros(len(rows))

        def add(x, owners):
            nonlocal sums
            with self._autocast():
                logits = self.forward(self._to_device(x))
            logits = logits.float().cpu().numpy()
            if sums is None:
                sums = np.zeros((len(rows), logits.shape[1]))
            index = np.asarray([position[int(o)] for o in owners])
            np.add.at(sums, index, logits)
            np.add.at(counts, index, 1)

        if self.cached is not None:
            windows = [(self.cached[int(r)][0], int(r)) for r in rows]
            for start in range(0, len(windows), batch_size):
                part = windows[start: start + batch_size]
                add(torch.cat([w for w, _ in part]), torch.cat([torch.full((len(w),), r) for w, r in part]))
        else:
            loader = torch.utils.data.DataLoader(EvalViews(self.inputs, rows), batch_size=batch_size, shuffle=False,
                                                 num_workers=self.runtime.workers, collate_fn=collate_eval)
            for x, owners in loader:
                add(x, owners)
        return torch.from_numpy(sums / counts[:, None]).softmax(dim=1).numpy()

    def _autocast(self):
        if self.runtime.amp_dtype is None:
            return torch.autocast(device_type=self.runtime.device.type, enabled=False)
        return torch.autocast(device_type=self.runtime.device.type, dtype=self.runtime.amp_dtype)


def lr_factor(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Multiplier of each group's LR at a step: linear warm-up then cosine to 0, or one-cycle
    (30% warm-up from 1/25, cosine down to 1e-4)."""
    total_steps = max(1, total_steps)

    def cosine(step: int) -> float:
        if schedule == "onecycle":
            warm = max(1, int(WARMUP_SHARE_ONECYCLE * total_steps))
            if step < warm:
                return 1 / 25 + (1 - 1 / 25) * step / warm
            progress = min(1.0, (step - warm) / max(1, total_steps - warm))
            return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress))
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return cosine


def _state_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(fold_dir: Path, model, best_state, optimizer, scheduler, state: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v for k, v in _state_cpu(model).items()}
    tensors.update({f"best.{k}": v.contiguous() for k, v in best_state.items()})
    opt = optimizer.state_dict()
    for index, values in opt["state"].items():
        for name, value in values.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    write_atomic(fold_dir / CHECKPOINT_WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    write_json_atomic(fold_dir / CHECKPOINT_STATE, {**state, "param_groups": opt["param_groups"], "scheduler": sched})


def load_checkpoint(fold_dir: Path, key: str, model, optimizer, scheduler) -> tuple[dict, dict] | None:
    """(state, best weights) of a checkpoint made under `key`, loaded into model/optimizer/scheduler."""
    from safetensors.torch import load_file

    try:
        state = json.loads((fold_dir / CHECKPOINT_STATE).read_text())
        if state.get("key") != key:
            return None
        tensors = load_file(str(fold_dir / CHECKPOINT_WEIGHTS))
    except (OSError, ValueError, KeyError, RuntimeError, AttributeError):
        return None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    opt_state: dict = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, index, field_name = name.split(".", 2)
            opt_state.setdefault(int(index), {})[field_name] = value
    groups = state["param_groups"]
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(groups)})
    return state, best


def clear_checkpoint(fold_dir: Path) -> None:
    for name in (CHECKPOINT_WEIGHTS, CHECKPOINT_STATE):
        (fold_dir / name).unlink(missing_ok=True)


def train_fold(
    fold: int, fit_rows: np.ndarray, stop_rows: np.ndarray, valid_rows: np.ndarray, feeder: Feeder,
    n_classes: int, config, fold_dir: Path, key: str, notify: Notify, on_stop_rows: StopRowsHook | None,
    epochs_after: int,
) -> FoldOutcome:
    """Train on fit_rows, early-stop on stop_rows, predict valid_rows with the best epoch's weights."""
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    if np.intersect1d(stop_rows, valid_rows).size or np.intersect1d(fit_rows, valid_rows).size:
        raise AssertionError(f"fold {fold}: validation rows reached the training or early-stopping rows")
    network, runtime = feeder.network, feeder.runtime
    model = network.model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    batch_size = runtime.batch_size
    groups = network.param_groups(config.lr, config.head_lr_mult, config.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    steps_per_epoch = max(1, len(fit_rows) // batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [lr_factor(config.schedule, total, warmup)] * len(groups))
    mixing = config.mixup > 0 or config.cutmix > 0
    mixer = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                  num_classes=n_classes) if mixing else None
    criterion = SoftTargetCrossEntropy() if mixing else nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    scaler = torch.amp.GradScaler("cuda") if runtime.use_scaler else None

    state = {"key": key, "epoch": 0, "best_epoch": 0, "best_loss": None, "bad_epochs": 0, "history": []}
    best_state = _state_cpu(model)
    loaded = load_checkpoint(fold_dir, key, model, optimizer, scheduler)
    resumed = 0
    if loaded is not None:
        state, best_state = loaded
        resumed = state["epoch"]
        notify("warning", f"fold {fold}: resuming after epoch {resumed} from its checkpoint", {"fold": fold, "epoch": resumed})

    epoch = state["epoch"]
    while epoch < config.epochs and state["bad_epochs"] < config.patience:
        epoch += 1
        epoch_seed = config.seed * 100_003 + fold * 1009 + epoch
        torch.manual_seed(epoch_seed)
        network.train_mode()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        try:
            for x, y in feeder.train_batches(fit_rows, epoch_seed, batch_size):
                if mixer is not None:
                    if len(y) % 2:
                        x, y = x[:-1], y[:-1]
                    if len(y) < 2:
                        continue
                    x, target = mixer(x, y)
                else:
                    target = y
                with feeder._autocast():
                    loss = criterion(feeder.forward(x).float(), target)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], config.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                seen += len(y)
                loss_sum += float(loss.detach()) * len(y)
        except torch.cuda.OutOfMemoryError:
            raise ConfigError(f"out of GPU memory at --batch-size {batch_size}; pass --batch-size {max(2, batch_size // 2)} "
                              "or a lower --resolution") from None
        if on_stop_rows is not None:
            on_stop_rows(fold, stop_rows)
        proba = feeder.predict(stop_rows, batch_size)
        truth = feeder.labels[stop_rows]
        stop_loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-15, 1.0))))
        stop_accuracy = float(np.mean(proba.argmax(axis=1) == truth))
        seconds = time.perf_counter() - started
        if state["best_loss"] is None or stop_loss < state["best_loss"]:
            state.update(best_loss=stop_loss, best_epoch=epoch, bad_epochs=0)
            best_state = _state_cpu(model)
        else:
            state["bad_epochs"] += 1
        record = {"epoch": epoch, "loss": loss_sum / max(1, seen), "stop_loss": stop_loss, "stop_accuracy": stop_accuracy,
                  "seconds": seconds, "items_per_second": seen / max(seconds, 1e-9)}
        state["history"].append(record)
        state["epoch"] = epoch
        save_checkpoint(fold_dir, model, best_state, optimizer, scheduler, state)
        left = (config.epochs - epoch) + epochs_after
        eta = seconds * left
        notify("epoch", f"fold {fold} epoch {epoch}/{config.epochs}: loss {record['loss']:.4f}, inner-split loss "
                        f"{stop_loss:.4f} accuracy {stop_accuracy:.4f}, {record['items_per_second']:.1f} items/s, "
                        f"ETA {_duration(eta)}", {"fold": fold, **record, "eta_seconds": eta})
    if state["bad_epochs"] >= config.patience and epoch < config.epochs:
        notify("round", f"fold {fold}: early stop after epoch {epoch} (best {state['best_epoch']})", {"fold": fold})
    model.load_state_dict(best_state)
    proba = feeder.predict(valid_rows, batch_size)
    model.to("cpu")
    return FoldOutcome(proba, max(1, state["best_epoch"]), epoch, json_ready(state["history"]), resumed)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def auto_batch_size(feeder: Feeder, sample: torch.Tensor, n_classes: int, start: int = 256) -> int:
    """The largest batch (start, halved on out-of-memory) a forward + backward fits in on the GPU."""
    size = start
    model = feeder.network.model.to(feeder.runtime.device)
    while size >= 2:
        try:
            x = sample.expand(size, *sample.shape[1:]).contiguous().to(feeder.runtime.device)
            with feeder._autocast():
                loss = feeder.forward(x).float().logsumexp(dim=1).mean()
            loss.backward()
            model.zero_grad(set_to_none=True)
            return size
        except torch.cuda.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            size //= 2
    raise ConfigError("out of GPU memory even at --batch-size 2; pass a lower --resolution or --train-layers")
