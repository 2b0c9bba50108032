"""The input of an audio network: extract's log-mel image route (pipelines/backbones/audio/logmel.py)
with the parameters network.json records, so training, predict and extract feed it the same images.

    front = audio_frontend(meta, model)      # a logmel.LogMelImage wrapping the network
    images = front.images(waveforms)         # (B, samples) at meta.audio.sample_rate -> (B, C, H, W)
    logits = model(images)

Kept out of network.py: logmel imports the backbone registry, which imports network.py lazily.
"""

from __future__ import annotations

from pipelines.core.errors import MismatchError
from pipelines.backbones.finetuned import NetworkMeta


def audio_frontend(meta: NetworkMeta, model):
    """The log-mel image front end of an audio network, wrapping `model`: `.images(waveforms)`
    gives the (B, C, H, W) input the network was trained on; calling it gives pre-logits."""
    from pipelines.backbones.audio import frontends, logmel

    if meta.audio is None:
        raise MismatchError(f"network {meta.backbone} (fold {meta.fold}) is an image network, not audio")
    audio = meta.audio
    if audio.top_db != logmel.IMAGE_TOP_DB:
        raise MismatchError(f"network.json audio.top_db {audio.top_db} differs from this olymp's {logmel.IMAGE_TOP_DB}")
    config = meta.data_config
    front = logmel.LogMelImage(model, tuple(config["input_size"]), tuple(config["mean"]), tuple(config["std"]),
                               n_mels=audio.n_mels)
    front.logmel = frontends.LogMel(audio.n_mels, audio.sample_rate, audio.n_fft, audio.hop_length, audio.f_min, audio.f_max)
    return front.eval()
