"""Checkpoint writes under faults: errors, interrupts and SIGKILL at any point of a save never cost
the previous ``latest.pt``; temporary files of killed writers are removed at the next start."""

from __future__ import annotations

import builtins
import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from vidda.config import load_config
from vidda.data.datasets.synthetic import SynthConfig, generate
from vidda.engine import checkpoint as ckpt
from vidda.engine.checkpoint import (
    CheckpointError,
    clean_stale_temporaries,
    load_checkpoint,
    save_checkpoint,
    temporary_path,
)
from vidda.engine.trainer import RunOptions, Trainer

CONFIGS = Path(__file__).parents[1] / "configs" / "demo"
REPO = Path(__file__).parents[1]


def state(step: int, n: int = 1000) -> dict[str, Any]:
    """A checkpoint-like state whose every entry depends on ``step``."""
    return {"step": step, "models": {"student": {"w": torch.arange(n, dtype=torch.float32) + step}},
            "best": {"miou_standard": float(step)}, "rng": [step, (1, 2), "x"]}  # fmt: skip


def assert_same(a: Any, b: Any) -> None:
    """Deep equality of nested dicts / lists / tuples of tensors and plain values."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".latest.pt.tmp*"))


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    return child.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The id of a running process (stands for another rank mid-write)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


# --------------------------------------------------------------------------- errors mid-write


def _partial_torch_save(exc: BaseException):
    """A torch.save that writes the first half of the real bytes, then raises ``exc``."""
    real = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        buf = io.BytesIO()
        real(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        raise exc

    return save


def _raise(exc: BaseException):
    def fail(*args: Any, **kwargs: Any) -> None:
        raise exc

    return fail


FAULTS = {
    "torch.save, disk full": ("save", OSError(28, "No space left on device")),
    "torch.save, Ctrl-C": ("save", KeyboardInterrupt()),
    "torch.save, a bug": ("save", RuntimeError("pickling failed")),
    "fsync": ("fsync", OSError(5, "Input/output error")),
    "rename": ("replace", OSError(18, "Invalid cross-device link")),
}


def _inject(monkeypatch: pytest.MonkeyPatch, where: str, exc: BaseException) -> None:
    if where == "save":
        monkeypatch.setattr(torch, "save", _partial_torch_save(exc))
    else:
        monkeypatch.setattr(ckpt.os, where, _raise(exc))


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_write_keeps_the_previous_checkpoint_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
):
    where, exc = FAULTS[fault]
    path = tmp_path / "latest.pt"
    save_checkpoint(state(1), path)
    before = path.read_bytes()
    _inject(monkeypatch, where, exc)
    with pytest.raises(type(exc)):
        save_checkpoint(state(2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert_same(load_checkpoint(path), state(1))
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_first_write_leaves_no_file_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
):
    where, exc = FAULTS[fault]
    _inject(monkeypatch, where, exc)
    with pytest.raises(type(exc)):
        save_checkpoint(state(1), tmp_path / "latest.pt")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- SIGKILL mid-write

_SLOW_WRITER = textwrap.dedent("""
    import io, sys, time
    import torch
    from vidda.engine.checkpoint import save_checkpoint
    real = torch.save
    def stalled(obj, f, *args, **kwargs):  # half the bytes reach the disk, then the writer hangs
        buf = io.BytesIO()
        real(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        print(len(data) // 2, flush=True)
        time.sleep(600)
    torch.save = stalled
    save_checkpoint({"step": 2, "w": torch.zeros(100000)}, sys.argv[1])
""")

_LOOP_WRITER = textwrap.dedent("""
    import sys
    import torch
    from vidda.engine.checkpoint import save_checkpoint
    print("started", flush=True)
    step = 2
    while True:  # until killed
        save_checkpoint({"step": step, "w": torch.full((1 << 20,), float(step))}, sys.argv[1])
        step += 1
""")


def _writer(script: str, path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


def test_sigkill_mid_write_keeps_the_previous_checkpoint_and_leaves_the_temporary(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(state(1), path)
    before = path.read_bytes()
    child = _writer(_SLOW_WRITER, path)
    try:
        written = int(child.stdout.readline())  # the child is now stalled mid-write
        tmp = temporary_path(path, child.pid)
        assert tmp.is_file() and tmp.stat().st_size == written > 0
        assert path.read_bytes() == before  # nothing reached latest.pt while writing
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert_same(load_checkpoint(path), state(1))
    assert temporaries(tmp_path) == [tmp]  # a killed writer cannot clean up ...
    assert clean_stale_temporaries(tmp_path) == [tmp]  # ... the next start does
    assert temporaries(tmp_path) == [] and path.read_bytes() == before


def test_sigkill_at_an_arbitrary_point_of_repeated_saves_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint({"step": 1, "w": torch.full((1 << 20,), 1.0)}, path)
    child = _writer(_LOOP_WRITER, path)
    tmp = temporary_path(path, child.pid)
    try:
        assert child.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        first = path.stat().st_mtime_ns
        while not (tmp.exists() and path.stat().st_mtime_ns != first):  # mid-way, after a save
            assert time.monotonic() < deadline, "the writer never got going"
            time.sleep(0.001)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    got = load_checkpoint(path)
    assert got["step"] >= 2 and torch.equal(got["w"], torch.full((1 << 20,), float(got["step"])))
    assert set(temporaries(tmp_path)) <= {tmp}
    clean_stale_temporaries(tmp_path)
    assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------- never in place


def test_save_never_opens_the_destination_for_writing(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_checkpoint(state(1), path)
    opened: list[tuple[Path, str]] = []
    saved_to: list[Any] = []
    renamed: list[tuple[Path, Path]] = []
    real_open, real_os_open = builtins.open, os.open
    real_save, real_replace = torch.save, os.replace

    def rec_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any):
        if isinstance(file, str | os.PathLike):
            opened.append((Path(file), mode))
        return real_open(file, mode, *args, **kwargs)

    def rec_os_open(file: Any, flags: int, *args: Any, **kwargs: Any):
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND)
        opened.append((Path(file), "w" if writes else "r"))
        return real_os_open(file, flags, *args, **kwargs)

    def rec_save(obj: Any, f: Any, *args: Any, **kwargs: Any):
        saved_to.append(Path(f) if isinstance(f, str | os.PathLike) else Path(f.name))
        return real_save(obj, f, *args, **kwargs)

    def rec_replace(src: Any, dst: Any):
        renamed.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(builtins, "open", rec_open)
    monkeypatch.setattr(io, "open", rec_open)  # pathlib's Path.open / write_bytes
    monkeypatch.setattr(os, "open", rec_os_open)
    monkeypatch.setattr(torch, "save", rec_save)
    monkeypatch.setattr(os, "replace", rec_replace)
    save_checkpoint(state(2), path)
    monkeypatch.undo()
    writes = [(p, m) for p, m in opened if any(c in m for c in "wax+")]
    tmp = temporary_path(path)
    assert path not in [p for p, _ in writes], opened
    assert writes == [(tmp, "wb")] and saved_to == [tmp]
    assert renamed == [(tmp, path)]
    assert tmp.parent == path.parent and tmp.name.startswith(".")  # same file system, hidden
    assert_same(load_checkpoint(path), state(2))


def test_a_reader_of_the_old_file_keeps_reading_it_whole(tmp_path):
    # Written in place, the old file would be truncated under an open reader; replaced by a
    # rename, the reader keeps the complete old inode.
    path = tmp_path / "latest.pt"
    save_checkpoint(state(1, n=200_000), path)
    before = path.read_bytes()
    inode = path.stat().st_ino
    with open(path, "rb") as old:
        save_checkpoint(state(2), path)
        assert old.read() == before
    assert path.stat().st_ino != inode
    assert_same(load_checkpoint(path), state(2))


# --------------------------------------------------------------------------- stale temporaries


def test_clean_removes_only_temporaries_of_dead_writers(tmp_path, live_pid, caplog, monkeypatch):
    gone, foreign = dead_pid(), dead_pid()
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:  # ``foreign`` runs under another user id
        if pid == foreign:
            raise PermissionError(1, "Operation not permitted")
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    stale = [tmp_path / f".latest.pt.tmp{gone}", tmp_path / f".best.pt.tmp{gone}",
             tmp_path / f".latest.pt.tmp{os.getpid()}"]  # fmt: skip  # no save is in flight here
    kept = [
        tmp_path / f".latest.pt.tmp{live_pid}",  # another rank / run writing right now
        tmp_path / "latest.pt",
        tmp_path / f"latest.pt.tmp{gone}",  # not hidden: not ours
        tmp_path / f".latest.pt.tmp{gone}.bak",
        tmp_path / f".latest.pt.tmp{gone}x",
        tmp_path / ".latest.pt.tmp",
        tmp_path / f".meta.json.tmp{gone}",  # other writers' temporaries
        tmp_path / f".f.png.tmp{gone}.png",
        tmp_path / ".latest.pt.tmp0",  # 0 is a process group, never a writer
        tmp_path / f".latest.pt.tmp{10**30}",  # not a process id at all
        tmp_path / f".best.pt.tmp{foreign}",  # another user's live process
    ]
    for p in stale + kept:
        p.write_bytes(b"partial")
    folder = tmp_path / f".odd.pt.tmp{gone}"
    folder.mkdir()
    with caplog.at_level(logging.INFO, logger="vidda.engine.checkpoint"):
        removed = clean_stale_temporaries(tmp_path)
    assert removed == sorted(stale)
    assert all(not p.exists() for p in stale) and all(p.exists() for p in kept)
    assert folder.is_dir()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "3 temporary checkpoint file(s)" in record.message
    assert all(p.name in record.message for p in stale)
    caplog.clear()
    assert clean_stale_temporaries(tmp_path) == [] and not caplog.records  # quiet when clean
    assert clean_stale_temporaries(tmp_path / "missing") == []


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = SynthConfig(height=32, width=64, clips={"train": 1, "val": 0}, frames_per_clip=3)
    return generate(tmp_path_factory.mktemp("synth"), seed=1, cfg=cfg)


def one_iteration(synth: Path):
    overrides = [f"data.{k}.root={synth}" for k in ("source", "target")] + [
        "data.val.root=", "data.source.crop_size=[32,32]", "data.target.crop_size=[32,32]",
        "data.batch_size=1", "data.num_workers=0", "schedule.iters=1",
        "schedule.warmup_iters=0", "model.head_kwargs.embed_dim=16",
    ]  # fmt: skip
    return load_config(CONFIGS / "source_only.yaml", overrides)


def test_training_start_removes_stale_temporaries_fresh_and_resumed(synth, tmp_path, live_pid):
    cfg = one_iteration(synth)
    run = tmp_path / "run"
    run.mkdir()
    live = run / f".latest.pt.tmp{live_pid}"
    for resume in (None, "auto"):
        stale = [run / f".latest.pt.tmp{dead_pid()}", run / f".best.pt.tmp{dead_pid()}"]
        for p in (*stale, live):
            p.write_bytes(b"partial")
        result = Trainer(cfg, RunOptions(run, resume=resume, progress=False)).run()
        assert result["step"] == 1
        assert not any(p.exists() for p in stale), resume
        assert live.read_bytes() == b"partial", resume
        assert load_checkpoint(run / "latest.pt")["step"] == 1


class _Payload:
    """An arbitrary object: unpickling it would run code of the file's choosing."""


def test_loading_refuses_pickled_objects(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="not a readable vidda checkpoint"):
        load_checkpoint(path)
