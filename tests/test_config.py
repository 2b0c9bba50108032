"""The one typed config loader (pipelines.core.config): unknown keys refused with the nearest
name, values checked against the field types, element types included."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pipelines.core.config import check_fields, check_instance
from pipelines.core.errors import ConfigError
from pipelines.extract.config import ExtractConfig
from pipelines.train.train import TrainConfig, _validate


@dataclass
class Example:
    name: str  # required
    sizes: list[int] = field(default_factory=list)
    rate: float | None = None
    params: dict[str, int] = field(default_factory=dict)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"name": "a", "sizes": ["a"]}, "'sizes' in t.toml is ['a'], expected list[int]"),
        ({"name": "a", "sizes": [1, True]}, "expected list[int]"),  # a bool is not an int
        ({"name": "a", "rate": "fast"}, "'rate' in t.toml"),
        ({"name": "a", "params": {"k": 1.5}}, "'params' in t.toml"),
        ({"name": "a", "sizs": [1]}, "unknown key 'sizs' in t.toml; did you mean 'sizes'?"),
        ({"sizes": [1]}, "t.toml has no 'name'"),
    ],
)
def test_check_fields_refuses_by_name(values, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("(", r"\(").replace("?", r"\?")):
        check_fields(Example, values, "t.toml")


def test_check_fields_accepts_well_typed_values():
    values = {"name": "a", "sizes": [1, 2], "rate": 3, "params": {"k": 1}}  # an int is a float
    assert check_fields(Example, values, "t.toml") is values


def test_check_instance_takes_paths_for_strings(tmp_path):
    check_instance(Example(name=tmp_path, sizes=(1, 2)), "example")  # a Path and a tuple built in code
    with pytest.raises(ConfigError, match=r"example.sizes = \['x'\] \(option --sizes\) is invalid"):
        check_instance(Example(name="a", sizes=["x"]), "example")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"pool": "median"}, "extract.pool = 'median' is not one of mean, max, meanmax; pass --pool"),
        ({"max_error_rate": 2.0}, "extract.max_error_rate = 2.0 (option --max-error-rate) is invalid: use a share"),
        ({"workers": -1}, "extract.workers = -1 (option --workers) is invalid: use a whole number ≥ 0, or leave it out"),
        ({"window": -1.0}, "extract.window = -1.0 (option --window)"),
        ({"workers": "two"}, "extract.workers = 'two' (option --workers) is invalid: expected"),
    ],
)
def test_extract_config_checks_types_and_pool_before_any_model_loads(settings, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        ExtractConfig(inputs="in", output="out", **settings)


def test_train_config_element_types():
    with pytest.raises(ConfigError, match=r"head.seeds = \['a'\] \(option --seeds\)"):
        _validate(TrainConfig(embeddings=["e"], labels="l.csv", output="o", seeds=["a"]))
