"""pipelines.core.device: the one place a device and a precision are picked."""

from __future__ import annotations

import pytest
import torch

from pipelines.core.device import auto_device_name, check_device_name, resolve_device, resolve_precision
from pipelines.core.errors import ConfigError


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_names_are_read_without_torch(name):
    assert check_device_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "CPU"])
def test_bad_device_names_are_refused_with_the_fix(name):
    with pytest.raises(ConfigError, match=r"extract.device = .* is not auto, cpu, cuda or cuda:N; fix \[extract\] device"):
        check_device_name(name, "extract.device", "fix [extract] device")


def test_resolve_device_names_the_option_it_came_from(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and auto_device_name("auto") == "cpu"
    with pytest.raises(ConfigError, match="--param device=cuda asked for, but no CUDA GPU is visible; use --param device=cpu"):
        resolve_device("cuda", "--param device=")
    with pytest.raises(ConfigError, match="--device cuda:0 asked for"):
        resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_precision_follows_the_device():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="unknown precision"):
        resolve_precision("int8", cpu)
