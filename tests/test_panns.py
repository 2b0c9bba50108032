"""PANNs backbones: published key layout, front-end checks, torchaudio log-mel vs librosa, offline HF cache."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from pipelines.backbones.audio import panns
from pipelines.backbones.audio.panns import HOP_LENGTH, SAMPLE_RATE, build_panns, load_panns
from pipelines.backbones.audio.panns import PannsLogMel as LogMel
from pipelines.backbones.catalog import find_entry
from pipelines.core.errors import InputError, WeightsError

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
PANNS_NAMES = [entry.name for entry in panns.panns_entries()]
# Seconds of audio per batch item in the forward test: real length for Cnn14, shorter elsewhere.
FORWARD_SECONDS = {
    "panns-cnn14": 10.0,
    "panns-cnn10": 1.0,
    "panns-cnn6": 1.0,
    "panns-resnet22": 1.0,
    "panns-wavegram-logmel-cnn14": 1.0,
}


@pytest.fixture(scope="module")
def random_backbones():
    """Each model built once with random weights, on first use."""
    built = {}

    def get(name: str):
        if name not in built:
            built[name] = load_panns(name, "random")
        return built[name]

    return get


def clip(seconds: float, seed: int = 0) -> np.ndarray:
    """Real-ish audio at 32 kHz: a gliding harmonic tone, a click train, a pause, a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    f0 = 220.0 * (1 + seed * 0.1) * (1 + 0.5 * t / max(seconds, 1e-9))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    y = sum(0.3 / h * np.sin(h * phase) for h in (1, 2, 3, 5))
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    y[:: SAMPLE_RATE // 8] += 0.8  # clicks
    y[len(y) // 3 : len(y) // 3 + len(y) // 10] = 0.0  # a pause
    return (y + 1e-3 * rng.standard_normal(len(y))).astype(np.float32)


def torchlibrosa_frontend() -> dict[str, torch.Tensor]:
    """The front-end tensors a published 32 kHz checkpoint carries, computed as torchlibrosa does."""
    n_fft = 1024
    x, y = np.meshgrid(np.arange(n_fft), np.arange(n_fft))
    W = np.power(np.exp(-2 * np.pi * 1j / n_fft), x * y)
    window = librosa.util.pad_center(librosa.filters.get_window("hann", n_fft, fftbins=True), size=n_fft)
    out = n_fft // 2 + 1
    mel = librosa.filters.mel(sr=32000, n_fft=n_fft, n_mels=64, fmin=50, fmax=14000).T
    return {
        "spectrogram_extractor.stft.conv_real.weight": torch.Tensor(np.real(W[:, :out] * window[:, None]).T)[:, None, :],
        "spectrogram_extractor.stft.conv_imag.weight": torch.Tensor(np.imag(W[:, :out] * window[:, None]).T)[:, None, :],
        "logmel_extractor.melW": torch.Tensor(mel),
    }


def randomized_network(name: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """A fresh copy of a network state dict with every float tensor random."""
    return dict(_randomized_network(name, seed))


@functools.cache
def _randomized_network(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A network state dict with every float tensor random (BN statistics plausible for log-mels)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in build_panns(name).state_dict().items():
        if not value.is_floating_point():
            state[key] = value + 7  # num_batches_tracked
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=generator) * (400.0 if key.startswith("bn0.") else 1.5)
        elif key.endswith("running_mean"):
            state[key] = torch.randn(value.shape, generator=generator) * 0.1 - (40.0 if key.startswith("bn0.") else 0.0)
        else:
            state[key] = value + 0.02 * torch.randn(value.shape, generator=generator)
    return state


def published_checkpoint(path: Path, network: dict[str, torch.Tensor], **extra_tensors) -> Path:
    """Saved as the authors did: torch.save({'model': state_dict, 'iteration': ...}, '*.pth')."""
    state = {**torchlibrosa_frontend(), **network, **extra_tensors}
    torch.save({"model": state, "iteration": 600000}, path)
    return path


def writer(name: str, network: dict[str, torch.Tensor]) -> panns.PannsNet:
    """The model that wrote a checkpoint: the network tensors loaded with plain torch."""
    model = build_panns(name)
    model.load_state_dict(network, strict=True)
    return model


# --- each model builds and embeds ----------------------------------------------------------------
@pytest.mark.parametrize("name", PANNS_NAMES)
def test_each_model_embeds_a_batch(name: str, random_backbones) -> None:
    backbone = random_backbones(name)
    entry = find_entry(name)
    cls, dim = panns.PANNS_CLASSES[entry.loader], entry.embedding_dim
    seconds = FORWARD_SECONDS[name]
    waves = torch.from_numpy(np.stack([clip(seconds, seed=0), clip(seconds, seed=1)]))

    embeddings = backbone.embed(waves)

    assert embeddings.shape == (2, dim) and backbone.embedding_dim == dim
    assert embeddings.dtype == torch.float32 and torch.isfinite(embeddings).all()
    assert not torch.allclose(embeddings[0], embeddings[1])
    assert backbone.architecture == f"panns.{cls.architecture}"
    assert (backbone.sample_rate, backbone.window_seconds) == (32000, 10.0)
    assert backbone.frontend["implementation"] == "torchaudio" and backbone.frontend["n_mels"] == 64
    assert backbone.weights_source.startswith("random init") and backbone.weights_sha256 is None
    assert not backbone.model.training


def test_a_clip_embeds_the_same_alone_and_in_a_batch(random_backbones) -> None:
    model = random_backbones("panns-cnn14").model
    alone_wave = torch.from_numpy(clip(1.0, seed=3))[None]
    batch = torch.cat([torch.from_numpy(clip(1.0, seed=4))[None], alone_wave])
    with torch.inference_mode():
        alone, in_batch = model(alone_wave), model(batch)
    torch.testing.assert_close(in_batch[1:2], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", PANNS_NAMES)
def test_min_seconds_is_the_shortest_clip_that_works(name: str, random_backbones) -> None:
    backbone = random_backbones(name)
    samples = int(round(backbone.min_seconds * SAMPLE_RATE))
    assert samples == backbone.model.min_samples

    embedding = backbone.embed(torch.from_numpy(clip(backbone.min_seconds))[None])

    assert embedding.shape == (1, backbone.embedding_dim) and torch.isfinite(embedding).all()
    shorter = torch.zeros(1, samples - HOP_LENGTH)
    with torch.inference_mode(), pytest.raises(RuntimeError):  # one hop less: a pooling stage gets no frame
        backbone.model.embed_unchecked(shorter)
    with pytest.raises(InputError, match="min_seconds"):
        backbone.embed(shorter)


# --- the published key layout -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "n_keys", "shapes"),
    [
        ("panns-cnn14", 81, {"conv_block1.conv1.weight": (64, 1, 3, 3), "conv_block6.conv2.weight": (2048, 2048, 3, 3),
                             "fc1.weight": (2048, 2048), "fc_audioset.weight": (527, 2048), "bn0.running_var": (64,)}),
        ("panns-cnn10", 57, {"conv_block4.conv2.weight": (512, 512, 3, 3), "fc1.weight": (512, 512)}),
        ("panns-cnn6", 33, {"conv_block1.conv1.weight": (64, 1, 5, 5), "conv_block4.conv1.weight": (512, 256, 5, 5),
                            "fc_audioset.bias": (527,)}),
        ("panns-resnet22", 147, {"resnet.layer1.1.conv2.weight": (64, 64, 3, 3),
                                 "resnet.layer2.0.downsample.1.weight": (128, 64, 1, 1),
                                 "resnet.layer4.0.downsample.2.running_mean": (512,),
                                 "conv_block_after1.conv1.weight": (2048, 512, 3, 3)}),
        ("panns-wavegram-logmel-cnn14", 135, {"pre_conv0.weight": (64, 1, 11), "pre_bn0.weight": (64,),
                                              "pre_block3.conv2.weight": (128, 128, 3),
                                              "pre_block4.conv1.weight": (64, 4, 3, 3),
                                              "conv_block2.conv1.weight": (128, 128, 3, 3)}),
    ],
)
def test_state_dict_keys_are_the_published_network_keys(name: str, n_keys: int, shapes: dict, random_backbones) -> None:
    state = random_backbones(name).model.state_dict()
    assert len(state) == n_keys  # the published count minus the three front-end tensors
    assert {key: tuple(state[key].shape) for key in shapes} == shapes
    assert not any(key.startswith(("logmel.", "spectrogram_extractor", "logmel_extractor")) for key in state)


def test_a_published_checkpoint_loads_strictly_and_round_trips(tmp_path: Path) -> None:
    network = randomized_network("panns-cnn10")
    path = published_checkpoint(tmp_path / "Cnn10_mAP=0.380.pth", network)
    waves = torch.from_numpy(np.stack([clip(1.0, seed=5), clip(1.0, seed=6)]))

    backbone = load_panns("Cnn10", str(path))

    with torch.inference_mode():
        expected = writer("panns-cnn10", network)(waves)
    torch.testing.assert_close(backbone.embed(waves), expected, rtol=1e-5, atol=1e-6)
    assert expected.abs().max() > 0
    assert backbone.weights_source == f"file {path}"
    assert backbone.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert backbone.name == "Cnn10" and backbone.architecture == "panns.Cnn10"


def test_a_state_dict_saved_from_the_model_itself_loads(tmp_path: Path) -> None:
    """No front-end tensors, no num_batches_tracked: nothing to check, nothing missing."""
    network = {k: v for k, v in randomized_network("panns-cnn6").items() if "num_batches_tracked" not in k}
    path = tmp_path / "cnn6.safetensors"
    save_file(network, str(path))

    backbone = load_panns("panns-cnn6", str(path))

    torch.testing.assert_close(backbone.model.state_dict()["conv_block2.conv1.weight"], network["conv_block2.conv1.weight"])


def _sixteen_khz_mel() -> dict[str, torch.Tensor]:
    mel = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=50, fmax=8000).T  # same shape, other values
    return {"logmel_extractor.melW": torch.Tensor(mel)}


def _nfft_512_stft() -> dict[str, torch.Tensor]:
    return {"spectrogram_extractor.stft.conv_real.weight": torch.zeros(257, 1, 512)}


def _conjugate_stft() -> dict[str, torch.Tensor]:
    imag = torchlibrosa_frontend()["spectrogram_extractor.stft.conv_imag.weight"]
    return {"spectrogram_extractor.stft.conv_imag.weight": -imag}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda net: {**net, **_sixteen_khz_mel()}, r"another front end .* logmel_extractor\.melW differs by up to"),
        (lambda net: {**net, **_nfft_512_stft()}, r"conv_real\.weight has shape \(257, 1, 512\), not \(513, 1, 1024\) \(an n_fft 512 STFT\)"),
        (lambda net: {**net, **_conjugate_stft()}, r"conv_imag\.weight differs"),
        (lambda net: {k: v for k, v in net.items() if k != "conv_block2.bn1.running_var"},
         r"does not fit PANNs Cnn6: 1 missing \(e\.g\. conv_block2\.bn1\.running_var\)"),
        (lambda net: {**net, "fc2.weight": torch.zeros(3, 3)}, r"1 unexpected \(e\.g\. fc2\.weight\)"),
        (lambda net: {**net, "fc_audioset.weight": torch.zeros(10, 512), "fc_audioset.bias": torch.zeros(10)},
         r"2 with other shapes \(e\.g\. fc_audioset\.weight \(10, 512\) vs \(527, 512\)"),
        (lambda net: randomized_network("panns-cnn10"), r"looks like a panns-cnn10 checkpoint: pass --backbone panns-cnn10"),
    ],
    ids=["melW-16kHz", "stft-nfft512", "stft-conjugate", "missing-key", "extra-key", "other-shape", "other-model"],
)
def test_a_checkpoint_that_does_not_fit_is_refused_with_the_reason(change, message: str, tmp_path: Path) -> None:
    network = change(randomized_network("panns-cnn6"))
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {**torchlibrosa_frontend(), **network}}, path)  # a changed front end overrides

    with pytest.raises(WeightsError, match=message):
        load_panns("panns-cnn6", str(path))


