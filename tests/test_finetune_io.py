"""pipelines.backbones.finetuned: the fold network format (safetensors + network.json) round trip and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image

from pipelines.core.errors import InputError, MismatchError, WeightsError
from pipelines.finetune.frontend import audio_frontend
from pipelines.backbones.finetuned import NETWORK_META, NETWORK_WEIGHTS, AudioFrontEnd, NetworkMeta, eval_transform, is_network_dir, load_network, network_fingerprint, pre_logits, save_network

DATA_CONFIG = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
               "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}


def make_meta(**overrides) -> NetworkMeta:
    values = dict(backbone="test_efficientnet", timm_name="test_efficientnet", num_classes=3,
                  classes=["a", "b", "c"], task="multiclass", modality="image", data_config=dict(DATA_CONFIG),
                  audio=None, hflip_tta_ok=True, fold=0, best_epoch=2, train_layers="all")
    values.update(overrides)
    return NetworkMeta(**values)


def trained_model(meta: NetworkMeta) -> torch.nn.Module:
    torch.manual_seed(1)
    model = timm.create_model(meta.timm_name, pretrained=False, num_classes=meta.num_classes)
    with torch.no_grad():  # weights unlike a fresh init, so a load that silently re-inits would show
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path):
    meta = make_meta()
    model = trained_model(meta)
    folder = tmp_path / "run" / "fold-0"
    save_network(folder, model, meta)
    return folder, model, meta


def test_round_trip_gives_the_same_logits_and_meta(saved) -> None:
    folder, model, meta = saved
    assert is_network_dir(folder) and not is_network_dir(folder.parent)
    loaded, loaded_meta = load_network(folder)
    assert not loaded.training
    assert loaded_meta == meta
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(loaded(batch), model(batch), atol=1e-5)
        assert torch.allclose(pre_logits(loaded, batch), pre_logits(model, batch), atol=1e-5)
    assert json.loads((folder / NETWORK_META).read_text())["format"] == "olymp-finetuned-network/1"


def test_eval_transform_follows_the_training_resolution(saved) -> None:
    _, _, meta = saved
    tensor = eval_transform(meta)(Image.new("RGB", (50, 40), (255, 0, 0)))
    assert tuple(tensor.shape) == (3, 32, 32)
    assert torch.allclose(tensor[0], torch.full((32, 32), 2.0))  # (1 - 0.5) / 0.25


def test_fingerprint_changes_with_the_weights(saved) -> None:
    folder, model, meta = saved
    before = network_fingerprint(folder)
    assert network_fingerprint(folder) == before
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_network(folder, model, meta)
    assert network_fingerprint(folder) != before


def test_unknown_meta_keys_are_refused(saved) -> None:
    folder, _, _ = saved
    data = json.loads((folder / NETWORK_META).read_text())
    data["dropout_at_test"] = 0.5
    (folder / NETWORK_META).write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown keys dropout_at_test"):
        load_network(folder)


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "olymp-finetuned-network/9"}, "format"),
    ({"task": "regression"}, "task"),
    ({"num_classes": 4}, "does not fit"),
    ({"modality": "audio"}, "audio front end"),
    ({"train_layers": 0}, "train_layers"),
    ({"data_config": {"input_size": [3, 32]}}, "input_size"),
])
def test_bad_meta_values_are_refused(saved, change, message) -> None:
    folder, _, _ = saved
    data = json.loads((folder / NETWORK_META).read_text())
    data.update(change)
    (folder / NETWORK_META).write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as caught:
        load_network(folder)
    assert "\n" not in str(caught.value)


def test_missing_meta_key_is_refused(saved) -> None:
    folder, _, _ = saved
    data = json.loads((folder / NETWORK_META).read_text())
    del data["classes"]
    (folder / NETWORK_META).write_text(json.dumps(data))
    with pytest.raises(InputError, match="lacks classes"):
        load_network(folder)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights_give_one_line_error(saved, damage) -> None:
    folder, _, _ = saved
    weights = folder / NETWORK_WEIGHTS
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        weights.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="damaged") as caught:
        load_network(folder)
    assert "\n" not in str(caught.value)


def test_corrupt_meta_gives_one_line_error(saved) -> None:
    folder, _, _ = saved
    (folder / NETWORK_META).write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON") as caught:
        load_network(folder)
    assert "\n" not in str(caught.value)


def test_weights_of_another_architecture_are_refused(saved) -> None:
    folder, _, meta = saved
    other = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    save_network(folder, other, meta)
    with pytest.raises(MismatchError, match="does not fit test_efficientnet"):
        load_network(folder)


def test_not_a_network_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a fine-tuned network folder"):
        load_network(tmp_path)


def test_audio_frontend_feeds_the_network_its_log_mel_image(tmp_path: Path) -> None:
    meta = make_meta(modality="audio", audio=AudioFrontEnd(sample_rate=16000, window_seconds=1.0, n_mels=32,
                                                           n_fft=512, hop_length=160, f_max=8000.0),
                     hflip_tta_ok=False)
    save_network(tmp_path / "fold-0", trained_model(meta), meta)
    model, loaded_meta = load_network(tmp_path / "fold-0")
    assert loaded_meta.audio == meta.audio
    front = audio_frontend(loaded_meta, model)
    waves = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    images = front.images(waves)
    assert tuple(images.shape) == (2, 3, 32, 32)
    assert front.logmel.mel_matrix.shape[0] == 32
    with torch.inference_mode():
        assert torch.allclose(front(waves), pre_logits(model, images), atol=1e-5)
    with pytest.raises(InputError, match="route"):
        AudioFrontEnd.from_dict({"route": "panns"})


def test_audio_defaults_are_extracts_log_mel_image_route() -> None:
    from pipelines.backbones.audio import frontends, logmel

    default = AudioFrontEnd()
    assert (default.sample_rate, default.n_fft, default.hop_length, default.f_min, default.f_max) == (
        frontends.SAMPLE_RATE, frontends.N_FFT, frontends.HOP_LENGTH, frontends.F_MIN, frontends.F_MAX)
    assert (default.n_mels, default.window_seconds, default.top_db, default.min_seconds) == (
        logmel.IMAGE_N_MELS, logmel.IMAGE_WINDOW_SECONDS, logmel.IMAGE_TOP_DB, logmel.MIN_SECONDS)


def test_a_network_folder_loads_as_a_backbone(saved) -> None:
    from pipelines.backbones import load_backbone

    folder, model, meta = saved
    backbone = load_backbone(str(folder))
    assert backbone.weights_sha256 == network_fingerprint(folder)
    assert "fine-tuned network" in backbone.weights_source and backbone.timm_name == meta.timm_name
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(backbone.embed(batch), pre_logits(model, batch), atol=1e-5)
    with pytest.raises(InputError, match="drop --weights"):
        load_backbone(str(folder), weights="random")
