"""The network a fold trains: a timm backbone with its available weights and a new head, cut
into stages so that the top N (`--train-layers N`) train and the rest stays frozen.

A backbone is split into `units` whose composition is `forward_features` (checked against it in
the tests): EfficientNet / MobileNet-style (stem, each stage of `blocks`; the last stage carries
conv_head + bn2), ResNet (stem, layer1..4) and ConvNeXt (stem, each stage; the last carries
norm_pre). `--train-layers all` works for any timm model. Below the trained units everything
is frozen: no gradients, BatchNorm in eval mode (its running statistics stay the pretrained ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipelines.core.errors import ConfigError


@dataclass
class Network:
    model: nn.Module  # the whole timm model (its classifier replaced by a new one)
    units: list[nn.Module]  # forward_features == units applied in order; [] when it cannot be split
    n_trained: int | None  # top units trained; None: all of the model

    @property
    def frozen(self) -> list[nn.Module]:
        if self.n_trained is None:
            return []
        return self.units[: len(self.units) - self.n_trained]

    @property
    def trained(self) -> list[nn.Module]:
        if self.n_trained is None:
            return [self.model]
        return self.units[len(self.units) - self.n_trained:] if self.n_trained else []

    def lower(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part: input batch -> the feature map the trained units start from."""
        for unit in self.frozen:
            x = unit(x)
        return x

    def upper(self, x: torch.Tensor) -> torch.Tensor:
        """The trained part (top units + head) from the frozen part's output to logits."""
        if self.n_trained is None:
            return self.model(x)
        for unit in self.trained:
            x = unit(x)
        return self.model.forward_head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upper(self.lower(x))

    def train_mode(self) -> None:
        """Trained units (and the head) in train mode, the frozen part in eval mode (BatchNorm frozen)."""
        self.model.train()
        for unit in self.frozen:
            unit.eval()

    def param_groups(self, lr: float, head_mult: float, weight_decay: float) -> list[dict]:
        """AdamW groups: trained backbone units at `lr`, the head at lr * head_mult; no decay on
        norms and biases. Frozen parameters get requires_grad False and are left out."""
        head_ids = {id(p) for p in _head_parameters(self.model)}
        for p in self.model.parameters():
            p.requires_grad_(self.n_trained is None)
        trained = [p for unit in self.trained for p in unit.parameters()] + list(_head_parameters(self.model))
        seen, groups = set(), {}
        for p in trained:
            if id(p) in seen:
                continue
            seen.add(id(p))
            p.requires_grad_(True)
            is_head = id(p) in head_ids
            decay = p.ndim > 1
            key = (is_head, decay)
            if key not in groups:
                groups[key] = {"params": [], "lr": lr * (head_mult if is_head else 1.0),
                               "weight_decay": weight_decay if decay else 0.0, "name": f"{'head' if is_head else 'body'}{'' if decay else '-nodecay'}"}
            groups[key]["params"].append(p)
        return [groups[key] for key in sorted(groups)]


def _head_parameters(model: nn.Module):
    return model.get_classifier().parameters()


def split_units(model: nn.Module) -> list[nn.Module]:
    """The model's feature part as consecutive units (stages); [] when olymp cannot split it."""
    names = {name for name, _ in model.named_children()}
    if {"conv_stem", "bn1", "blocks", "conv_head", "bn2"} <= names:  # EfficientNet, MobileNetV3-like
        stages = list(model.blocks.children())
        return [nn.Sequential(model.conv_stem, model.bn1), *stages[:-1],
                nn.Sequential(stages[-1], model.conv_head, model.bn2)]
    if {"conv_stem", "bn1", "blocks"} <= names and "conv_head" not in names:  # EfficientNet without head conv
        stages = list(model.blocks.children())
        return [nn.Sequential(model.conv_stem, model.bn1), *stages]
    if {"conv1", "bn1", "act1", "maxpool", "layer1", "layer4"} <= names:  # ResNet family
        return [nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool),
                model.layer1, model.layer2, model.layer3, model.layer4]
    if {"stem", "stages", "norm_pre"} <= names:  # ConvNeXt-like
        stages = list(model.stages.children())
        return [model.stem, *stages[:-1], nn.Sequential(stages[-1], model.norm_pre)]
    return []


def build_network(model: nn.Module, num_classes: int, train_layers: int | None, name: str, seed: int) -> Network:
    """The backbone with a new `num_classes` head (seeded init), split for `train_layers`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_classifier(num_classes)
    units = split_units(model) if train_layers is not None else []
    if train_layers is not None:
        if not units:
            raise ConfigError(f"--train-layers {train_layers}: olymp cannot split {name!r} into stages "
                              "(EfficientNet, MobileNet, ResNet and ConvNeXt families only); pass --train-layers all")
        if train_layers > len(units) - 1:
            raise ConfigError(f"--train-layers {train_layers}: {name} has {len(units) - 1} stages above its stem; "
                              f"pass --train-layers {len(units) - 1} or fewer, or all")
    return Network(model, units, train_layers)
