"""Audio backbones: a name -> a waveform-in, embedding-out AudioBackbone, offline.

Every olymp audio backbone is one catalog entry (configs/backbones.toml: loader, sample rate,
window, width, HF repo or package); any timm image backbone embeds log-mel "images" instead
(`efficientnet_lite0`, `resnet18`). The networks, one module each, register their builders:

    base.py       AudioBackbone, AudioSpec (a catalog entry, as the builder reads it), the
                  builder table (@register_network) and build_audio_backbone
    frontends.py  the shared log-mel front ends (LogMel: PANNs and log-mel images; AudioSet: VGGish, YAMNet)
    panns.py  vggish.py  yamnet.py  crepe.py  logmel.py (logmel-stats and the log-mel image route)

Adding an audio backbone: one [[backbone]] entry in configs/backbones.toml, plus its network
module (registering its `loader` key, imported below) when the network is new.
"""

from __future__ import annotations

from pipelines.backbones.catalog import catalog_defaults, find_entry
from pipelines.core.errors import WeightsError

__all__ = ["audio_backbone_names", "default_audio_backbone", "describe_default_audio", "load_audio_backbone",
           "registered_networks", "resolve_audio_name"]


def load_audio_backbone(name: str | None, weights: str | None = None):
    """(AudioBackbone, why it was chosen when the user named none)."""
    if name is None:
        return default_audio_backbone(weights)
    return _build(name, weights), None


def default_audio_backbone(weights: str | None):
    """The catalog's default audio backbone when its weights are on disk; else its audio fallback,
    which needs no download (measured on real environmental sounds, Lite0 on log-mel images beats
    log-mel statistics by several points)."""
    defaults = catalog_defaults()
    audio = find_entry(defaults.audio)
    try:
        return _build(audio.name, weights), f"default: {audio.label} weights found offline"
    except WeightsError:
        if weights is not None:  # the user's file did not fit the default: say so rather than switch
            raise
        reason = (f"default audio backbone: {audio.label} weights are not on disk, so the packaged "
                  f"{defaults.audio_fallback} on log-mel images (for {audio.label}: olymp weights pull {audio.name} "
                  f"while online, or --backbone {audio.name} --weights FILE)")
        return _build(defaults.audio_fallback, None), reason


def describe_default_audio() -> str:
    """The default audio choice in words, without building anything."""
    defaults = catalog_defaults()
    return (f"default audio backbone ({find_entry(defaults.audio).label} if its weights are on disk, "
            f"else {find_entry(defaults.audio_fallback).label} on log-mel)")


def resolve_audio_name(name: str) -> str:
    """What `name` builds for audio, without building it: the catalog's audio entry, or
    "<timm name> on log-mel images" (WeightsError, with suggestions, for an unknown name)."""
    from pipelines.backbones.audio.base import audio_entry

    entry = audio_entry(name)
    if entry is not None:
        return entry.name
    from pipelines.backbones.names import resolve_name

    return f"{resolve_name(name).timm_name} on log-mel images"


def audio_backbone_names() -> list[str]:
    """The catalog's olymp audio backbones, in catalog order."""
    from pipelines.backbones.catalog import load_catalog

    return [entry.name for entry in load_catalog() if entry.audio_model]


def registered_networks() -> dict:
    """loader key -> network builder, after importing every network module (they register on import)."""
    from pipelines.backbones.audio import crepe, logmel, panns, vggish, yamnet  # noqa: F401
    from pipelines.backbones.audio.base import NETWORKS

    return NETWORKS


def _build(name: str, weights: str | None):
    from pipelines.backbones.audio import logmel
    from pipelines.backbones.audio.base import AudioSpec, audio_entry, build_audio_backbone
    from pipelines.backbones.finetuned import is_network_dir, read_meta

    registered_networks()
    entry = audio_entry(name) or find_entry(name)
    if entry is not None and (entry.audio_model or entry.modality == "both"):
        return build_audio_backbone(AudioSpec.from_entry(entry, name), weights)
    # Any other timm image model on log-mel images, with the route's own sample rate and window;
    # a fine-tuned network folder (RUN_DIR/fold-K) with the window it trained on.
    window = logmel.IMAGE_WINDOW_SECONDS
    if is_network_dir(name):
        audio = read_meta(name).audio
        if audio is not None:
            window = audio.window_seconds
    spec = AudioSpec(name=name, entry="", loader="logmel.image", sample_rate=logmel.SAMPLE_RATE,
                     window_seconds=window, embedding_dim=0, timm_name=name)
    return build_audio_backbone(spec, weights)
