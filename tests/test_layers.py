"""`olymp extract --layers`: timm stages pooled and concatenated, recorded, part of resume's fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from typer.testing import CliRunner

from cli.app import app
from pipelines.backbones import load_backbone
from pipelines.data.embeddings import read_embeddings
from tests.image_files import write_images

TINY = ["--backbone", "test_efficientnet", "--weights", "random", "--workers", "0", "--device", "cpu"]
runner = CliRunner()


def extract_cli(*args):
    return runner.invoke(app, ["extract", *map(str, args)])


def stage_channels(name: str) -> list[int]:
    return [stage["num_chs"] for stage in timm.create_model(name, pretrained=False).feature_info]


def test_last_two_stages_give_the_documented_width_and_no_stage_twice(tmp_path):
    write_images(tmp_path / "imgs", 4)
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY, "--layers", "-2,-1")
    assert result.exit_code == 0, result.output
    channels = stage_channels("test_efficientnet")
    emb = read_embeddings(tmp_path / "emb")
    assert emb.dim == channels[-2] + channels[-1]  # each stage once: the sum of their channels
    manifest = json.loads((tmp_path / "emb" / "_manifest.json").read_text())
    assert manifest["preprocessing"]["layers"] == [len(channels) - 2, len(channels) - 1]
    assert manifest["settings"]["layers"] == "-2,-1"
    assert manifest["embedding_dim"] == emb.dim

    # The two halves are the pooled stage maps timm's forward_intermediates gives, in stage order.
    backbone = load_backbone("test_efficientnet", "random")
    images = torch.randn(2, *backbone.data_config["input_size"])
    maps = backbone.model.forward_intermediates(images, indices=[-2, -1], intermediates_only=True)
    expected = torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)
    got = backbone.with_layers("-2,-1").embed(images)
    torch.testing.assert_close(got, expected)


def test_last_stage_is_not_the_pre_logits_where_the_model_has_a_head():
    plain = load_backbone("test_efficientnet", "random")
    last = load_backbone("test_efficientnet", "random").with_layers("-1")
    assert last.embedding_dim == stage_channels("test_efficientnet")[-1]
    assert plain.embedding_dim == plain.model.num_features != last.embedding_dim


def test_layers_are_part_of_the_resume_fingerprint(tmp_path):
    write_images(tmp_path / "imgs", 3)
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY).exit_code == 0
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY, "--layers", "-1")
    assert result.exit_code == 1
    assert "another setup" in result.stderr and "--overwrite" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("layers, message", [
    ("-1,4", "twice"),  # 5 stages: -1 and 4 are the same stage
    ("-1,-1", "twice"),
    ("7", "has 5 stages"),
    ("last", "comma-separated"),
])
def test_bad_layers_are_one_line_errors(tmp_path, layers, message):
    write_images(tmp_path / "imgs", 2)
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY, "--layers", layers)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "emb").exists() or not any((tmp_path / "emb").glob("part-*"))


def test_layers_embeddings_match_between_batches(tmp_path):
    write_images(tmp_path / "imgs", 5)
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "a", *TINY, "--layers", "-2,-1", "--batch-size", "1").exit_code == 0
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "b", *TINY, "--layers", "-2,-1", "--batch-size", "5").exit_code == 0
    a, b = read_embeddings(tmp_path / "a"), read_embeddings(tmp_path / "b")
    order_a, order_b = np.argsort(a.ids), np.argsort(b.ids)
    np.testing.assert_allclose(a.vectors[order_a], b.vectors[order_b], rtol=1e-4, atol=1e-5)
