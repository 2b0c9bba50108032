"""`recommend`: which backbone for this data, this machine, this time budget?

Flow: probe the data (pipelines/select/probe.py) → constraints (probe + the user's overrides) →
candidates = catalog entries of the modality → a time per candidate (rough: FLOPs and a small
device table; with --measure: the candidate's forward and the decoding of the user's files timed
on this machine, the untimed ones calibrated to the speed measured) → a score = the sum of the rules
below, each a small function returning points and the reason it gives → a ranking.

The score, in words: priority weights over (quality, speed, simplicity); plus a nudge toward
the size tier that suits the dataset size; minus for a slow model on CPU; minus a lot for a
model whose estimated extraction time does not fit the budget (plus a little for headroom);
edge/mobile deployment favours small fast models; detection/segmentation favour the families
that serve as detector/segmenter backbones. Entries with `avoid` are never top picks and
`extractable = false` entries only appear as notes.

Availability: every candidate carries where its weights would come from right now, offline
(`weights_offline`: package, HF cache, none needed; or what is missing). The list shown puts the
available candidates first (by score), then the unavailable ones that score better than the best
available, each with what pulling it would buy ("+N points ImageNet top-1"); `--all` lists every
candidate. The printed command is always the best available pick: it runs offline as printed.

`--trial` is the bake-off (pipelines/select/trial.py, `recommend_and_trial`): the available routes
scored with every fast head on the user's labelled data; its winner's commands replace the ranking's.
`recommend` itself only ranks (and checks the trial options).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.core.durations import format_duration, parse_duration
from pipelines.core.errors import ConfigError, InputError
from pipelines.core.hardware import available_cores

PRIORITIES = ("balanced", "quality", "speed", "baseline")
DEVICES = ("auto", "cpu", "cuda")
DEPLOYMENTS = ("cloud", "edge", "mobile")
TASKS = ("classification", "detection", "segmentation")
MODALITIES = ("image", "audio")

# --- the rules' weights, in one place

# priority -> weights of (quality, speed, simplicity); each term is in [0, 1].
PRIORITY_WEIGHTS = {
    "balanced": (0.6, 0.2, 0.0),  # the best embeddings that are not needlessly slow
    "quality": (1.0, 0.15, 0.0),
    "speed": (0.3, 1.0, 0.0),
    "baseline": (0.2, 0.2, 1.0),  # the reference model a leaderboard compares against
}
# Families that are the field's reference baselines: plain conv stacks reported as "the
# baseline" in papers (ResNet for images, VGGish for audio). The catalog has no field for it.
BASELINE_FAMILIES = frozenset({"resnet", "vgg", "vggish"})
# The cost that still counts as fully fast: GFLOPs per image, per 10 s clip.
SPEED_REFERENCE_GFLOPS = {"image": 0.25, "audio": 1.0}
SIZE_TIERS = ("small", "medium", "large")
TOP1_FLOOR, TOP1_CEILING = 70.0, 85.0  # ImageNet top-1 → quality 0..1
MAP_FLOOR, MAP_CEILING = 0.25, 0.45  # AudioSet mAP → quality 0..1
SIZE_MATCH_POINTS = {0: 0.05, 1: 0.0, 2: -0.05}  # by distance between the wanted and the entry's tier
SMALL_DATA, LARGE_DATA = 10_000, 100_000  # < 10k items: small models; > 100k: large
EDGE_SMALL_PARAMS_M = 10.0  # up to this many parameters a model suits edge/mobile
EDGE_HEAVY_PARAMS_M = 30.0  # above this, too heavy for edge/mobile
AUDIO_DOMAIN_POINTS = 0.1  # an audio-trained net, for audio
CATALOG_DEFAULT_POINTS = 0.2  # good_for has "general"
CATALOG_DEVICE_POINTS = 0.3  # good_for names the user's device ("cpu" / "gpu")
CPU_SLOW_POINTS = -0.1  # a slow model on CPU
OVER_BUDGET_POINTS = -1.0  # does not fit: below everything that fits
HEADROOM_POINTS = 0.5  # × the share of the budget left
EDGE_POINTS = 0.3  # small and fast, for edge/mobile; the opposite for large or slow
MOBILE_FAMILY_POINTS = 0.2  # mobilenet/lite families, built for phones
DENSE_TASK_POINTS = 0.1
# Families used as backbones of detectors (Faster R-CNN, RetinaNet, FCOS) and segmenters
# (DeepLab, U-Net, FPN) in torchvision, detectron2, mmdet and segmentation_models_pytorch.
DENSE_TASK_FAMILIES = frozenset({"resnet", "convnext", "efficientnet", "efficientnet-lite", "mobilenetv3",
                                 "regnet", "swin", "resnext"})

# --- the rough time estimate's device table (labelled "rough (not measured)" everywhere it is shown)

CPU_GFLOPS_PER_CORE = 20.0  # effective, bf16/fp32 conv nets at batch 8 (Lite0 measured ~50 img/s on 2 cores)
CUDA_GFLOPS = 50_000.0  # effective on a data-centre GPU (peak is several times higher)
IMAGE_DECODE_PER_CORE = 300.0  # JPEG decode + resize, images/s per decode core
AUDIO_DECODE_PER_CORE = 2_000.0  # decode + resample, seconds of audio per second per core
STARTUP_SECONDS = 5.0  # model build and the first batch
LOGMEL_IMAGE_WINDOW_S = 5.0  # an image backbone on audio embeds one log-mel image per 5 s

# How each time was obtained (shown in the table's time column and in --json "time_source").
MEASURED = "measured"  # this candidate's forward timed here, plus decoding of the user's files timed here
MEASURED_FORWARD = "measured forward, decode from table"  # no files to decode (no DATA_PATH)
CALIBRATED = "calibrated"  # not timed itself: FLOPs at this machine's measured speed on its family (or the others)
ROUGH = "rough (not measured)"  # FLOPs and the device table only; run with --measure for a real figure
# The table's short form, and the legend printed under it for the forms it shows.
TIME_LABELS = {MEASURED: "measured", MEASURED_FORWARD: "measured*", CALIBRATED: "calibrated", ROUGH: "rough"}
TIME_LEGEND = {
    MEASURED: "measured = this candidate's forward and the decoding of your files, timed on this machine",
    MEASURED_FORWARD: "measured* = forward timed on this machine, decoding from the table (give DATA_PATH to time it)",
    CALIBRATED: "calibrated = not timed itself: its FLOPs at the speed the timed candidates (its family's first) showed here",
    ROUGH: "rough = not measured: FLOPs and a device table, can be several times off; --measure times them here",
}
DECODE_SAMPLE = 12  # files decoded to time the decode cost (seeded sample of the user's data)


# --------------------------------------------------------------------------- inputs

@dataclass
class Constraints:
    modality: str  # image | audio
    n_items: int  # files to embed
    priority: str = "balanced"  # balanced | quality | speed | baseline
    device: str = "cpu"  # cpu | cuda (resolved: never "auto" here)
    time_budget_s: float | None = None  # for the whole extraction; None: no limit
    deploy: str = "cloud"  # cloud | edge | mobile
    task: str = "classification"  # classification | detection | segmentation
    clip_seconds: float = 10.0  # audio: mean clip length (from the probe), drives the estimate
    cpu_cores: int = 2  # for the decode ceiling and the CPU compute rate


@dataclass
class RecommendConfig:
    # --- the data (DATA_PATH optional when modality and n_items are given)
    data_path: str | None = None
    modality: str | None = None  # None: from the probe
    n_items: int | None = None  # None: from the probe
    # --- constraints
    priority: str = "balanced"
    device: str = "auto"  # auto | cpu | cuda
    time_budget: str | None = None  # "90s", "30m", "2h"
    deploy: str = "cloud"
    task: str = "classification"
    # --- output
    show_all: bool = False  # also the don't-use entries, last
    top: int = 5  # candidates shown (all with show_all)
    output_dir: str = "emb/train"  # for the command to paste
    catalog_path: str | None = None  # tests: another catalog file
    # --- slower modes
    measure: bool = False  # time a few batches per candidate on this machine
    measure_top: int = 5  # how many candidates (best estimated first) to time
    trial_labels: str | None = None  # labels CSV: run the bake-off
    trial_from_folders: bool = False  # run the bake-off with each file's parent folder as its class
    trial_size: int | None = None  # sampled rows; None: what fits the time budget
    trial_top: int = 4  # routes tried (the best ranked available ones)
    trial_weights: str | None = None  # None: offline auto; "random" for tests (unavailable ones run too)
    trial_layers: str = "-2,-1"  # images: the --layers variant tried per backbone; "" for none
    trial_heads: list[str] | None = None  # None: logreg, mlp, and lgbm when its estimated time fits
    trial_cache: str | None = None  # keep (and reuse) each route's extraction here; None: a temp folder
    group_col: str | None = None  # --trial CSV column whose rows stay in one fold
    id_col: str = "id"
    target_col: str = "label"


# Candidate.weights_offline values whose extract command runs as printed, offline.
OFFLINE_READY = ("package", "hf-cache", "none needed")


@dataclass
class Candidate:
    entry: Any  # catalog BackboneEntry
    score: float
    reasons: list[str]
    estimated_seconds: float | None
    time_source: str  # MEASURED | MEASURED_FORWARD | CALIBRATED | ROUGH
    fits_budget: bool | None  # None: no budget given
    weights_offline: str  # "package" | "hf-cache" | "none needed" | "needs --weights" | "pip install X"
    avoid: str = ""  # the catalog's reason when this is a don't-use entry
    rank: int = 0
    pull_note: str = ""  # unavailable and better than the best available: what pulling it would buy
    trial_score: float | None = None  # bake-off: its best route x head mean CV score
    trial_seconds: float | None = None  # bake-off: extraction time of the sample (its first route)
    trial_skipped: str = ""  # bake-off: why this candidate was not tried

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def available(self) -> bool:
        """Its weights are on this machine (or it needs none): its extract command runs offline."""
        return self.weights_offline in OFFLINE_READY

    def as_dict(self) -> dict:
        data = {
            "rank": self.rank, "name": self.name, "score": round(self.score, 4), "reasons": self.reasons,
            "estimated_seconds": None if self.estimated_seconds is None else round(self.estimated_seconds, 1),
            "time_source": self.time_source, "embedding_dim": self.entry.embedding_dim,
            "weights_offline": self.weights_offline, "available": self.available, "fits_budget": self.fits_budget,
        }
        if self.pull_note:
            data["pull_note"] = self.pull_note
        if self.avoid:
            data["avoid"] = self.avoid
        if self.trial_score is not None or self.trial_skipped:
            data["trial_score"] = None if self.trial_score is None else round(self.trial_score, 4)
            data["trial_seconds"] = None if self.trial_seconds is None else round(self.trial_seconds, 2)
            data["trial_skipped"] = self.trial_skipped
        return data


@dataclass
class Recommendation:
    constraints: Constraints
    probe: Any  # DataProbe | None
    candidates: list[Candidate]  # ranked; don't-use entries last (only with show_all)
    notes: list[str] = field(default_factory=list)  # non-extractable entries, task advice, hidden don't-use
    command: str = ""  # olymp extract ... for the best available pick (the trial's winner after --trial)
    train_command: str = ""  # after --trial: olymp train-head ... with the winning head
    trial: Any = None  # pipelines.select.trial.TrialResult, when one ran
    finetune: FinetuneAdvice | None = None  # end-to-end fine-tuning, when the device and budget make it pay
    finetune_hint: str = ""  # without --trial: the finetune command to adapt (labels unknown here)
    finetune_command: str = ""  # after --trial: olymp finetune ... on the winning head's folds
    blend_command: str = ""  # after --trial with finetune_command: olymp blend of the two runs
    ranked: list[Candidate] = field(default_factory=list, repr=False)  # every candidate by score (the trial's pool)
    entries: list = field(default_factory=list, repr=False)  # the catalog read

    def as_json(self) -> dict:
        from dataclasses import asdict

        return {
            "constraints": asdict(self.constraints),
            "probe": self.probe.as_dict() if self.probe is not None else None,
            "candidates": [c.as_dict() for c in self.candidates],
            "command": self.command,
            "train_command": self.train_command,
            "notes": self.notes,
            "trial": None if self.trial is None else self.trial.as_dict(),
            "finetune": None if self.finetune is None else self.finetune.as_dict(),
            "finetune_hint": self.finetune_hint,
            "finetune_command": self.finetune_command,
            "blend_command": self.blend_command,
        }


# --------------------------------------------------------------------------- fine-tuning advice

# `olymp finetune --train-layers all` in units of one extraction pass over the data (decode and
# forward of every file): per fold, each epoch trains on the fold's training part, (folds-1)/folds
# of the rows, at TRAIN_STEP_PASSES passes' cost (forward, backward, update), and predicts the
# fold's own rows once. Measured for Lite0 on 2 CPU cores, batch 32: a training step took 88.5 ms
# per image at 224 px against 21.2 ms for inference (4.2x), 19.8 vs 5.0 ms at 128 px (3.9x).
FINETUNE_FOLDS = 5
FINETUNE_EPOCHS = 10
TRAIN_STEP_PASSES = 4.0
# Photos this small (the median's longer side) train far faster, and about as well, at this side
# than at the model's (the hand signs: 100 px photos, 128 px fine-tune, 99.5%).
SMALL_IMAGE_SIDE = 128


@dataclass
class FinetuneAdvice:
    backbone: str  # what --backbone gets
    modality: str  # image | audio (audio: the log-mel image route)
    seconds: float  # estimated, on the device recommend ranked for
    device: str
    resolution: int | None = None  # --resolution (small photos), or None: the model's

    def flags(self) -> str:
        flags = f"--backbone {self.backbone} --train-layers all --epochs {FINETUNE_EPOCHS}"
        if self.resolution:
            flags += f" --resolution {self.resolution}"
        return flags + (" --device cuda" if self.device == "cuda" else "")

    def as_dict(self) -> dict:
        return {"backbone": self.backbone, "seconds": round(self.seconds, 1), "device": self.device,
                "resolution": self.resolution, "flags": self.flags()}


def finetune_passes(epochs: int = FINETUNE_EPOCHS, folds: int = FINETUNE_FOLDS) -> float:
    """Extraction passes' worth of work in an end-to-end fine-tune (see TRAIN_STEP_PASSES)."""
    return folds * (epochs * (folds - 1) / folds * TRAIN_STEP_PASSES + 1 / folds)


