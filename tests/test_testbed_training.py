"""The test bed's trainer: the batch stream, warm start, and the prepared GPU run rehearsed on the CPU."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from rhymeflow_core.testbed.model_io import CARD_NAME, CHECKPOINT_NAME, checkpoint_path, load_card, load_model
from rhymeflow_core.testbed.train import FIT_FROM, FRAMES_RANGE, batch_stream, clip_frames, main

REPO = Path(__file__).resolve().parents[1]
needs_checkpoint = pytest.mark.skipif(not checkpoint_path().exists(), reason="trained test-bed checkpoint not present")


def test_batch_stream_is_in_step_order_whatever_the_workers():
    """Worker processes render batches ahead, and the optimizer still sees step k's batch at step k."""
    serial = [b for _, b in zip(range(4), batch_stream(5, 2, seed=0, workers=0))]
    parallel = [b for _, b in zip(range(4), batch_stream(5, 2, seed=0, workers=2))]
    assert [s for s, _, _ in serial] == [s for s, _, _ in parallel] == [5, 6, 7, 8]
    for (_, xa, ca), (_, xb, cb) in zip(serial, parallel):
        torch.testing.assert_close(xa, xb, atol=0, rtol=0)
        assert torch.equal(ca, cb)
    frames = [clip_frames(s, 0) for s in range(40)]
    assert [x.shape[2] for _, x, _ in serial] == frames[5:9]  # clip length is the step's, not the stream's
    assert set(frames) <= set(range(FRAMES_RANGE[0], FRAMES_RANGE[1] + 1)) and len(set(frames)) > 3


@needs_checkpoint
def test_warm_start_begins_at_the_checkpoints_loss(tmp_path):
    main(["--iters", "1", "--batch", "1", "--precision", "fp32", "--init-from", str(checkpoint_path()),
          "--out", str(tmp_path), "--state", str(tmp_path / "state.pt")])
    card, shipped = json.loads((tmp_path / CARD_NAME).read_text()), load_card()
    assert card["training"]["init_from"] == str(checkpoint_path())
    assert card["data"]["scenes"] == shipped["data"]["scenes"]  # the photographs it trained on, as evaluate checks them
    assert abs(card["heldout_loss"]["at_warm_start"] - shipped["heldout_loss"]["trained_ema"]) < 0.01, card["heldout_loss"]
    before = card["training"]["before_warm_start"]  # the lineage: how the starting weights were trained
    assert (before["steps"], before["where"]) == (shipped["training"]["iters_done"], shipped["training"]["where"])
    sensitive = shipped["evaluation"]["sensitive"]["dense15_vs_dense30"]["psnr_mean"]
    assert card["previous_checkpoint"]["dense15_vs_dense30"] == f"{sensitive:.2f} dB"  # evaluate prints it beside
    with pytest.raises(SystemExit):
        main(["--resume", "--init-from", str(checkpoint_path()), "--state", str(tmp_path / "state.pt")])


def test_device_run_rehearsed_on_cpu(tmp_path):
    """tools/train_testbed_on_device.sh with CPU flags: the schedule is fitted to the minutes and ends with them,
    and the checkpoint comes back in pieces under the device's 16 MiB file limit that join to a loadable model."""
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OUT=str(out), TRAIN_EXTRA=f"--device cpu --batch 1 --workers 1 --precision fp32 --state {tmp_path / 'state.pt'}")
    run = subprocess.run(["bash", str(REPO / "tools/train_testbed_on_device.sh"), "1.2"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    weights = out / "weights"
    parts = sorted(weights.glob(f"{CHECKPOINT_NAME}.part-*"))
    assert len(parts) == 2 and all(p.stat().st_size <= 16 * 2**20 for p in parts)
    joined = tmp_path / "joined"
    joined.mkdir()
    (joined / CHECKPOINT_NAME).write_bytes(b"".join(p.read_bytes() for p in parts))
    (joined / CARD_NAME).write_bytes((weights / CARD_NAME).read_bytes())
    digest = subprocess.run(["sha256sum", CHECKPOINT_NAME], cwd=joined, capture_output=True, text=True).stdout
    assert digest == (weights / f"{CHECKPOINT_NAME}.sha256").read_text()
    load_model(joined)
    card = json.loads((joined / CARD_NAME).read_text())["training"]
    assert "--fit-minutes" in (out / "train.log").read_text()
    assert card["iters_done"] == card["iters_planned"] > FIT_FROM, card