def test_an_unreadable_pth_names_the_one_time_resave(tmp_path: Path) -> None:
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save({"model": {"fc1.weight": torch.zeros(1)}, "sampler": np.arange(3)}, path)  # numpy: not weights_only
    with pytest.raises(WeightsError, match=r"weights_only=False\)\['model'\]"):
        load_panns("panns-cnn14", str(path))


# --- front end: torchaudio log-mel == librosa == the checkpoint's torchlibrosa conv STFT ---------
def test_torchaudio_logmel_matches_librosa() -> None:
    y = clip(2.0, seed=7)
    power = librosa.feature.melspectrogram(
        y=y, sr=32000, n_fft=1024, hop_length=320, win_length=1024, window="hann", center=True,
        pad_mode="reflect", power=2.0, n_mels=64, fmin=50, fmax=14000, htk=False, norm="slaney",
    )
    expected = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).T  # (frames, 64)

    logmel = LogMel()(torch.from_numpy(y)[None])

    assert logmel.shape == (1, 1, expected.shape[0], 64) and logmel.dtype == torch.float32
    np.testing.assert_allclose(logmel[0, 0].numpy(), expected, atol=2e-3)
    np.testing.assert_allclose(LogMel().filterbank.numpy(), librosa.filters.mel(
        sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T, rtol=0, atol=1e-6)


def test_torchaudio_logmel_matches_the_published_torchlibrosa_front_end() -> None:
    """What a published checkpoint's own STFT conv + melW would compute, in float64."""
    frontend = {k: v.double() for k, v in torchlibrosa_frontend().items()}
    y = torch.from_numpy(clip(1.0, seed=8)).double()[None, None]
    padded = F.pad(y, (512, 512), mode="reflect")
    real = F.conv1d(padded, frontend["spectrogram_extractor.stft.conv_real.weight"], stride=320)
    imag = F.conv1d(padded, frontend["spectrogram_extractor.stft.conv_imag.weight"], stride=320)
    mel = torch.matmul((real**2 + imag**2).transpose(1, 2), frontend["logmel_extractor.melW"])
    expected = 10 * torch.log10(torch.clamp(mel, min=1e-10))

    logmel = LogMel()(y[:, 0].float())

    torch.testing.assert_close(logmel[:, 0].double(), expected, rtol=0, atol=2e-3)
    # and the basis the loader checks against is that same torchlibrosa basis
    for key, tensor in panns.stft_basis().items():
        torch.testing.assert_close(tensor, frontend[key], rtol=0, atol=1e-6)


def test_the_front_end_stays_float32_under_autocast() -> None:
    front = LogMel()
    y = torch.from_numpy(clip(0.5, seed=9))[None]
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_autocast = front(y)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, front(y))