def finetune_advice(entry, extract_seconds: float | None, c: Constraints, probe) -> FinetuneAdvice | None:
    """End-to-end fine-tuning of `entry` when the device and time budget make it pay: on a GPU
    (within the budget, when one is given), or for images on a CPU when the estimate fits the
    budget. Not for sound on a CPU: ESC-10's log-mel images fine-tuned there for 8 epochs (17 min)
    scored 83.5% against the frozen probe's 92.2% (README, Fine-tuning). None for backbones
    finetune cannot train (olymp's audio networks) and non-classification tasks."""
    if not entry.timm_name or c.task != "classification" or not extract_seconds:
        return None
    resolution = None
    scale = 1.0
    if c.modality == "image" and probe is not None and probe.image_size_median and entry.input_size:
        if max(probe.image_size_median) <= SMALL_IMAGE_SIDE < entry.input_size:
            resolution = SMALL_IMAGE_SIDE
            scale = (SMALL_IMAGE_SIDE / entry.input_size) ** 2
    seconds = extract_seconds * scale * finetune_passes()
    fits = c.time_budget_s is not None and seconds <= c.time_budget_s
    if not (fits or (c.device == "cuda" and c.time_budget_s is None)):
        return None
    if c.modality == "audio" and c.device != "cuda":  # measured: ESC-10 fine-tuned on a CPU lost to the frozen probe
        return None
    return FinetuneAdvice(entry.name, c.modality, seconds, c.device, resolution)


