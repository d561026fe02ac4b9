"""Checkpoints: written atomically, read back as tensors and plain containers only.

A training checkpoint holds every model (student, teacher, frozen ImageNet copy, video
discriminator), the optimizer and the method's own optimizers (``method_optimizers``: the
discriminator's Adam with its state and learning rate), the AMP scaler, all RNG states, the
iteration (which is the data sampler's position) and the resolved config, so that
``vidda train --resume`` continues exactly.

Writing never touches the destination in place: :func:`save_checkpoint` writes
``.{name}.tmp{pid}`` next to it (same folder, so the rename cannot cross file systems), flushes
and fsyncs it, then renames it over ``{name}`` with :func:`os.replace`. An error or interrupt at
any point leaves the previous ``{name}`` as it was and removes the temporary file. A writer killed
outright (SIGKILL, out-of-memory killer, node failure) cannot remove it; the next training start
calls :func:`clean_stale_temporaries`, which deletes temporary files whose writer process is gone.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidda.errors import UserError

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\.(?P<name>.+\.pt)\.tmp(?P<pid>[0-9]+)$")
"""Name of :func:`save_checkpoint`'s temporary file for ``{name}.pt``: ``.{name}.pt.tmp{pid}``."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names it."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename.

    ``path`` itself is never opened: the bytes go to :func:`temporary_path` in the same folder.
    If writing fails or is interrupted (a full disk, any exception, ``KeyboardInterrupt``) the
    previous file at ``path`` is left intact and the temporary file is removed; a process killed
    outright leaves the temporary file for :func:`clean_stale_temporaries`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def temporary_path(path: str | os.PathLike, pid: int | None = None) -> Path:
    """The temporary file that :func:`save_checkpoint` in process ``pid`` (default: this one)
    writes before renaming it to ``path``: ``.{name}.tmp{pid}`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid() if pid is None else pid}")


def _writer_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists on this host (signal 0 checks, it sends nothing)."""
    if pid <= 0:  # 0 and negative ids address process groups: never a writer's own id
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's live process / not a process id
        return False
    return False


def clean_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary checkpoint files in ``run_dir`` that no live process is writing.

    A file ``.{name}.pt.tmp{pid}`` (see :func:`temporary_path`) is stale when no process ``pid``
    exists on this host. Files of live processes are kept: another rank or another run may be
    writing them right now. A file carrying the caller's own pid counts as stale: the caller has
    no write in flight (:func:`save_checkpoint` removes its temporary file before it returns), so
    an earlier process with the same pid left it, as happens when a job restarts in a fresh
    container. Call this where no checkpoint write of this process can be in flight (the trainer
    does at start, on rank 0, the only rank that writes checkpoints). Liveness is checked on this
    host only; a run folder shared with a writer that is running on another machine must not be
    cleaned from here.

    Other files are never touched (only regular files whose whole name matches the pattern).

    Returns:
        the removed paths, sorted (empty when ``run_dir`` does not exist).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    me = os.getpid()
    removed: list[Path] = []
    for entry in sorted(run_dir.iterdir()):
        match = _TEMPORARY.match(entry.name)
        if match is None or not entry.is_file() or entry.is_symlink():
            continue
        pid = int(match["pid"])
        if pid != me and not _writer_gone(pid):
            continue
        try:
            entry.unlink()
        except FileNotFoundError:  # its writer's own clean-up got there first
            continue
        removed.append(entry)
    if removed:
        names = ", ".join(p.name for p in removed)
        log.warning("removed %d temporary checkpoint file(s) left by a killed writer in %s: %s",
                    len(removed), run_dir, names)  # fmt: skip
    return removed


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary objects are unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable vidda checkpoint ({first})") from err


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states as tensors and plain containers."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