# --- offline weights: local HF cache, names, random init ------------------------------------------
def add_to_hf_cache(cache: Path, repo_id: str, filename: str, tensors: dict[str, torch.Tensor]) -> Path:
    """Lay a file out as huggingface_hub does: snapshots/<commit>/<file> plus refs/main."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
    save_file(tensors, str(snapshot / filename))
    return snapshot / filename


def test_weights_come_from_the_local_hf_cache(hf_cache: Path) -> None:
    """nicofarr/panns_* hold model.safetensors saved by PyTorchModelHubMixin: keys prefixed `backbone.`."""
    network = randomized_network("panns-cnn10", seed=2)
    tensors = {f"backbone.{k}": v.contiguous() for k, v in {**torchlibrosa_frontend(), **network}.items()}
    path = add_to_hf_cache(hf_cache, "nicofarr/panns_Cnn10", "model.safetensors", tensors)
    waves = torch.from_numpy(clip(1.0, seed=10))[None]

    backbone = load_panns("panns-cnn10", None)

    assert backbone.weights_source == f"hf-cache nicofarr/panns_Cnn10 ({path})"
    assert backbone.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with torch.inference_mode():
        torch.testing.assert_close(backbone.embed(waves), writer("panns-cnn10", network)(waves), rtol=1e-5, atol=1e-6)


def test_no_offline_weights_names_the_fixes(hf_cache: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        load_panns("panns-cnn6", None)
    message = str(caught.value)
    assert "\n" not in message
    for fix in ("--weights PATH", "Cnn6_mAP=0.343.pth", "olymp weights pull panns-cnn6",
                "--backbone logmel-stats", "--backbone efficientnet_lite0 --modality audio"):
        assert fix in message


@pytest.mark.parametrize(
    ("typed", "key"),
    [("panns-cnn14", "panns-cnn14"), ("CNN14", "panns-cnn14"), ("Cnn6", "panns-cnn6"), ("panns_ResNet22", "panns-resnet22"),
     ("Wavegram_Logmel_Cnn14", "panns-wavegram-logmel-cnn14")],
)
def test_names_are_case_insensitive(typed: str, key: str) -> None:
    assert panns.resolve_panns_name(typed) == key


def test_an_unknown_name_lists_the_models() -> None:
    with pytest.raises(WeightsError, match="panns-cnn14, panns-cnn10"):
        load_panns("cnn12", "random")


def test_random_init_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first, second = build_panns("panns-cnn6").state_dict(), build_panns("cnn6").state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(first[key], second[key]) for key in first)
