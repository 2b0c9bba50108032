"""PANNs audio CNNs (Kong et al. 2020) that load the published AudioSet checkpoints directly.

The networks mirror `pytorch/models.py` of github.com/qiuqiangkong/audioset_tagging_cnn module
for module, so a published `Cnn14_mAP=0.431.pth` (`{'model': state_dict, ...}`) or its Hugging
Face re-upload (`nicofarr/panns_Cnn14`, keys prefixed `backbone.`) loads strictly. Only the front
end differs: the log-mel is the shared `frontends.LogMel` (torch.stft, torchaudio's Slaney
filterbank) in float32 instead of torchlibrosa's convolution STFT, so the checkpoint's front-end tensors (`spectrogram_extractor.stft.conv_real`,
`conv_imag`, `logmel_extractor.melW`) are checked against it on load and then set aside.

Typical use:

    backbone = load_panns("panns-cnn14", "Cnn14_mAP=0.431.pth")   # or load_audio_backbone(...)
    embeddings = backbone.embed(waveforms)   # (B, samples) float32 at 32 kHz -> (B, 2048)

Training-only parts of PANNs (SpecAugment, mixup, dropout) are left out: the models are built
for embedding extraction in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.backbones import checkpoints
from pipelines.backbones.audio.base import (
    AudioBackbone,
    AudioSpec,
    Network,
    audio_entry,
    build_audio_backbone,
    register_network,
)
from pipelines.backbones.audio.frontends import F_MAX, F_MIN, HOP_LENGTH, N_FFT, POWER_FLOOR, SAMPLE_RATE, LogMel
from pipelines.backbones.catalog import BackboneEntry, load_catalog
from pipelines.backbones.hf_cache import cached_weights, hf_hub_cache_dir
from pipelines.core.errors import InputError, WeightsError

# --- the front end every published 32 kHz PANNs checkpoint was trained with: the shared LogMel at
# 32 kHz, n_fft 1024, hop 320, 50-14000 Hz, with PANNs' 64 bands, reflect padding and
# power_to_db(amin=1e-10, ref 1.0, no top_db)
N_MELS = 64  # mel_bins
AMIN = POWER_FLOOR
AUDIOSET_CLASSES = 527  # fc_audioset rows

# The checkpoint's torchlibrosa front end: verified against ours on load, then not needed.
STFT_REAL_KEY = "spectrogram_extractor.stft.conv_real.weight"
STFT_IMAG_KEY = "spectrogram_extractor.stft.conv_imag.weight"
MEL_KEY = "logmel_extractor.melW"
FRONTEND_KEYS = (STFT_REAL_KEY, STFT_IMAG_KEY, MEL_KEY)
# How far a checkpoint's front-end tensor may stray from ours, relative to its largest entry:
# float32 storage and librosa versions differ by ~1e-6; another front end differs by >1e-2.
FRONTEND_RTOL = 1e-3

# Prefixes that wrap every key: PyTorchModelHubMixin (`backbone.`), DataParallel, compile, Lightning.
WRAPPER_PREFIXES = ("backbone.", *checkpoints.WRAPPER_PREFIXES)
ZENODO_RECORD = "https://zenodo.org/records/3987831"
HF_FILENAME = "model.safetensors"  # what PyTorchModelHubMixin.save_pretrained writes


class PannsLogMel(LogMel):
    """(B, samples) waveform -> (B, 1, frames, 64) log-mel, PANNs' layout, float32 whatever autocast says."""

    def __init__(self) -> None:
        super().__init__(N_MELS, pad_mode="reflect", floor=AMIN, clamp=True)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return super().forward(waveforms).transpose(1, 2).unsqueeze(1)


# --- building blocks, named as in audioset_tagging_cnn/pytorch/models.py ----------------------
def _pool(x: torch.Tensor, pool_size: tuple[int, int], pool_type: str) -> torch.Tensor:
    if pool_type == "avg":
        return F.avg_pool2d(x, kernel_size=pool_size)
    if pool_type == "max":
        return F.max_pool2d(x, kernel_size=pool_size)
    return F.avg_pool2d(x, kernel_size=pool_size) + F.max_pool2d(x, kernel_size=pool_size)  # "avg+max"


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, then 2-D pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size=(2, 2), pool_type: str = "avg") -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return _pool(x, pool_size, pool_type)


