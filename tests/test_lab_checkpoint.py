"""Atomic checkpoint writing, Ctrl+C that saves, and resuming where a run stopped."""

import os
import signal

import pytest
import torch

from lab import LabError
from lab.checkpoint import (
    InterruptGuard,
    atomic_write,
    check_compatible,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)


def test_interrupted_write_leaves_old_checkpoint_intact(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.ones(3)})

    def crash_half_way(tmp):
        tmp.write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt  # Ctrl+C in the middle of torch.save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash_half_way)
    checkpoint = load_checkpoint(path)
    assert checkpoint["step"] == 1 and torch.equal(checkpoint["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(LabError, match="--fresh"):
        load_checkpoint(path)
    with pytest.raises(LabError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_incompatible_constants_are_named():
    with pytest.raises(LabError, match="HIDDEN: checkpoint has 8, this run has 16"):
        check_compatible({"HIDDEN": 8, "LR": 1}, {"HIDDEN": 16, "LR": 2}, ["HIDDEN"], "x.pt")
    check_compatible({"HIDDEN": 8, "LR": 1}, {"HIDDEN": 8, "LR": 2}, ["HIDDEN"], "x.pt")


def test_strict_load_lists_missing_and_unexpected_keys():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    state = model.state_dict()
    state["9.weight"] = state.pop("1.weight")
    with pytest.raises(LabError) as error:
        load_state_dict_strict(model, state, "checkpoint x.pt")
    assert "missing keys: 1.weight" in str(error.value) and "unexpected keys: 9.weight" in str(error.value)


def _train(path, steps, interrupt_at=None):
    """A tiny regression trained with the lab's checkpoint pattern; returns (weights, step reached)."""
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    start = 0
    if path.exists():
        checkpoint = load_checkpoint(path)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start = checkpoint["step"]
    step = start
    with InterruptGuard() as guard:
        for step in range(start, steps):
            generator = torch.Generator().manual_seed(step)  # the data of a step depends on the step only
            x = torch.randn(32, 4, generator=generator)
            loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step + 1 == interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl+C
            if guard.requested:
                step += 1
                break
        else:
            step = steps
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step})
    return model.weight.detach().clone(), step


def test_ctrl_c_saves_and_rerun_resumes_to_the_same_result(tmp_path):
    handler_before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup
    torch.manual_seed(0)
    uninterrupted, _ = _train(tmp_path / "a.pt", 10)
    torch.manual_seed(0)
    _, stopped_at = _train(tmp_path / "b.pt", 10, interrupt_at=4)
    assert stopped_at == 4 and load_checkpoint(tmp_path / "b.pt")["step"] == 4
    resumed, finished_at = _train(tmp_path / "b.pt", 10)
    assert finished_at == 10
    assert torch.allclose(resumed, uninterrupted)
    # After the guard, Ctrl+C does what it did before it.
    assert signal.getsignal(signal.SIGINT) is handler_before
