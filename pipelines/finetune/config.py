"""FinetuneConfig: every setting of `olymp finetune`, typed, with its checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from pipelines.core.errors import ConfigError
from pipelines.data.labels import check_label_source

SCHEDULES = ("cosine", "onecycle")
DEVICES_HELP = "auto | cpu | cuda | cuda:N"


@dataclass
class FinetuneConfig:
    # --- inputs (as train-head's, but raw files instead of embeddings)
    inputs: str  # a folder of images/audio (recursive) or a CSV/Parquet listing with id,path
    labels: str | None  # CSV with an id column and a target column; None with labels_from_folders
    output: str  # the run directory to create or resume
    modality: str = "auto"  # auto (from the file extensions) | image | audio
    id_col: str = "id"  # id column of the labels CSV
    target_col: str = "label"  # target column (classification: binary or multiclass)
    group_col: str | None = None  # rows sharing a group stay in one fold (and in one side of the inner split)
    labels_from_folders: bool = False  # no CSV: each file's parent folder name is its class
    task: str | None = None  # binary | multiclass; None: inferred from the target
    metric: str | None = None  # reported first; None: the task's default
    # --- cross-validation (the same machinery as train-head: same labels + seed + groups = same folds)
    folds: int = 5  # number of folds
    seed: int = 42  # fold shuffling, inner split, model init and augmentation
    folds_from: str | None = None  # reuse this run's folds.csv (same ids) instead of drawing folds
    # --- the network
    backbone: str = "efficientnet_lite0"  # timm or catalog name
    weights: str | None = None  # a .safetensors/.pt file, "random" (tests), None: offline auto
    train_layers: str | int = "2"  # "all", or N (a TOML number is fine): the top N stages plus the head (BatchNorm frozen below)
    resolution: int | None = None  # square input side in pixels; None: the model's own
    # --- optimisation
    epochs: int = 10  # at most this many epochs per fold (early stopping may end sooner)
    batch_size: int | None = None  # None: 32 on CPU, the largest that fits (from 256 down) on a GPU
    lr: float = 3e-4  # AdamW learning rate of the trained backbone stages
    head_lr_mult: float = 10.0  # the new head learns this many times faster (discriminative LRs)
    weight_decay: float = 0.01  # AdamW weight decay
    schedule: str = "cosine"  # cosine (linear warm-up, then cosine) | onecycle
    warmup_epochs: float = 1.0  # warm-up length for --schedule cosine
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    grad_clip: float = 1.0  # clip the gradient norm to this; 0: off
    patience: int = 3  # stop after this many epochs without a better inner-split loss
    stop_share: float = 0.15  # share of each fold's training part held out for early stopping
    # --- augmentation
    hflip: bool = False  # images: random horizontal flips (off: orientation may carry meaning)
    auto_augment: str | None = None  # images: timm auto-augment policy, e.g. rand-m9-mstd0.5 or original
    mixup: float = 0.0  # mixup alpha (0: off)
    cutmix: float = 0.0  # cutmix alpha (0: off)
    views: int = 4  # cached mode: augmented views computed per input (epochs cycle through them)
    spec_augment: bool = True  # audio: SpecAugment time and frequency masks
    # --- execution
    cache: bool = True  # with a numeric train_layers: compute the frozen part once per input and view
    cache_dir: str | None = None  # where the frozen-feature cache lives; None: RUN_DIR/feature_cache
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int | None = None  # image decode processes; None: 0 on CPU, 4 on a GPU
    window: float | None = None  # audio: seconds per window; None: 5 (the log-mel image route's)
    overwrite: bool = False  # replace an existing finetune run in `output`
    limit: int | None = None  # a stratified subsample of N labelled rows (seeded), for smoke runs

    def __post_init__(self) -> None:
        self.check()

    @classmethod
    def from_dict(cls, table: dict) -> "FinetuneConfig":
        """From a TOML/JSON table: unknown keys are refused, naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown finetune setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**table)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def n_train_layers(self) -> int | None:
        """None for "all", else the number of top stages trained."""
        return None if self.train_layers == "all" else int(self.train_layers)

    @property
    def cached(self) -> bool:
        """Whether the frozen lower part is computed once and read from the cache (cached mode)."""
        return self.cache and self.n_train_layers is not None

    def check(self) -> None:
        text = str(self.train_layers).strip().lower()
        if text != "all":
            try:
                number = int(text)
            except ValueError:
                raise ConfigError(f"--train-layers {self.train_layers!r}: pass all or a number of top stages, e.g. --train-layers 2") from None
            if number < 1:
                raise ConfigError(f"--train-layers {number}: pass 1 or more top stages, or all "
                                  "(a frozen backbone with a head alone is olymp extract + olymp train-head)")
            text = str(number)
        self.train_layers = text
        if self.modality not in ("auto", "image", "audio"):
            raise ConfigError(f"--modality {self.modality!r}: pass auto, image or audio")
        if self.task is not None and self.task not in ("binary", "multiclass"):
            raise ConfigError(f"--task {self.task}: finetune trains classifiers (binary, multiclass); "
                              "for regression or multilabel use olymp extract + olymp train-head")
        if self.folds < 2:
            raise ConfigError(f"--folds {self.folds} leaves nothing to validate on; pass --folds 2 or more")
        if self.seed < 0:
            raise ConfigError("--seed must be 0 or more, e.g. --seed 42")
        for name, value, low in (("--epochs", self.epochs, 1), ("--views", self.views, 1), ("--patience", self.patience, 1)):
            if value < low:
                raise ConfigError(f"{name} {value}: pass {low} or more")
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError(f"--batch-size {self.batch_size}: pass 2 or more (or leave it out)")
        if self.resolution is not None and not 16 <= self.resolution <= 2048:
            raise ConfigError(f"--resolution {self.resolution}: pass a side between 16 and 2048 pixels, e.g. --resolution 128")
        for name, value in (("--lr", self.lr), ("--head-lr-mult", self.head_lr_mult)):
            if not value > 0:
                raise ConfigError(f"{name} {value}: pass a positive number")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_epochs < 0:
            raise ConfigError("--weight-decay, --grad-clip and --warmup-epochs must be 0 or more")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing {self.label_smoothing}: pass a value in [0, 1), e.g. 0.1")
        if not 0.0 < self.stop_share < 0.5:
            raise ConfigError(f"--stop-share {self.stop_share}: pass a share in (0, 0.5), e.g. 0.15")
        if self.mixup < 0 or self.cutmix < 0:
            raise ConfigError("--mixup and --cutmix are Beta alphas: pass 0 (off) or more, e.g. --mixup 0.2")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule {self.schedule!r}: pass one of {', '.join(SCHEDULES)}")
        if self.window is not None and not self.window > 0:
            raise ConfigError(f"--window {self.window}: pass positive seconds, e.g. --window 5")
        if self.limit is not None and self.limit < self.folds:
            raise ConfigError(f"--limit {self.limit} is fewer rows than --folds {self.folds}; pass a larger --limit")
        check_label_source(self.labels, self.labels_from_folders, self.group_col)
