from __future__ import annotations

import pickle

import pytest
import torch

from convnas.errors import CheckpointError
from convnas.io import atomic_open, load_checkpoint, save_checkpoint


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("half of the new")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_round_trip_and_rejections(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"w": torch.arange(4.0), "epoch": 3, "rng": (1, (2, 3), None)})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.arange(4.0))
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    flipped = bytearray(data)
    flipped[len(flipped) // 3] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="damaged|corrupt"):
        load_checkpoint(tmp_path / "flipped.pt")

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, evil, pickle_module=pickle)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    torch.save({"epoch": 3}, tmp_path / "plain.pt")  # a torch file, not a sealed checkpoint
    with pytest.raises(CheckpointError, match="does not hold a convnas checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="does not hold a convnas checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
