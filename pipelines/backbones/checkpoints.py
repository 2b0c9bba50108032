"""Reading weights files safely and fitting them into a timm model."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file as load_safetensors

from pipelines.core.errors import WeightsError, first_line
from pipelines.core.hashing import file_sha256  # noqa: F401 - re-exported for the loaders

SAFETENSORS_SUFFIXES = (".safetensors",)
# Containers training scripts wrap a state dict in (timm train, Lightning, plain scripts).
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
# Key prefixes added by DataParallel/DDP, torch.compile and Lightning modules.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
EXAMPLES_IN_ERRORS = 3
RANDOM_WEIGHTS = "random"  # --weights value: a seeded random init, for tests and smoke runs
RANDOM_INIT_SEED = 0
RANDOM_SOURCE = "random init (meaningless embeddings: tests only)"  # weights_source for it


def is_random(weights: str | None) -> bool:
    return weights is not None and weights.strip().lower() == RANDOM_WEIGHTS


@contextmanager
def seeded_init():
    """Build a model inside this: `--weights random` must be the same network in every process
    (or a resumed smoke run mixes two random networks); the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        yield


@dataclass(frozen=True)
class FitResult:
    classifier_dropped: bool  # the checkpoint's classifier did not fit: the model now has none


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or torch (.pt/.pth/.bin) file, without unpickling code."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: pass an existing .safetensors/.pt/.pth file")
    try:
        if path.suffix.lower() in SAFETENSORS_SUFFIXES:
            loaded: Any = load_safetensors(str(path), device="cpu")
        else:
            # weights_only: a checkpoint is data; never run code a downloaded file carries.
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any reader failure means the same thing to the user
        raise WeightsError(
            f"cannot read weights file {path}: {first_line(err)}. Save a plain state_dict "
            "(torch.save(model.state_dict(), 'w.pt') or safetensors) and pass that"
        ) from err
    return _unwrap(loaded, path)


def strip_wrapper_prefixes(
    state: dict[str, torch.Tensor], model_keys: set[str], prefixes: tuple[str, ...] = WRAPPER_PREFIXES,
) -> dict[str, torch.Tensor]:
    """Drop prefixes like `module.` that every key carries but the model's keys do not."""
    changed = True
    while changed and state:
        changed = False
        for prefix in prefixes:
            if all(key.startswith(prefix) for key in state) and not all(k.startswith(prefix) for k in model_keys):
                state = {key.removeprefix(prefix): tensor for key, tensor in state.items()}
                changed = True
    return state


def fit_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> FitResult:
    """Load `state` strictly; a classifier of another size is dropped, anything else is an error."""
    state = strip_wrapper_prefixes(state, set(model.state_dict()))
    problems = key_problems(model.state_dict(), state)
    if problems.none:
        model.load_state_dict(state, strict=True)
        return FitResult(classifier_dropped=False)
    classifier_prefixes = _classifier_prefixes(model)
    if classifier_prefixes and problems.only_under(classifier_prefixes):
        # e.g. fine-tuned for another class count: the body is what embeddings need.
        model.reset_classifier(0)
        body = {key: tensor for key, tensor in state.items() if not key.startswith(classifier_prefixes)}
        remaining = key_problems(model.state_dict(), body)
        if remaining.none:
            model.load_state_dict(body, strict=True)
            return FitResult(classifier_dropped=True)
        problems = remaining
    raise WeightsError(
        f"{origin} does not fit timm architecture {_architecture(model)!r}: {problems.describe()}. "
        "Pass the --backbone the checkpoint was trained with, or re-save its state_dict from that model"
    )


@dataclass(frozen=True)
class KeyProblems:
    """How a checkpoint's keys and shapes differ from a model's (`key_problems`)."""

    missing: list[str]  # in the model, not in the checkpoint
    unexpected: list[str]  # in the checkpoint, not in the model
    mismatched: dict[str, str]  # in both with other shapes: key -> "(checkpoint shape) vs (model shape)"

    @property
    def none(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def only_under(self, prefixes: tuple[str, ...]) -> bool:
        return all(key.startswith(prefixes) for key in [*self.missing, *self.unexpected, *self.mismatched])

    def describe(self) -> str:
        shapes = [f"{key} {shapes}" for key, shapes in self.mismatched.items()]
        groups = (("missing", self.missing), ("unexpected", self.unexpected), ("with other shapes", shapes))
        return "; ".join(
            f"{len(keys)} {label} (e.g. {', '.join(keys[:EXAMPLES_IN_ERRORS])})" for label, keys in groups if keys
        )


def key_problems(model_state: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> KeyProblems:
    return KeyProblems(
        missing=[key for key in model_state if key not in state],
        unexpected=[key for key in state if key not in model_state],
        mismatched={
            key: f"{tuple(state[key].shape)} vs {tuple(expected.shape)}"
            for key, expected in model_state.items()
            if key in state and state[key].shape != expected.shape
        },
    )


def _classifier_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier module(s) timm names in the model's pretrained cfg."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier")
    if not names:
        return ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{name}." for name in names)


def _unwrap(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(loaded, Mapping) and not _is_state_dict(loaded):
        inner = next((loaded[key] for key in WRAPPER_KEYS if isinstance(loaded.get(key), Mapping)), None)
        if inner is None:
            break
        loaded = inner
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"weights file {path} holds a {type(loaded).__name__}, not a state_dict of tensors")
    tensors = {str(key): value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"weights file {path} holds no tensors (keys: {', '.join(map(str, list(loaded)[:5]))})")
    return tensors


def _is_state_dict(mapping: Mapping[Any, Any]) -> bool:
    return any(isinstance(value, torch.Tensor) for value in mapping.values())


def _architecture(model: torch.nn.Module) -> str:
    return getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