class ConvBlock5x5(nn.Module):
    """One 5x5 conv + BN + ReLU, then 2-D pooling (Cnn6)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size=(2, 2), pool_type: str = "avg") -> torch.Tensor:
        return _pool(F.relu(self.bn1(self.conv1(x))), pool_size, pool_type)


class _ResnetBasicBlock(nn.Module):
    """ResNet basic block; stride 2 is a 2x2 average pool before conv1 (PANNs' variant)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool2d(x, kernel_size=(2, 2)) if self.stride == 2 else x
        out = F.relu(self.bn1(self.conv1(out)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + identity)


class _ResNet(nn.Module):
    """layer1..layer4 of basic blocks, 64..512 channels; downsample = AvgPool, 1x1 conv, BN."""

    def __init__(self, layers: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.inplanes = 64
        self.layer1 = self._make_layer(64, layers[0], stride=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride == 2:  # keys downsample.1.* (conv) and downsample.2.* (BN), as published
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2),
                nn.Conv2d(self.inplanes, planes, kernel_size=1, bias=False),
                nn.BatchNorm2d(planes),
            )
        elif self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, bias=False), nn.BatchNorm2d(planes))
        layers = [_ResnetBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [_ResnetBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ConvPreWavBlock(nn.Module):
    """Wavegram: 1-D conv (k3) + dilated conv (k3, d2), BN + ReLU, then 1-D max pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, dilation=2, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.bn2 = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool1d(x, kernel_size=pool_size)


# --- the networks ---------------------------------------------------------------------------------
PANNS_CLASSES: dict[str, type[PannsNet]] = {}  # loader key -> network class, filled by @panns_network


def panns_network(loader: str) -> Callable[[type[PannsNet]], type[PannsNet]]:
    """Register a PANNs class as the network of catalog `loader = "<loader>"`."""

    def register(cls: type[PannsNet]) -> type[PannsNet]:
        cls.loader = loader
        PANNS_CLASSES[loader] = cls
        register_network(loader)(lambda spec, weights: _build_network(cls, spec, weights))
        return cls

    return register


class PannsNet(nn.Module):
    """Waveform -> log-mel -> bn0 over mel bins -> CNN -> PANNs clip embedding (relu(fc1(...)))."""

    loader = ""  # the catalog's loader key, set by @panns_network
    architecture = ""  # the class name in PANNs' models.py
    min_samples = 0  # shortest input every pooling stage still gets one frame from
    published_file = ""  # the checkpoint on Zenodo record 3987831

    def __init__(self) -> None:
        super().__init__()
        self.logmel = PannsLogMel()
        self.bn0 = nn.BatchNorm2d(N_MELS)

    def features(self, logmel: torch.Tensor, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, frames, mels) normalised log-mel -> (B, channels, frames', mels')."""
        raise NotImplementedError

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        if waveforms.dim() != 2:
            raise InputError(f"PANNs takes (batch, samples) mono waveforms, got shape {tuple(waveforms.shape)}")
        if waveforms.shape[-1] < self.min_samples:
            raise InputError(
                f"{self.architecture} needs at least {self.min_samples} samples ({self.min_seconds():g} s at "
                f"{SAMPLE_RATE} Hz), got {waveforms.shape[-1]}: zero-pad clips to min_seconds"
            )
        return self.embed_unchecked(waveforms)

    def embed_unchecked(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.embed_logmel(self.logmel(waveforms), waveforms)

    def embed_logmel(self, x: torch.Tensor, waveforms: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, frames, 64) log-mel (computed elsewhere, e.g. by librosa) -> clip embedding.
        Only Wavegram-Logmel-Cnn14 needs the waveform too."""
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BatchNorm over the 64 mel bins
        x = self.features(x, waveforms)
        x = torch.mean(x, dim=3)  # over frequency
        x = torch.amax(x, dim=2) + torch.mean(x, dim=2)  # over time
        return F.relu(self.fc1(x))

    @classmethod
    def min_seconds(cls) -> float:
        return cls.min_samples / SAMPLE_RATE


class ConvStack(PannsNet):
    """Cnn6/10/14: conv blocks of `widths`, each followed by a 2x2 average pool up to `pooled`
    blocks (then 1x1), and fc1 of the last width."""

    widths: tuple[int, ...] = ()  # input channels (1), then each block's output channels
    pooled = 0  # how many blocks are followed by a 2x2 pool
    block = ConvBlock

    def __init__(self) -> None:
        super().__init__()
        for index in range(1, len(self.widths)):
            setattr(self, f"conv_block{index}", self.block(self.widths[index - 1], self.widths[index]))
        self.fc1 = nn.Linear(self.widths[-1], self.widths[-1], bias=True)
        self.fc_audioset = nn.Linear(self.widths[-1], AUDIOSET_CLASSES, bias=True)

    def features(self, logmel: torch.Tensor, waveforms: torch.Tensor) -> torch.Tensor:
        x = logmel
        for index in range(1, len(self.widths)):
            pool = (2, 2) if index <= self.pooled else (1, 1)
            x = getattr(self, f"conv_block{index}")(x, pool_size=pool, pool_type="avg")
        return x


@panns_network("panns.cnn14")
class Cnn14(ConvStack):
    architecture = "Cnn14"
    min_samples = (2**5 - 1) * HOP_LENGTH  # five 2x2 poolings: 32 frames = 31 hops (0.31 s)
    published_file = "Cnn14_mAP=0.431.pth"
    widths = (1, 64, 128, 256, 512, 1024, 2048)
    pooled = 5


@panns_network("panns.cnn10")
class Cnn10(ConvStack):
    architecture = "Cnn10"
    min_samples = (2**4 - 1) * HOP_LENGTH  # four 2x2 poolings: 16 frames (0.15 s)
    published_file = "Cnn10_mAP=0.380.pth"
    widths = (1, 64, 128, 256, 512)
    pooled = 4


@panns_network("panns.cnn6")
class Cnn6(Cnn10):
    architecture = "Cnn6"
    published_file = "Cnn6_mAP=0.343.pth"
    block = ConvBlock5x5  # one 5x5 conv per block instead of two 3x3


@panns_network("panns.resnet22")
class ResNet22(PannsNet):
    architecture = "ResNet22"
    min_samples = (2**5 - 1) * HOP_LENGTH  # conv_block1, layer2..4 and a final pool: 5 halvings
    published_file = "ResNet22_mAP=0.430.pth"

    def __init__(self) -> None:
        super().__init__()
        self.conv_block1 = ConvBlock(1, 64)
        self.resnet = _ResNet(layers=(2, 2, 2, 2))
        self.conv_block_after1 = ConvBlock(512, 2048)
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, AUDIOSET_CLASSES, bias=True)

    def features(self, logmel: torch.Tensor, waveforms: torch.Tensor) -> torch.Tensor:
        x = self.conv_block1(logmel, pool_size=(2, 2), pool_type="avg")
        x = F.avg_pool2d(self.resnet(x), kernel_size=(2, 2))
        return self.conv_block_after1(x, pool_size=(1, 1), pool_type="avg")


@panns_network("panns.wavegram-logmel-cnn14")
class Wavegram_Logmel_Cnn14(PannsNet):  # noqa: N801 - the published architecture's name
    architecture = "Wavegram_Logmel_Cnn14"
    # The wavegram branch yields one frame per 320 samples without the STFT's extra centre frame,
    # so it needs a whole 32 frames: 32 hops (0.32 s).
    min_samples = 2**5 * HOP_LENGTH
    published_file = "Wavegram_Logmel_Cnn14_mAP=0.439.pth"

    def __init__(self) -> None:
        super().__init__()
        self.pre_conv0 = nn.Conv1d(1, 64, kernel_size=11, stride=5, padding=5, bias=False)
        self.pre_bn0 = nn.BatchNorm1d(64)
        self.pre_block1 = ConvPreWavBlock(64, 64)
        self.pre_block2 = ConvPreWavBlock(64, 128)
        self.pre_block3 = ConvPreWavBlock(128, 128)
        self.pre_block4 = ConvBlock(4, 64)
        widths = (128, 128, 256, 512, 1024, 2048)
        self.conv_block1 = ConvBlock(1, 64)
        for index in range(2, 7):
            setattr(self, f"conv_block{index}", ConvBlock(widths[index - 2], widths[index - 1]))
        self.fc1 = nn.Linear(2048, 2048, bias=True)
        self.fc_audioset = nn.Linear(2048, AUDIOSET_CLASSES, bias=True)

    def wavegram(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 64, frames/2, 32): the learned time-frequency branch."""
        a = F.relu(self.pre_bn0(self.pre_conv0(waveforms[:, None, :])))
        a = self.pre_block1(a, pool_size=4)
        a = self.pre_block2(a, pool_size=4)
        a = self.pre_block3(a, pool_size=4)  # (B, 128, samples/320)
        a = a.reshape(a.shape[0], -1, 32, a.shape[-1]).transpose(2, 3)  # (B, 4, frames, 32)
        return self.pre_block4(a, pool_size=(2, 1), pool_type="avg")

    def features(self, logmel: torch.Tensor, waveforms: torch.Tensor) -> torch.Tensor:
        wave = self.wavegram(waveforms)
        x = self.conv_block1(logmel, pool_size=(2, 2), pool_type="avg")
        # PANNs concatenates both on the channel axis and assumes equal frame counts, true for
        # 10 s clips (500 and 500); for other lengths they can differ by one: keep the common part.
        frames = min(x.shape[2], wave.shape[2])
        x = torch.cat((x[:, :, :frames], wave[:, :, :frames]), dim=1)
        for index in range(2, 6):
            x = getattr(self, f"conv_block{index}")(x, pool_size=(2, 2), pool_type="avg")
        return self.conv_block6(x, pool_size=(1, 1), pool_type="avg")


# --- building: catalog entry -> network with weights ----------------------------------------------
def panns_entries() -> list[BackboneEntry]:
    """The catalog's PANNs entries, in catalog order."""
    return [entry for entry in load_catalog() if entry.loader in PANNS_CLASSES]


def resolve_panns_name(name: str) -> str:
    """'panns-cnn14', 'Cnn14', 'PANNs_Wavegram_Logmel_Cnn14' ... -> the catalog entry's name."""
    entry = audio_entry(name)
    if entry is None or entry.loader not in PANNS_CLASSES:
        names = ", ".join(entry.name for entry in panns_entries())
        raise WeightsError(f"unknown PANNs model {name!r}: pass --backbone one of {names}")
    return entry.name


def build_panns(name: str) -> PannsNet:
    """The network in eval mode, seeded: the same random init every time, global RNG untouched."""
    entry = audio_entry(resolve_panns_name(name))
    with checkpoints.seeded_init():
        model = PANNS_CLASSES[entry.loader]()
    return model.eval()


def load_panns(name: str, weights: str | None) -> AudioBackbone:
    """A PANNs backbone; weights: a checkpoint path, "random", or None for the local HF cache."""
    return build_audio_backbone(AudioSpec.from_entry(audio_entry(resolve_panns_name(name)), name), weights)


def _build_network(cls: type[PannsNet], spec: AudioSpec, weights: str | None) -> Network:
    path, source = _choose_weights(cls, spec, weights)  # first: missing weights fail before the build
    with checkpoints.seeded_init():
        model = cls().eval()
    if path is not None:
        load_panns_state_dict(model, _read_checkpoint(path), origin=f"weights file {path}")
    frontend = model.logmel.describe() | {"implementation": "torchaudio"}
    return Network(model, f"panns.{cls.architecture}", model.logmel.sample_rate, cls.min_seconds(), frontend,
                   source, checkpoints.file_sha256(path) if path is not None else None)


def _choose_weights(cls: type[PannsNet], spec: AudioSpec, weights: str | None) -> tuple[Path | None, str]:
    if checkpoints.is_random(weights):
        return None, checkpoints.RANDOM_SOURCE
    if weights is not None:
        path = Path(weights).expanduser()
        return path, f"file {path}"
    path = cached_weights(spec.hf_repo, HF_FILENAME) if spec.hf_repo else None
    if path is None:
        raise WeightsError(
            f"no {spec.entry} weights offline (nothing for {spec.hf_repo} in {hf_hub_cache_dir()}): pass "
            f"--weights PATH to the published {cls.published_file} ({ZENODO_RECORD}), run "
            f"`olymp weights pull {spec.entry}` while online, or use --backbone logmel-stats or "
            "--backbone efficientnet_lite0 --modality audio, which need no download"
        )
    return path, f"hf-cache {spec.hf_repo} ({path})"


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    try:
        return checkpoints.read_state_dict(path)
    except WeightsError as err:
        if "weights only" not in str(err).lower():  # missing or corrupt: nothing PANNs-specific to add
            raise
        raise WeightsError(
            f"{err}. A PANNs .pth that holds more than tensors can be re-saved once, if you trust it: "
            "torch.save(torch.load(P, weights_only=False)['model'], 'panns.pt')"
        ) from err


def load_panns_state_dict(model: PannsNet, state: dict[str, torch.Tensor], origin: str) -> None:
    """Check the front end, then load every other tensor strictly; WeightsError naming the problem."""
    state = dict(checkpoints.strip_wrapper_prefixes(state, set(model.state_dict()), WRAPPER_PREFIXES))
    frontend = {key: state.pop(key) for key in FRONTEND_KEYS if key in state}
    problems = frontend_problems(model, frontend)
    if problems:
        raise WeightsError(
            f"{origin} was trained with another front end than {model.architecture} at {SAMPLE_RATE} Hz "
            f"(n_fft {N_FFT}, {N_MELS} mel bins, {F_MIN:g}-{F_MAX:g} Hz): {'; '.join(problems)}. "
            "Pass a checkpoint of the 32 kHz PANNs (e.g. Cnn14_mAP=0.431.pth, not Cnn14_16k)"
        )
    expected = model.state_dict()
    # BatchNorm's batch counter is unused in eval; checkpoints with or without it both load.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    mismatch = checkpoints.key_problems(expected, state)
    if not mismatch.none:
        guess = _guess_architecture(set(state))
        if guess and PANNS_CLASSES[guess] is not type(model):
            name = next(entry.name for entry in panns_entries() if entry.loader == guess)
            hint = f"it looks like a {name} checkpoint: pass --backbone {name}"
        else:
            names = ", ".join(entry.name for entry in panns_entries())
            hint = f"pass the --backbone the checkpoint was trained with ({names})"
        raise WeightsError(f"{origin} does not fit PANNs {model.architecture}: {mismatch.describe()}; {hint}")
    model.load_state_dict(state, strict=True)


def frontend_problems(model: PannsNet, frontend: dict[str, torch.Tensor]) -> list[str]:
    """How the checkpoint's torchlibrosa tensors differ from the torchaudio front end ([] if not)."""
    expected = {**stft_basis(), MEL_KEY: model.logmel.filterbank.detach().cpu().double()}
    problems = []
    for key, tensor in frontend.items():
        want = expected[key]
        if tensor.shape != want.shape:
            problems.append(f"{key} has shape {tuple(tensor.shape)}, not {tuple(want.shape)}{_implied(key, tensor)}")
            continue
        diff = (tensor.detach().cpu().double() - want).abs().max().item()
        if not math.isfinite(diff) or diff > FRONTEND_RTOL * want.abs().max().item():
            problems.append(f"{key} differs by up to {diff:.3g} (largest entry {want.abs().max().item():.3g})")
    return problems


def stft_basis(n_fft: int = N_FFT) -> dict[str, torch.Tensor]:
    """torchlibrosa's STFT conv weights (n_fft/2+1, 1, n_fft): the DFT basis exp(-2*pi*i*k*n/N)
    times a periodic Hann window, real part in conv_real, imaginary part (-sin) in conv_imag."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2.0 * math.pi * torch.remainder(torch.outer(k, n), n_fft) / n_fft
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    return {
        STFT_REAL_KEY: (torch.cos(angle) * window)[:, None, :],
        STFT_IMAG_KEY: (-torch.sin(angle) * window)[:, None, :],
    }


def _implied(key: str, tensor: torch.Tensor) -> str:
    if tensor.dim() == 3 and key != MEL_KEY:
        return f" (an n_fft {tensor.shape[-1]} STFT)"
    if tensor.dim() == 2 and key == MEL_KEY:
        return f" (n_fft {(tensor.shape[0] - 1) * 2}, {tensor.shape[1]} mel bins)"
    return ""


def _guess_architecture(keys: set[str]) -> str | None:
    """Which PANNs network (loader key) a checkpoint's keys suggest, from a layer only it has."""
    signatures = (
        ("pre_conv0.weight", "panns.wavegram-logmel-cnn14"),
        ("resnet.layer1.0.conv1.weight", "panns.resnet22"),
        ("conv_block6.conv1.weight", "panns.cnn14"),
        ("conv_block4.conv2.weight", "panns.cnn10"),
        ("conv_block4.conv1.weight", "panns.cnn6"),
    )
    return next((name for key, name in signatures if key in keys), None)


