"""--tta hflip at extract, and predict refusing to mix TTA and plain embeddings unless told."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import load_manifest, read_embeddings
from tests.image_files import write_images

TINY = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu", "--precision", "fp32"]
runner = CliRunner()


def invoke(*args, expect: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, result.output
    return result


def test_hflip_is_the_mean_of_the_image_and_its_mirror(tmp_path):
    paths = write_images(tmp_path / "imgs", 4, size=(64, 48))
    (tmp_path / "mirrored").mkdir()
    for path in paths:
        mirrored = Image.open(path).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        mirrored.save(tmp_path / "mirrored" / f"{path.stem}.png")  # lossless: the same pixels, mirrored
    invoke("extract", tmp_path / "imgs", "-o", tmp_path / "tta", *TINY, "--tta", "hflip")
    invoke("extract", tmp_path / "imgs", "-o", tmp_path / "plain", *TINY)
    invoke("extract", tmp_path / "mirrored", "-o", tmp_path / "mirror", *TINY)
    tta, plain, mirror = (read_embeddings(tmp_path / name) for name in ("tta", "plain", "mirror"))
    assert list(tta.ids) == list(plain.ids) == list(mirror.ids)
    # 64x48 → resize + center crop commutes with the mirror, so the mean is exact up to float error
    np.testing.assert_allclose(tta.vectors, (plain.vectors + mirror.vectors) / 2, rtol=1e-4, atol=1e-5)
    assert not np.allclose(tta.vectors, plain.vectors)
    assert tta.manifest["tta"] == "hflip" and plain.manifest["tta"] == "none"
    # resuming with another --tta is another setup
    result = invoke("extract", tmp_path / "imgs", "-o", tmp_path / "tta", *TINY, expect=1)
    assert "tta" in result.stderr and "--overwrite" in result.stderr


def test_predict_refuses_to_mix_tta_and_plain_embeddings_unless_told(tmp_path):
    write_images(tmp_path / "train", 12, size=(40, 40))
    write_images(tmp_path / "test", 4, size=(40, 40), seed=5, prefix="t")
    ids = [f"img-{i:03d}" for i in range(12)]
    pd.DataFrame({"id": ids, "label": [f"c{i % 2}" for i in range(12)]}).to_csv(tmp_path / "labels.csv", index=False)
    invoke("extract", tmp_path / "train", "-o", tmp_path / "emb", *TINY, "--tta", "hflip")
    invoke("train-head", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "--head", "logreg", "--folds", "2",
           "-o", tmp_path / "run")
    invoke("extract", tmp_path / "test", "-o", tmp_path / "test_plain", *TINY)

    refused = invoke("predict", tmp_path / "run", tmp_path / "test_plain", "-o", tmp_path / "sub.csv", expect=1)
    message = refused.stderr.strip()
    assert "\n" not in message and "--tta hflip" in message and "--allow-tta-mismatch" in message, message
    assert not (tmp_path / "sub.csv").exists()

    allowed = invoke("predict", tmp_path / "run", tmp_path / "test_plain", "-o", tmp_path / "sub.csv",
                     "--allow-tta-mismatch")
    assert "allowed by --allow-tta-mismatch" in allowed.stderr and len(pd.read_csv(tmp_path / "sub.csv")) == 4

    # raw test files: re-extracted with the training TTA, so no flag is needed
    invoke("predict", tmp_path / "run", tmp_path / "test", "-o", tmp_path / "sub_raw.csv", "--device", "cpu")
    (extracted,) = (tmp_path / "run" / "test_embeddings").iterdir()
    assert load_manifest(extracted)["tta"] == "hflip"
    assert len(pd.read_csv(tmp_path / "sub_raw.csv")) == 4
