"""A fold's fine-tuned network on disk: RUN_DIR/fold-K/network.safetensors + network.json.

- network.safetensors: the whole timm model's state_dict (backbone + new classifier), contiguous
  tensors, written atomically with safetensors (never a pickle).
- network.json: `NetworkMeta` — how to rebuild the architecture (`timm_name`, `num_classes`), how
  to feed it (`data_config` for images, `audio` for the log-mel front end), the label order of its
  outputs (`classes`) and whether `predict --tta hflip` is allowed (`hflip_tta_ok`).

Typical use:

    model, meta = load_network("run/fold-0")                  # eval mode, on CPU
    batch = eval_transform(meta)(image).unsqueeze(0)          # images
    batch = audio_frontend(meta, model).images(waveforms)     # audio (pipelines/finetune/frontend.py)
    probabilities = model(batch).softmax(dim=1)               # columns in meta.classes order
    embedding = pre_logits(model, batch)                      # what `extract --backbone run/fold-0` writes

`extract --backbone RUN_DIR/fold-K` reaches `as_backbone` through one check in
pipelines/backbones/registry.py's load_backbone. The registry imports this module, so it never
imports the registry (nor logmel, which imports it): the log-mel front end of audio networks lives
in pipelines/finetune/frontend.py. The finetune run directory around these folders is
pipelines/train/finetunedir.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pipelines.core.errors import InputError, MismatchError, WeightsError, first_line
from pipelines.core.io import write_atomic, write_text_atomic
from pipelines.core.hashing import file_sha256

NETWORK_FORMAT = "olymp-finetuned-network/1"
NETWORK_WEIGHTS = "network.safetensors"
NETWORK_META = "network.json"
TASKS = ("multiclass", "binary")
MODALITIES = ("image", "audio")
DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
AUDIO_ROUTE = "logmel-image"


@dataclass
class AudioFrontEnd:
    """How a clip becomes the network's input (extract's log-mel image route, pipelines/backbones/audio/logmel.py)."""

    route: str = AUDIO_ROUTE  # only "logmel-image": waveform window -> log-mel dB image -> the CNN
    sample_rate: int = 32000  # clips are resampled to this rate (Hz)
    window_seconds: float = 5.0  # each window of this length is one input; a clip's windows are averaged
    min_seconds: float = 0.1  # shorter clips are recorded as errors
    n_mels: int = 128  # mel bands (image height before the resize)
    n_fft: int = 1024  # STFT size (periodic Hann window of the same length)
    hop_length: int = 320  # STFT hop in samples
    f_min: float = 50.0  # lowest mel edge (Hz)
    f_max: float = 14000.0  # highest mel edge (Hz)
    top_db: float = 80.0  # dB range kept below each window's maximum before min-max scaling

    def __post_init__(self) -> None:
        if self.route != AUDIO_ROUTE:
            raise InputError(f"network.json audio.route {self.route!r} is not {AUDIO_ROUTE!r}: retrain with this olymp")
        for name in ("sample_rate", "n_mels", "n_fft", "hop_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"network.json audio.{name} must be a positive integer, got {value!r}")
        for name in ("window_seconds", "min_seconds", "top_db", "f_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise InputError(f"network.json audio.{name} must be a positive number, got {value!r}")

    @classmethod
    def from_dict(cls, data: Any) -> "AudioFrontEnd":
        if not isinstance(data, dict):
            raise InputError(f"network.json audio must be an object or null, got {type(data).__name__}")
        return cls(**_known_keys(data, cls, "network.json audio"))


@dataclass
class NetworkMeta:
    """network.json: everything needed to rebuild, feed and read a fold's fine-tuned network."""

    backbone: str  # the catalog/timm name the user asked for (e.g. "efficientnet_lite0")
    timm_name: str  # timm.create_model(timm_name, pretrained=False, num_classes=num_classes) rebuilds it
    num_classes: int  # width of the classifier output
    classes: list[str]  # label of each output column, in order
    task: str  # "multiclass" | "binary"
    modality: str  # "image" | "audio"
    data_config: dict[str, Any]  # timm eval preprocessing at the training resolution (input_size [3, H, W], ...)
    audio: AudioFrontEnd | None  # None for images; the log-mel front end for audio
    hflip_tta_ok: bool  # trained with horizontal flips: `predict --tta hflip` is allowed
    fold: int  # which fold of the run this network was trained on (its validation part is that fold)
    best_epoch: int  # epoch restored by early stopping (1-based)
    train_layers: str | int  # "all", or the number of top blocks trained
    format: str = NETWORK_FORMAT  # file format version

    def __post_init__(self) -> None:
        where = "network.json"
        if self.format != NETWORK_FORMAT:
            raise InputError(f"{where} format {self.format!r} is not {NETWORK_FORMAT!r}: retrain with this olymp version")
        if not isinstance(self.timm_name, str) or not self.timm_name or self.timm_name.startswith("local-dir:"):
            raise InputError(f"{where} timm_name must be a timm architecture name, got {self.timm_name!r}")
        if not isinstance(self.backbone, str) or not self.backbone:
            raise InputError(f"{where} backbone must be a non-empty name, got {self.backbone!r}")
        if self.task not in TASKS:
            raise InputError(f"{where} task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.modality not in MODALITIES:
            raise InputError(f"{where} modality {self.modality!r} is not one of {', '.join(MODALITIES)}")
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 1:
            raise InputError(f"{where} num_classes must be a positive integer, got {self.num_classes!r}")
        if not isinstance(self.classes, list) or len(self.classes) < 2:
            raise InputError(f"{where} classes must list at least two labels, got {self.classes!r}")
        self.classes = [str(label) for label in self.classes]
        if len(set(self.classes)) != len(self.classes):
            raise InputError(f"{where} classes has repeated labels: {self.classes}")
        expected_outputs = (len(self.classes),) if self.task == "multiclass" else (1, 2)
        if self.num_classes not in expected_outputs:
            raise InputError(
                f"{where} num_classes {self.num_classes} does not fit {len(self.classes)} {self.task} classes"
            )
        self.data_config = _check_data_config(self.data_config, where)
        if isinstance(self.audio, dict):
            self.audio = AudioFrontEnd.from_dict(self.audio)
        if (self.modality == "audio") != (self.audio is not None):
            raise InputError(f"{where}: audio front end must be given exactly when modality is 'audio'")
        if not isinstance(self.hflip_tta_ok, bool):
            raise InputError(f"{where} hflip_tta_ok must be true or false, got {self.hflip_tta_ok!r}")
        for name in ("fold", "best_epoch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"{where} {name} must be a non-negative integer, got {value!r}")
        layers = self.train_layers
        if not (layers == "all" or (isinstance(layers, int) and not isinstance(layers, bool) and layers >= 1)):
            raise InputError(f"{where} train_layers must be 'all' or a positive integer, got {layers!r}")

    def to_json(self) -> str:
        data = asdict(self)
        data["data_config"] = {key: list(value) if isinstance(value, tuple) else value
                               for key, value in self.data_config.items()}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "NetworkMeta":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise InputError(f"network.json is not valid JSON ({first_line(err)}): re-run olymp finetune for that fold") from None
        if not isinstance(data, dict):
            raise InputError("network.json must hold a JSON object: re-run olymp finetune for that fold")
        return cls(**_known_keys(data, cls, "network.json", required=True))


def _known_keys(data: dict, cls, where: str, required: bool = False) -> dict:
    names = {item.name for item in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{where} has unknown keys {', '.join(unknown)}: it was written by another olymp version")
    if required:
        missing = [item.name for item in fields(cls) if item.name not in data and item.name != "format"]
        if missing:
            raise InputError(f"{where} lacks {', '.join(missing)}: re-run olymp finetune for that fold")
    return dict(data)


def _check_data_config(config: Any, where: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise InputError(f"{where} data_config must be an object, got {type(config).__name__}")
    unknown = sorted(set(config) - set(DATA_CONFIG_KEYS))
    if unknown:
        raise InputError(f"{where} data_config has unknown keys {', '.join(unknown)}")
    size = config.get("input_size")
    if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
        raise InputError(f"{where} data_config.input_size must be [channels, height, width], got {size!r}")
    for key in ("mean", "std"):
        if not isinstance(config.get(key), (list, tuple)) or not config[key]:
            raise InputError(f"{where} data_config.{key} must be a list of numbers, got {config.get(key)!r}")
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()}


def is_network_dir(path: str | Path) -> bool:
    """True when `path` is a folder holding network.json (a fold of a finetune run)."""
    path = Path(path)
    return path.is_dir() and (path / NETWORK_META).is_file()


def build_model(meta: NetworkMeta):
    """The architecture of `meta` with random weights (never downloads)."""
    import timm

    try:
        return timm.create_model(meta.timm_name, pretrained=False, num_classes=meta.num_classes)
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        raise WeightsError(f"timm cannot build {meta.timm_name!r} from network.json: {first_line(err)}") from err


def save_network(folder: str | Path, model, meta: NetworkMeta) -> None:
    """Write the model's state_dict (safetensors) and meta (JSON), each atomically; weights first,
    so a folder with network.json always has its weights."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().to("cpu").contiguous() for key, tensor in model.state_dict().items()}
    write_atomic(folder / NETWORK_WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": NETWORK_FORMAT}))
    write_text_atomic(folder / NETWORK_META, meta.to_json())


def read_meta(folder: str | Path) -> NetworkMeta:
    folder = Path(folder)
    path = folder / NETWORK_META
    if not path.is_file():
        raise InputError(f"{folder} is not a fine-tuned network folder (no {NETWORK_META}): pass RUN_DIR/fold-K of an olymp finetune run")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {path}: {first_line(err)}") from None
    try:
        return NetworkMeta.from_json(text)
    except TypeError as err:  # a field of the wrong shape reached the dataclass
        raise InputError(f"{path} is malformed ({first_line(err)}): re-run olymp finetune for that fold") from None
    except InputError as err:
        raise InputError(f"{path}: {err}") from None


def load_network(folder: str | Path, device: str = "cpu"):
    """(model in eval mode on `device`, meta) from a network folder; safetensors only, never unpickles."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = read_meta(folder)
    weights = folder / NETWORK_WEIGHTS
    if not weights.is_file():
        raise WeightsError(f"{folder} has {NETWORK_META} but no {NETWORK_WEIGHTS}: re-run olymp finetune for that fold")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as err:  # any safetensors failure means a damaged file to the user
        raise WeightsError(f"cannot read {weights} ({first_line(err)}): the file is damaged; re-run olymp finetune for that fold") from None
    model = build_model(meta)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise MismatchError(
            f"{weights} does not fit {meta.timm_name} with {meta.num_classes} outputs "
            f"({first_line(err)}): re-run olymp finetune for that fold"
        ) from None
    return model.to(device).eval(), meta


def network_fingerprint(folder: str | Path) -> str:
    """SHA-256 over the weights and meta files: what extract records as the network's identity."""
    import hashlib

    folder = Path(folder)
    digest = hashlib.sha256()
    for name in (NETWORK_WEIGHTS, NETWORK_META):
        digest.update(f"{name}\0{file_sha256(folder / name)}\n".encode())
    return digest.hexdigest()


def eval_transform(meta: NetworkMeta):
    """PIL.Image -> normalized (C, H, W) tensor, timm's eval transform at the training resolution."""
    from timm.data import create_transform

    return create_transform(**meta.data_config, is_training=False)


def pre_logits(model, images):
    """The fine-tuned network's pooled pre-logits for a normalized batch (extract's embedding)."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


def check_linear_head(model, meta: NetworkMeta) -> None:
    """Refuse a network whose logits are not `get_classifier()(pre_logits)`: predict averages
    pre-logits over views/windows and applies the classifier to them."""
    import torch

    blank = torch.randn(2, *meta.data_config["input_size"], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        direct = model(blank)
        through = model.get_classifier()(pre_logits(model, blank))
    if direct.shape != through.shape or not torch.allclose(direct, through, atol=1e-4, rtol=1e-4):
        raise MismatchError(f"{meta.timm_name}'s logits are not its classifier applied to its pre-logits; "
                            "olymp predict cannot run it: fine-tune another backbone")


def classify(model, embeddings):
    """(N, D) pre-logits (numpy or tensor) -> (N, K) float64 class probabilities (softmax; binary
    networks with one output: [1 - p, p])."""
    import numpy as np
    import torch

    classifier = model.get_classifier()
    with torch.inference_mode():
        features = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        logits = classifier(features.to(next(classifier.parameters()).device)).float().cpu()
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], dim=1).double().numpy()
    return logits.softmax(dim=1).double().numpy()


AUDIO_DEFAULT_ONLY = ("route", "n_mels", "n_fft", "hop_length", "f_min", "f_max", "top_db", "sample_rate")


def as_backbone(folder: str | Path, weights: str | None = None):
    """A network folder as a LoadedBackbone embedding its pre-logits (`extract --backbone RUN_DIR/fold-K`).

    Its weights_sha256 is `network_fingerprint`, so an extraction's resume and predict's
    fingerprint checks tell two networks (or a retrained fold) apart."""
    from pipelines.backbones.timm_backbone import LoadedBackbone, measure_embedding_dim

    if weights is not None:
        raise InputError(f"--backbone {folder} is a fine-tuned network with its own weights; drop --weights {weights}")
    model, meta = load_network(folder)
    if meta.audio is not None:
        default = AudioFrontEnd()
        differ = [name for name in AUDIO_DEFAULT_ONLY if getattr(meta.audio, name) != getattr(default, name)]
        if differ:
            raise MismatchError(
                f"{folder} was trained on a log-mel front end with other {', '.join(differ)} than extract's "
                "log-mel image route; use olymp predict on this run instead of extract"
            )
    data_config = dict(meta.data_config)
    return LoadedBackbone(
        name=str(folder),
        timm_name=meta.timm_name,
        model=model,
        data_config=data_config,
        embedding_dim=measure_embedding_dim(model, data_config),
        weights_source=(f"fine-tuned network {folder} ({meta.backbone}, fold {meta.fold}, "
                        f"epoch {meta.best_epoch}, train_layers {meta.train_layers})"),
        weights_sha256=network_fingerprint(folder),
    )
