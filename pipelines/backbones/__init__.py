"""Image backbones for `olymp extract`: timm models with offline weights and their preprocessing.

Typical use:

    backbone = load_backbone("efficientnet_lite0")        # offline default, weights from a pip package
    batch = timm.data.create_transform(**backbone.data_config)(image).unsqueeze(0)
    embeddings = backbone.embed(batch)                    # (1, backbone.embedding_dim)
"""

from pipelines.backbones.registry import RANDOM_WEIGHTS, load_backbone
from pipelines.backbones.timm_backbone import LoadedBackbone

__all__ = ["RANDOM_WEIGHTS", "LoadedBackbone", "load_backbone"]
