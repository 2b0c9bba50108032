"""Image backbones for `olymp extract`: timm models with offline weights and their preprocessing.

Typical use:

    backbone = load_backbone("efficientnet_lite0")        # offline default, weights from a pip package
    batch = timm.data.create_transform(**backbone.data_config)(image).unsqueeze(0)
    embeddings = backbone.embed(batch)                    # (1, backbone.embedding_dim)

Audio backbones live in `pipelines.backbones.audio` (`load_audio_backbone`); every backbone,
image or audio, is one entry of the catalog (`catalog.py`, configs/backbones.toml).

The names below are imported on first use: `olymp weights list` and `olymp recommend` only read
the catalog and the HF cache, and must not pay for importing torch and timm.
"""

__all__ = ["RANDOM_WEIGHTS", "LoadedBackbone", "load_backbone"]


def __getattr__(name: str):
    if name in ("RANDOM_WEIGHTS", "load_backbone"):
        from pipelines.backbones import registry

        return getattr(registry, name)
    if name == "LoadedBackbone":
        from pipelines.backbones.timm_backbone import LoadedBackbone

        return LoadedBackbone
    raise AttributeError(f"module 'pipelines.backbones' has no attribute {name!r}")
