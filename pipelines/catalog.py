"""The backbone catalog (`configs/backbones.toml`) as typed, frozen entries.

The catalog gives short names, the Hugging Face ids contestants know, offline weight
sources and ranking figures to models that are otherwise plain timm architectures.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import MISSING, dataclass, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError

CATALOG_RESOURCE = "backbones.toml"  # inside the `configs` package
MODALITIES = ("image",)  # audio and text entries come later


@dataclass(frozen=True)
class PackagePreprocess:
    """Preprocessing that overrides timm's default config when the weights come from a package."""

    mean: tuple[float, float, float] | None = None  # per-channel mean of inputs scaled to [0, 1]
    std: tuple[float, float, float] | None = None  # per-channel std, same scale
    interpolation: str | None = None  # resize filter: "bicubic", "bilinear", ...
    crop_pct: float | None = None  # centre crop share of the resized image (0.875 = resize 256, crop 224)

    def as_overrides(self) -> dict[str, Any]:
        """The set fields, under timm data-config key names."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class BackboneEntry:
    name: str  # short name for `--backbone`; shadows a timm model of the same name
    family: str  # architecture family, for grouping and `recommend`
    modality: str  # input kind: "image" (audio/text later)
    timm_name: str  # exact timm architecture built by timm.create_model
    embedding_dim: int  # width of the pooled pre-logits (tests check it against a forward pass)
    input_size: int  # square side, in pixels, the weights were evaluated at
    params_m: float  # parameters in millions, classifier included
    offline_weights: str  # where weights come from without network: "package:<pip name>" or "hf-cache"
    hf_ids: tuple[str, ...] = ()  # HF ids that resolve to this entry; the timm/ ones are looked up in the cache
    notes: str = ""  # one line for listings: what the model is good for
    package_preprocess: PackagePreprocess | None = None  # verified preprocessing for the package weights

    @property
    def weights_package(self) -> str | None:
        """The pip distribution shipping this entry's weights, if any."""
        prefix = "package:"
        return self.offline_weights.removeprefix(prefix) if self.offline_weights.startswith(prefix) else None


def load_catalog(path: Path | None = None) -> list[BackboneEntry]:
    """All catalog entries, in file order (`path` only for tests: defaults to the packaged file)."""
    if path is None:
        return list(_packaged_catalog())
    return list(_read_catalog(path.read_bytes(), str(path)))


def find_entry(name: str) -> BackboneEntry | None:
    """The entry whose name or one of whose HF ids is `name` (case-insensitive), or None."""
    wanted = name.strip().casefold()
    for entry in _packaged_catalog():
        if wanted == entry.name.casefold() or wanted in (hf_id.casefold() for hf_id in entry.hf_ids):
            return entry
    return None


@functools.cache
def _packaged_catalog() -> tuple[BackboneEntry, ...]:
    resource = files("configs") / CATALOG_RESOURCE
    return _read_catalog(resource.read_bytes(), f"configs/{CATALOG_RESOURCE}")


def _read_catalog(raw: bytes, origin: str) -> tuple[BackboneEntry, ...]:
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{origin}: not valid TOML ({err})") from err
    _reject_unknown_keys(document, {"backbone"}, origin)
    tables = document.get("backbone", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{origin}: `backbone` must be an array of tables: write [[backbone]]")
    entries = tuple(_parse_entry(table, f"{origin} [[backbone]] #{i + 1}") for i, table in enumerate(tables))
    _reject_duplicate_names(entries, origin)
    return entries


def _parse_entry(table: dict[str, Any], where: str) -> BackboneEntry:
    name = table.get("name")
    if isinstance(name, str):
        where = f"{where} ({name})"
    _reject_unknown_keys(table, _field_names(BackboneEntry), where)
    _require_keys(table, BackboneEntry, where)
    entry = BackboneEntry(
        name=_typed(table, "name", str, where),
        family=_typed(table, "family", str, where),
        modality=_typed(table, "modality", str, where),
        timm_name=_typed(table, "timm_name", str, where),
        embedding_dim=_typed(table, "embedding_dim", int, where),
        input_size=_typed(table, "input_size", int, where),
        params_m=float(_typed(table, "params_m", (int, float), where)),
        offline_weights=_typed(table, "offline_weights", str, where),
        hf_ids=tuple(_string_list(table, "hf_ids", where)),
        notes=_typed(table, "notes", str, where, default=""),
        package_preprocess=_parse_preprocess(table.get("package_preprocess"), f"{where} package_preprocess"),
    )
    if entry.modality not in MODALITIES:
        raise ConfigError(f"{where}: modality {entry.modality!r} is not one of {', '.join(MODALITIES)}")
    if entry.offline_weights != "hf-cache" and not entry.weights_package:
        raise ConfigError(f'{where}: offline_weights must be "hf-cache" or "package:<pip name>"')
    return entry


def _parse_preprocess(table: Any, where: str) -> PackagePreprocess | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table ([backbone.package_preprocess])")
    _reject_unknown_keys(table, _field_names(PackagePreprocess), where)
    return PackagePreprocess(
        mean=_rgb_triple(table, "mean", where),
        std=_rgb_triple(table, "std", where),
        interpolation=_typed(table, "interpolation", str, where, default=None),
        crop_pct=_optional_float(table, "crop_pct", where),
    )


# --- small validators: each error names the key and the file position


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _reject_unknown_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}"
            + (f" (and {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else "")
            + f"; allowed keys: {', '.join(sorted(allowed))}"
        )


def _require_keys(table: dict[str, Any], cls: type, where: str) -> None:
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [key for key in required if key not in table]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")


_REQUIRED: Any = object()  # sentinel: the key has no default


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = _REQUIRED) -> Any:
    if key not in table and default is not _REQUIRED:
        return default
    value = table[key]
    # bool is an int in Python; `embedding_dim = true` is still a mistake.
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: {key} must be {expected}, got {value!r}")
    return value


def _string_list(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: {key} must be a list of strings, got {value!r}")
    return value


def _rgb_triple(table: dict[str, Any], key: str, where: str) -> tuple[float, float, float] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) for v in value):
        raise ConfigError(f"{where}: {key} must be three numbers [r, g, b], got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _optional_float(table: dict[str, Any], key: str, where: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if not _is_number(value):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reject_duplicate_names(entries: tuple[BackboneEntry, ...], origin: str) -> None:
    seen: dict[str, str] = {}
    for entry in entries:
        for key in (entry.name, *entry.hf_ids):
            folded = key.casefold()
            if folded in seen:
                raise ConfigError(f"{origin}: {key!r} is used by both {seen[folded]!r} and {entry.name!r}")
            seen[folded] = entry.name