def finetune_note(advice: FinetuneAdvice, data_path: str | None, labels: str = "YOUR_LABELS.csv") -> str:
    data = _quote(data_path) if data_path else "DATA_PATH"
    audio = " (the log-mel image route)" if advice.modality == "audio" else ""
    where = "fits the budget" if advice.device != "cuda" else "fits a GPU session"
    return (f"fine-tuning {advice.backbone}{audio} end to end {where} (~{format_duration(advice.seconds)} on "
            f"{advice.device} for {FINETUNE_FOLDS} folds x {FINETUNE_EPOCHS} epochs, estimated), where contestants "
            f"go past frozen embeddings: olymp finetune {data} --labels {labels} -o runs/ft {advice.flags()}; "
            "pass the head run's --folds-from to blend the two (README, Fine-tuning)")


# --------------------------------------------------------------------------- small parsers


def _choice(value: str, allowed: Sequence[str], option: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{option} {value!r} is not one of {', '.join(allowed)}")
    return value


def resolve_device(device: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu (torch imported only for auto)."""
    from pipelines.core.device import auto_device_name

    return auto_device_name(_choice(device, DEVICES, "--device"))


# --------------------------------------------------------------------------- the rules

@dataclass(frozen=True)
class Effect:
    points: float
    reason: str | None = None  # shown in the "why" column; None: nothing worth saying


def modality_rule(entry, modality: str) -> bool:
    """An entry is a candidate for its own modality, and for both when it says "both"."""
    return entry.modality == modality or entry.modality == "both"


def quality(entry, modality: str) -> tuple[float, str]:
    """A transfer-quality figure in [0, 1] and how it was obtained.

    Images: ImageNet top-1, 70 % -> 0, 85 % -> 1. Audio: the catalog's `audioset_map`,
    0.25 -> 0, 0.45 -> 1; without one: an image network on
    log-mel 0.2, a weight-free feature 0.0, other pretrained audio nets 0.3.
    """
    if modality == "image":
        top1 = entry.imagenet_top1
        if top1 is None:
            return 0.3, "no ImageNet top-1 in the catalog"
        return _clip((top1 - TOP1_FLOOR) / (TOP1_CEILING - TOP1_FLOOR)), f"ImageNet top-1 {top1:g}%"
    if entry.audioset_map is not None:
        value = entry.audioset_map
        return _clip((value - MAP_FLOOR) / (MAP_CEILING - MAP_FLOOR)), f"AudioSet mAP {value:g}"
    if not entry.audio_model:
        return 0.2, "image network on log-mel images"
    if entry.offline_weights == "none":
        return 0.0, "no learned weights"
    return 0.3, "pretrained audio net (no AudioSet mAP in the catalog)"


def priority_rule(entry, c: Constraints) -> Effect:
    """Priority weights over quality, speed (speed_tier) and simplicity (a baseline family)."""
    w_quality, w_speed, w_simple = PRIORITY_WEIGHTS[c.priority]
    q, q_why = quality(entry, c.modality)
    speed = speed_score(entry, c)
    simple = 1.0 if entry.family.lower() in BASELINE_FAMILIES else 0.0
    points = w_quality * q + w_speed * speed + w_simple * simple
    parts = [f"{q_why}", f"{entry.speed_tier}"]
    if simple and w_simple:
        parts.append("the classic baseline")
    return Effect(points, f"{c.priority}: " + ", ".join(parts))


def speed_score(entry, c: Constraints) -> float:
    """1 for the cheapest models, 0 for 100× the reference cost, on a log scale of GFLOPs per item."""
    reference = SPEED_REFERENCE_GFLOPS[c.modality]
    flops = max(gflops_per_item(entry, c), 1e-6)
    return _clip(1.0 - math.log10(max(flops / reference, 1.0)) / 2.0)


def wanted_size_tier(n_items: int) -> str:
    return "small" if n_items < SMALL_DATA else "medium" if n_items <= LARGE_DATA else "large"


def domain_rule(entry, c: Constraints) -> Effect:
    """For sound, a network trained on audio (AudioSet) beats an ImageNet CNN on log-mel images
    and weight-free statistics at equal cost: in-domain pretraining is worth a nudge."""
    if c.modality == "audio" and entry.audio_model and entry.offline_weights != "none":
        return Effect(AUDIO_DOMAIN_POINTS, "trained on audio")
    return Effect(0.0)


def catalog_situation_rule(entry, c: Constraints) -> Effect:
    """The catalog's `good_for` names where an entry is the recommended pick: "general" (the
    general-purpose default of its modality) earns points everywhere, "cpu"/"gpu" on that device.
    Numbers alone would pick a specialist that edges the default on one figure (a Noisy-Student
    B4, a Wavegram PANN)."""
    points, why = 0.0, []
    if "general" in entry.good_for:
        points += CATALOG_DEFAULT_POINTS
        why.append("the catalog's general-purpose pick")
    if c.device in entry.good_for:
        points += CATALOG_DEVICE_POINTS
        why.append(f"the catalog's pick for {'CPU' if c.device == 'cpu' else 'a GPU'}")
    return Effect(points, ", ".join(why) or None)


def dataset_size_rule(entry, c: Constraints) -> Effect:
    """The catalog's size_tier is the dataset size an entry suits (< 10k items: small, 10k–100k:
    medium, > 100k: large); a match is a nudge, not a filter."""
    wanted = wanted_size_tier(c.n_items)
    if entry.size_tier not in SIZE_TIERS:
        return Effect(0.0)
    distance = abs(SIZE_TIERS.index(wanted) - SIZE_TIERS.index(entry.size_tier))
    points = SIZE_MATCH_POINTS[distance]
    if distance == 0:
        return Effect(points, f"suits {entry.size_tier} datasets like {c.n_items:,} items")
    if distance == 2:
        return Effect(points, f"made for {entry.size_tier} datasets, {c.n_items:,} items is {wanted}")
    return Effect(points)


def device_rule(entry, c: Constraints) -> Effect:
    """On CPU a slow model costs; on a GPU speed tiers matter little."""
    if c.device == "cpu" and entry.speed_tier == "slow":
        return Effect(CPU_SLOW_POINTS, "slow on CPU")
    return Effect(0.0)


def budget_rule(seconds: float | None, c: Constraints, source: str = ROUGH) -> Effect:
    """Over the budget: ranked below every candidate that fits, and says so; else headroom helps."""
    if c.time_budget_s is None or seconds is None:
        return Effect(0.0)
    budget = format_duration(c.time_budget_s)
    if seconds > c.time_budget_s:
        return Effect(OVER_BUDGET_POINTS, f"does not fit the {budget} budget: ~{format_duration(seconds)} ({source}) on {c.device}")
    used = seconds / c.time_budget_s
    return Effect(HEADROOM_POINTS * (1.0 - used), f"fits the {budget} budget ({used:.0%} of it)")


def deploy_rule(entry, c: Constraints) -> Effect:
    """edge/mobile: small and fast models (MobileNetV3, EfficientNet-Lite) first."""
    if c.deploy == "cloud":
        return Effect(0.0)
    points, why = 0.0, []
    # Model size in parameters (what a device must hold), not size_tier (a dataset size).
    if entry.params_m <= EDGE_SMALL_PARAMS_M and entry.speed_tier == "fast":
        points += EDGE_POINTS
        why.append(f"small ({entry.params_m:g}M params) and fast for {c.deploy}")
    elif entry.params_m > EDGE_HEAVY_PARAMS_M or entry.speed_tier == "slow":
        points -= EDGE_POINTS
        why.append(f"too heavy for {c.deploy} ({entry.params_m:g}M params, {entry.speed_tier})")
    family = entry.family.lower()
    if "mobilenet" in family or "lite" in family:
        points += MOBILE_FAMILY_POINTS
        why.append("built for phones")
    return Effect(points, ", ".join(why) or None)


def task_rule(entry, c: Constraints) -> Effect:
    """detection/segmentation: the families detectors and segmenters are built on."""
    if c.task == "classification" or c.modality != "image":
        return Effect(0.0)
    if entry.family.lower() in DENSE_TASK_FAMILIES:
        return Effect(DENSE_TASK_POINTS, f"{entry.family} is a common {c.task} backbone")
    return Effect(-DENSE_TASK_POINTS, f"{entry.family} is rarely a {c.task} backbone")


def score_entry(entry, c: Constraints, seconds: float | None, source: str = ROUGH) -> tuple[float, list[str]]:
    effects = [priority_rule(entry, c), domain_rule(entry, c), catalog_situation_rule(entry, c),
               dataset_size_rule(entry, c), device_rule(entry, c),
               budget_rule(seconds, c, source), deploy_rule(entry, c), task_rule(entry, c)]
    return sum(e.points for e in effects), [e.reason for e in effects if e.reason]


def task_note(c: Constraints) -> str | None:
    if c.task == "classification":
        return None
    families = "ResNet, ConvNeXt, EfficientNet or MobileNetV3"
    return (f"{c.task}: olymp extracts one global (pooled) embedding per file, not boxes or masks. Use a {families} "
            f"backbone inside a {'detector (Faster R-CNN, RetinaNet, FCOS)' if c.task == 'detection' else 'segmenter (U-Net, DeepLabV3, FPN)'} "
            "from torchvision, detectron2/mmdet or segmentation_models_pytorch; olymp embeddings help with image-level "
            "targets only (e.g. whether an object is present).")


# --------------------------------------------------------------------------- time

def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


def gflops_per_item(entry, c: Constraints) -> float:
    """Catalog GFLOPs are per image, or per 10 s clip for audio nets; an image net on audio
    embeds one log-mel image per 5 s window."""
    if c.modality == "audio" and not entry.audio_model:
        return entry.gflops * max(1.0, c.clip_seconds / LOGMEL_IMAGE_WINDOW_S)
    if c.modality == "audio":
        return entry.gflops * c.clip_seconds / 10.0
    return entry.gflops




def _per_item_seconds(forward_s: float, decode_s: float, c: Constraints) -> float:
    """Seconds per item when decoding (one core per item) and the forward share the machine.
    On CPU the decode workers and the model compete for the same cores, so their costs add
    (decode spread over the cores); on a GPU the workers decode while the GPU computes, so
    the slower of the two sets the pace."""
    decode_parallel = decode_s / max(1, c.cpu_cores) if c.device == "cpu" else decode_s / max(1, min(16, c.cpu_cores))
    return forward_s + decode_parallel if c.device == "cpu" else max(forward_s, decode_parallel)


def table_decode_seconds(c: Constraints) -> float:
    """Decode seconds per item on one core, from the device table."""
    if c.modality == "audio":
        return max(c.clip_seconds, 0.1) / AUDIO_DECODE_PER_CORE
    return 1.0 / IMAGE_DECODE_PER_CORE


def estimate_seconds(entry, c: Constraints) -> float:
    """Whole-extraction seconds from FLOPs and the device table ("rough (not measured)")."""
    compute = (CPU_GFLOPS_PER_CORE * c.cpu_cores) if c.device == "cpu" else CUDA_GFLOPS
    flops = gflops_per_item(entry, c)
    return STARTUP_SECONDS + c.n_items * _per_item_seconds(flops / compute, table_decode_seconds(c), c)


@dataclass
class Timing:
    """One candidate timed on this machine."""

    forward_s: float  # model seconds per item (after warm-up), random weights
    build_s: float  # building the model and the warm-up batches
    decode_s: float | None  # decode seconds per item on one core (the user's files); None: not measured

    def gflops_per_second(self, entry, c: Constraints) -> float:
        return gflops_per_item(entry, c) / max(self.forward_s, 1e-9)


def measure_decode_seconds(paths: Sequence[str], c: Constraints, data_config: dict | None = None,
                           sample_rate: int = 32000) -> float | None:
    """Seconds per item to decode the given files the way extract does (images: open, RGB,
    resize and crop for the model, `data_config` being the backbone's timm data config; audio:
    decode and resample the whole clip), on one core."""
    if not paths:
        return None
    started = time.perf_counter()
    if c.modality == "audio":
        from pipelines.extract.readers.audio import ClipStream

        for path in paths:
            try:
                for _ in ClipStream(path, sample_rate).blocks():
                    pass
            except Exception:  # noqa: BLE001 — a broken file costs its open; extract records it
                continue
    else:
        from pipelines.extract.config import DEFAULT_MAX_IMAGE_PIXELS
        from pipelines.extract.readers.image import decode_size, load_rgb, make_image_transform

        transform, min_side = make_image_transform(data_config), decode_size(data_config)
        for path in paths:
            try:
                transform(load_rgb(path, DEFAULT_MAX_IMAGE_PIXELS, min_side))
            except Exception:  # noqa: BLE001
                continue
    return (time.perf_counter() - started) / len(paths)


def measure_timing(entry, c: Constraints, decode_paths: Sequence[str] = (), warmup: int = 2, timed: int = 3) -> Timing:
    """Time `timed` batches (after `warmup`) of random input through the model built with random
    weights on this machine, and the decoding of `decode_paths` (a sample of the user's files)."""
    import torch

    from pipelines.core.device import resolve_device as torch_device

    device = torch_device(c.device)
    batch = 8 if device.type == "cpu" else 64
    began = time.perf_counter()
    data_config, sample_rate = None, 32000
    if c.modality == "audio":
        from pipelines.backbones.audio import load_audio_backbone

        backbone, _ = load_audio_backbone(backbone_argument(entry, c.modality), "random")
        model = backbone.model.to(device)
        seconds = min(c.clip_seconds, backbone.window_seconds) if backbone.window_seconds else c.clip_seconds
        inputs = torch.randn(batch, int(max(seconds, backbone.min_seconds) * backbone.sample_rate), device=device)
        windows = max(1.0, c.clip_seconds / max(seconds, 1e-3))
        forward, sample_rate = model, backbone.sample_rate
    else:
        from pipelines.backbones.registry import load_backbone

        loaded = load_backbone(entry.name, "random")
        model = loaded.model.to(device)
        data_config = loaded.data_config
        inputs = torch.randn(batch, *data_config["input_size"], device=device)
        windows = 1.0

        def forward(x):
            return model.forward_head(model.forward_features(x), pre_logits=True)

    with torch.inference_mode():
        for _ in range(warmup):
            forward(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        build_s = time.perf_counter() - began
        started = time.perf_counter()
        for _ in range(timed):
            forward(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        forward_s = (time.perf_counter() - started) / (timed * batch) * windows
    return Timing(forward_s, build_s, measure_decode_seconds(decode_paths, c, data_config, sample_rate))


def timing_seconds(timing: Timing, c: Constraints) -> float:
    """Whole-extraction seconds from a measured timing (decode from the table when not measured)."""
    decode_s = timing.decode_s if timing.decode_s is not None else table_decode_seconds(c)
    return STARTUP_SECONDS + timing.build_s + c.n_items * _per_item_seconds(timing.forward_s, decode_s, c)


def measure_seconds(entry, c: Constraints, warmup: int = 2, timed: int = 3, decode_paths: Sequence[str] = ()) -> float:
    """Whole-extraction seconds from `measure_timing` on this machine."""
    return timing_seconds(measure_timing(entry, c, decode_paths, warmup, timed), c)


def calibrated_seconds(entry, c: Constraints, timings: dict[str, tuple[Any, Timing]]) -> float:
    """An untimed candidate: its FLOPs at the speed this machine showed on the timed ones of
    its family (median GFLOP/s; all timed ones when none of its family was timed: depthwise
    EfficientNets run far fewer GFLOP/s than dense ResNets), with their measured decode and
    build costs."""
    import statistics

    same_family = [(e, t) for e, t in timings.values() if e.family == entry.family]
    rates = [t.gflops_per_second(e, c) for e, t in (same_family or timings.values())]
    decodes = [t.decode_s for _, t in timings.values() if t.decode_s is not None]
    forward_s = gflops_per_item(entry, c) / max(statistics.median(rates), 1e-9)
    decode_s = statistics.mean(decodes) if decodes else table_decode_seconds(c)
    build_s = statistics.median(t.build_s for _, t in timings.values())
    return STARTUP_SECONDS + build_s + c.n_items * _per_item_seconds(forward_s, decode_s, c)


def decode_sample(data_path: str | None, modality: str, size: int = DECODE_SAMPLE, seed: int = 0) -> list[str]:
    """A seeded sample of the user's files to time decoding on."""
    import random

    from pipelines.data.inputs import extensions_for, list_inputs

    if not data_path:
        return []
    items = list_inputs(data_path, extensions_for(modality))
    picked = items if len(items) <= size else random.Random(seed).sample(items, size)
    return [item.path for item in picked]


# --------------------------------------------------------------------------- weights

def weights_offline(entry) -> str:
    """Where this entry's weights would come from right now, without network: the short form of
    `olymp weights list` (pipelines.select.weights), so both commands look in the same places."""
    from pipelines.select.weights import AVAILABLE, MISSING, weights_status

    status = weights_status(entry)
    if status.state == AVAILABLE:
        return "none needed" if status.source == "none needed" else status.source.split()[0]  # package | hf-cache
    if status.state == MISSING and status.fix.startswith("pip install"):
        return status.fix
    if status.state == MISSING:
        return "needs pull"  # olymp weights pull NAME, while online
    return "needs --weights"


def backbone_argument(entry, modality: str) -> str:
    """What to pass as `olymp extract --backbone`."""
    if modality == "audio" and entry.audio_model:
        return entry.audio_model
    return entry.name


def extract_command(entry, data_path: str | None, modality: str, output_dir: str) -> str:
    data = data_path if data_path else "DATA_PATH"
    command = f"olymp extract {_quote(data)} -o {output_dir} --backbone {backbone_argument(entry, modality)}"
    return command + (" --modality audio" if modality == "audio" else "")


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# --------------------------------------------------------------------------- ranking

def constraints_from(config: RecommendConfig, probe) -> Constraints:
    """The probe's figures, each overridden by the option the user gave."""
    modality = config.modality or (probe.modality if probe is not None else None)
    n_items = config.n_items if config.n_items is not None else (probe.n_items if probe is not None else None)
    if modality is None or n_items is None:
        raise InputError("give DATA_PATH to probe, or both --modality and --n-items (e.g. --modality image --n-items 3000)")
    clip = probe.duration_mean_s if probe is not None and probe.duration_mean_s else 10.0
    return Constraints(
        modality=_choice(modality, MODALITIES, "--modality"),
        n_items=n_items,
        priority=_choice(config.priority, PRIORITIES, "--priority"),
        device=resolve_device(config.device),
        time_budget_s=parse_duration(config.time_budget) if config.time_budget else None,
        deploy=_choice(config.deploy, DEPLOYMENTS, "--deploy"),
        task=_choice(config.task, TASKS, "--task"),
        clip_seconds=clip,
        cpu_cores=available_cores(),
    )


def rank_candidates(entries: Sequence, c: Constraints, measured: dict[str, tuple[float, str]] | None = None
                    ) -> tuple[list[Candidate], list[str]]:
    """Candidates ranked best first (don't-use entries after all others), and notes for the rest.
    `measured`: name -> (seconds, time source) for the candidates timed (or calibrated) here;
    the others get the rough table estimate."""
    measured = measured or {}
    notes, ranked, avoided = [], [], []
    for entry in entries:
        if not modality_rule(entry, c.modality):
            continue
        if not entry.extractable:
            notes.append(f"{entry.name} (not extractable by olymp): {entry.when_to_use or entry.notes}")
            continue
        seconds, source = measured.get(entry.name) or (estimate_seconds(entry, c), ROUGH)
        score, reasons = score_entry(entry, c, seconds, source)
        fits = None if c.time_budget_s is None else seconds <= c.time_budget_s
        candidate = Candidate(entry, score, reasons, seconds, source, fits, weights_offline(entry), avoid=entry.avoid)
        if entry.avoid:
            candidate.reasons = [f"don't use: {entry.avoid}"] + reasons
            avoided.append(candidate)
        else:
            ranked.append(candidate)
    ranked.sort(key=lambda cand: (-cand.score, cand.estimated_seconds or 0.0, cand.name))
    avoided.sort(key=lambda cand: (-cand.score, cand.name))
    ordered = ranked + avoided
    for rank, candidate in enumerate(ordered, start=1):
        candidate.rank = rank
    return ordered, notes


def pull_gain(candidate: Candidate, best_available: Candidate | None, modality: str) -> str:
    """What pulling an unavailable candidate would buy over the best available one, from the
    catalog's accuracy fields: "+9.7 points ImageNet top-1 (84.5 vs 74.8)", or the AudioSet mAP."""
    entry = candidate.entry
    other = best_available.entry if best_available is not None else None
    if modality == "image" or not entry.audio_model:
        if entry.imagenet_top1 is not None and other is not None and other.imagenet_top1 is not None:
            gain = entry.imagenet_top1 - other.imagenet_top1
            return f"{gain:+.1f} points ImageNet top-1 ({entry.imagenet_top1:g} vs {other.imagenet_top1:g} for {other.name})"
        return f"ImageNet top-1 {entry.imagenet_top1:g}" if entry.imagenet_top1 is not None else "a higher rule score"
    if entry.audioset_map is not None:
        return f"trained on AudioSet (mAP {entry.audioset_map:g}); {other.name if other else 'the best available'} is not"
    return "a higher rule score"


def order_by_availability(ranked: list[Candidate], c: Constraints, show_all: bool, top: int) -> list[Candidate]:
    """The list shown: available candidates first (best score first, `top` of them), then the
    unavailable ones that outscore the best available (each with its pull note; all with
    `show_all`), then (with `show_all`) the don't-use entries. Ranks follow this order."""
    usable = [x for x in ranked if not x.avoid]
    available = [x for x in usable if x.available]
    unavailable = [x for x in usable if not x.available]
    best = available[0] if available else None
    for x in unavailable:
        if best is None or x.score > best.score:
            x.pull_note = f"better if you pull {x.name} while online (olymp weights pull {x.name}): {pull_gain(x, best, c.modality)}"
    if show_all:
        shown = available + unavailable + [x for x in ranked if x.avoid]
    else:
        better = [x for x in unavailable if x.pull_note]
        shown = available[:top] + better[:max(1, top // 2)] if available else unavailable[:top]
    for rank, candidate in enumerate(shown, start=1):
        candidate.rank = rank
    return shown


def recommend(config: RecommendConfig, on_progress: Callable[[str], None] | None = None) -> Recommendation:
    from pipelines.backbones.catalog import load_catalog
    from pipelines.select.probe import probe_data

    report = on_progress or (lambda message: None)
    if config.trial_labels and config.trial_from_folders:
        raise ConfigError("--labels-from-folders reads the classes from the folder names; drop --trial (or drop --labels-from-folders)")
    trial = bool(config.trial_labels or config.trial_from_folders)
    if trial and not config.data_path:
        raise InputError("--trial needs DATA_PATH: the labelled files to extract")
    probe = probe_data(config.data_path, config.modality or "auto") if config.data_path else None
    c = constraints_from(config, probe)
    entries = load_catalog(Path(config.catalog_path) if config.catalog_path else None)
    candidates, notes = rank_candidates(entries, c)
    if config.measure:
        paths = decode_sample(config.data_path, c.modality)
        source = MEASURED if paths else MEASURED_FORWARD
        timings = {}
        for candidate in [x for x in candidates if not x.avoid][: config.measure_top]:
            report(f"measuring {candidate.name} on {c.device}" + (f" (and decoding {len(paths)} of the files)" if paths else ""))
            timings[candidate.name] = (candidate.entry, measure_timing(candidate.entry, c, paths))
        measured = {name: (timing_seconds(timing, c), source) for name, (_, timing) in timings.items()}
        if timings:  # the rest: their FLOPs at the speed this machine just showed
            for candidate in candidates:
                if candidate.name not in measured:
                    measured[candidate.name] = (calibrated_seconds(candidate.entry, c, timings), CALIBRATED)
        candidates, notes = rank_candidates(entries, c, measured)
    hidden = [x for x in candidates if x.avoid]
    if hidden and not config.show_all:
        notes.append("don't use: " + "; ".join(f"{x.name} ({x.avoid})" for x in hidden) + " — shown with --all")
    note = task_note(c)
    if note:
        notes.insert(0, note)
    shown = order_by_availability(candidates, c, config.show_all, config.top)
    result = Recommendation(c, probe, shown, notes, ranked=candidates, entries=list(entries))
    usable = [x for x in candidates if not x.avoid]
    # The printed command must run as printed, offline: the best pick whose weights are here.
    top = next((x for x in usable if x.available), None)
    if top is not None:
        result.command = extract_command(top.entry, config.data_path, c.modality, config.output_dir)
        result.notes += [x.pull_note for x in shown if x.pull_note][:3]
        result.finetune = finetune_advice(top.entry, top.estimated_seconds, c, probe)
        if result.finetune is not None:
            result.finetune_hint = finetune_note(result.finetune, config.data_path)
    elif usable:
        result.command = extract_command(usable[0].entry, config.data_path, c.modality, config.output_dir)
        result.notes.append(f"no candidate's weights are on this machine; while online: olymp weights pull {usable[0].name}")
    return result

