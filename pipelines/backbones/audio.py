"""`load_audio_backbone`: a name → a waveform-in, embedding-out AudioBackbone, offline.

Names: PANNs (`panns-cnn14`, `panns-cnn10`, `panns-cnn6`, `panns-resnet22`,
`panns-wavegram-logmel-cnn14`), `vggish`, `yamnet`, `crepe`, `crepe-tiny`, `logmel-stats`, or
any timm image backbone, which then embeds log-mel "images" (`efficientnet_lite0`, `resnet18`).
"""

from __future__ import annotations

from pipelines.backbones.audio_base import AudioBackbone
from pipelines.core.errors import WeightsError

DEFAULT_AUDIO_BACKBONE = "panns-cnn14"
FALLBACK_AUDIO_BACKBONE = "efficientnet_lite0"  # ships with olymp: works with no download


def load_audio_backbone(name: str | None, weights: str | None = None) -> tuple[AudioBackbone, str | None]:
    """The backbone, and why it was chosen when the user named none."""
    if name is None:
        return default_audio_backbone(weights)
    key = name.strip().lower()
    if key.startswith("panns-") or key in _panns_short_names():
        from pipelines.backbones.panns import load_panns

        return load_panns(key, weights), None
    if key == "vggish":
        from pipelines.backbones.vggish import load_vggish

        return load_vggish(weights), None
    if key == "yamnet":
        from pipelines.backbones.yamnet import load_yamnet

        return load_yamnet(weights), None
    if key in ("crepe", "crepe-full", "crepe-tiny"):
        from pipelines.backbones.crepe import load_crepe

        return load_crepe("tiny" if key.endswith("tiny") else "full"), None
    if key == "logmel-stats":
        from pipelines.backbones.logmel import load_logmel_stats

        return load_logmel_stats(), None
    from pipelines.backbones.logmel import load_logmel_image

    return load_logmel_image(name, weights), None


def default_audio_backbone(weights: str | None) -> tuple[AudioBackbone, str]:
    """PANNs Cnn14 when its weights are on disk; else the packaged Lite0 on log-mel images
    (measured on real environmental sounds it beats log-mel statistics by several points)."""
    from pipelines.backbones.logmel import load_logmel_image
    from pipelines.backbones.panns import load_panns

    try:
        return load_panns(DEFAULT_AUDIO_BACKBONE, weights), "default: PANNs Cnn14 weights found offline"
    except WeightsError:
        if weights is not None:  # the user's file did not fit Cnn14: say so rather than switch
            raise
        reason = (f"default audio backbone: PANNs Cnn14 weights are not on disk, so the packaged "
                  f"{FALLBACK_AUDIO_BACKBONE} on log-mel images (for Cnn14: olymp weights pull panns-cnn14 "
                  f"while online, or --backbone panns-cnn14 --weights Cnn14_mAP=0.431.pth)")
        return load_logmel_image(FALLBACK_AUDIO_BACKBONE, None), reason


def _panns_short_names() -> set[str]:
    return {"cnn14", "cnn10", "cnn6", "resnet22", "wavegram-logmel-cnn14", "wavegram_logmel_cnn14"}
