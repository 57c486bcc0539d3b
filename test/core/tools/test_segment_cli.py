"""fcclip-segment writes an overlay PNG, a segment-id PNG and a JSON that agree with each other."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fcclip_core.tools.segment", *args],
                          capture_output=True, text=True, timeout=600)


def test_segments_an_image_and_a_video(reference_root, tmp_path):
    frames = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(frames), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    for k in range(4):
        writer.write(np.full((64, 96, 3), 40 * k, np.uint8))
    writer.release()
    image = REPO_ROOT / "demo_images" / "chelsea.jpg"
    out = tmp_path / "out"
    done = run_cli(str(image), str(frames), "-o", str(out), "--model-config", "fixture_tiny",
                   "--weights", str(reference_root / "tiny" / "weights.pth"), "--short-side", "128",
                   "--video-stride", "2", "--vocabulary", "cat, kitty", "carpet, rug", "wall", "--stuff", "carpet", "wall")
    assert done.returncode == 0, done.stderr
    assert "wrote results of 3 image(s)" in done.stdout

    overlay = cv2.imread(str(out / "chelsea_overlay.png"))
    assert overlay.shape == (300, 451, 3)
    ids = cv2.imread(str(out / "chelsea_panoptic.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and ids.shape == (300, 451)
    doc = json.loads((out / "chelsea_segments.json").read_text())
    assert (doc["height"], doc["width"]) == (300, 451)
    assert [v["label"] for v in doc["vocabulary"]] == ["cat", "carpet", "wall"]
    assert [v["isthing"] for v in doc["vocabulary"]] == [True, False, False]
    assert {s["id"] for s in doc["segments"]} == set(np.unique(ids).tolist()) - {0}
    for segment in doc["segments"]:
        assert segment["area"] == int((ids == segment["id"]).sum())
        assert segment["label"] == doc["vocabulary"][segment["category_id"]]["label"]
    assert (out / "clip_f000000_segments.json").is_file() and (out / "clip_f000002_segments.json").is_file()
    assert not (out / "clip_f000001_segments.json").exists()


def test_video_frames_get_track_ids_that_persist(reference_root, tmp_path):
    image = cv2.imread(str(REPO_ROOT / "demo_images" / "chelsea.jpg"))[:128, :192]
    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (192, 128))
    for _ in range(4):
        writer.write(image)
    writer.release()
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    out = tmp_path / "out"
    done = run_cli(str(video), str(tmp_path / "photo.png"), "-o", str(out), "--model-config", "fixture_tiny",
                   "--weights", str(reference_root / "tiny" / "weights.pth"), "--short-side", "128",
                   "--vocabulary", "cat, kitty", "carpet, rug", "wall", "--stuff", "carpet", "wall")
    assert done.returncode == 0, done.stderr
    docs = [json.loads((out / f"still_f{i:06d}_segments.json").read_text()) for i in range(4)]
    assert docs[0]["segments"], "the tiny model should give segments"
    tracks = [{s["id"]: s["track_id"] for s in doc["segments"]} for doc in docs]
    # stuff has its id at once, things from their second frame on
    assert all((s["track_id"] > 0) == (not s["isthing"]) for s in docs[0]["segments"])
    assert tracks[1] == tracks[2] == tracks[3] and all(t > 0 for t in tracks[1].values())
    photo = json.loads((out / "photo_segments.json").read_text())
    assert all("track_id" not in s for s in photo["segments"])  # a single image is not tracked
    again = run_cli(str(video), "-o", str(tmp_path / "untracked"), "--model-config", "fixture_tiny",
                    "--weights", str(reference_root / "tiny" / "weights.pth"), "--short-side", "128",
                    "--max-frames", "1", "--no-track")
    assert again.returncode == 0, again.stderr
    doc = json.loads((tmp_path / "untracked" / "still_f000000_segments.json").read_text())
    assert all("track_id" not in s for s in doc["segments"])


def test_a_resnet_model_is_chosen_by_its_config_name(reference_root, tmp_path):
    folder = reference_root / "rn_tiny"
    image = tmp_path / "chelsea.png"
    cv2.imwrite(str(image), np.load(folder / "inputs.npz")["image0_orig_rgb"][:, :, ::-1])
    vocab = json.loads((folder / "vocab.json").read_text())
    stuff = [c.split(",")[0] for c, thing in zip(vocab["stuff_classes"], vocab["isthing"]) if not thing]
    done = run_cli(str(image), "-o", str(tmp_path / "out"), "--model-config", "fixture_rn_tiny",
                   "--weights", str(folder / "weights.pth"), "--short-side", "128",
                   "--vocabulary", *vocab["stuff_classes"], "--stuff", *stuff)
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "out" / "chelsea_segments.json").read_text())
    expected = torch.load(folder / "expected.pt", weights_only=False)["images"][0]
    assert [(s["id"], s["category_id"], s["label"]) for s in doc["segments"]] == [
        (s["id"], s["category_id"], "dog") for s in expected["segments_info"]]
    ids = cv2.imread(str(tmp_path / "out" / "chelsea_panoptic.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(ids, expected["panoptic_seg"].numpy())


def test_clear_errors(tmp_path):
    missing = run_cli(str(tmp_path / "nope.jpg"), "-o", str(tmp_path), "--untrained", "--model-config", "fixture_tiny")
    assert missing.returncode != 0 and "no such file" in missing.stderr
    no_weights = subprocess.run(
        [sys.executable, "-m", "fcclip_core.tools.segment", str(REPO_ROOT / "demo_images" / "coffee.jpg"),
         "-o", str(tmp_path)], capture_output=True, text=True, timeout=600,
        env={**os.environ, "FCCLIP_WEIGHTS_DIR": str(tmp_path / "empty-cache")})
    assert no_weights.returncode != 0 and "fcclip-weights download convnext_large" in no_weights.stderr
    bad_vocab = run_cli(str(REPO_ROOT / "demo_images" / "coffee.jpg"), "-o", str(tmp_path), "--untrained",
                        "--model-config", "fixture_tiny", "--vocabulary", "cup", "cup")
    assert bad_vocab.returncode != 0 and "cup" in bad_vocab.stderr


def test_precision_option(tmp_path):
    image = str(REPO_ROOT / "demo_images" / "coffee.jpg")
    done = run_cli(image, "-o", str(tmp_path), "--untrained", "--model-config", "fixture_tiny",
                   "--short-side", "64", "--precision", "bf16")
    assert done.returncode == 0, done.stderr
    assert "precision bf16 (requested)" in done.stderr
    assert json.loads((tmp_path / "coffee_segments.json").read_text())["height"] > 0
    bad = run_cli(image, "-o", str(tmp_path), "--untrained", "--model-config", "fixture_tiny", "--precision", "fp8")
    assert bad.returncode != 0 and "invalid choice: 'fp8'" in bad.stderr
