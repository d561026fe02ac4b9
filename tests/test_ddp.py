"""Distributed training: two CPU processes (gloo) under torchrun end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from vidda.data.datasets.synthetic import SynthConfig, generate
from vidda.engine import distributed

CONFIGS = Path(__file__).parents[1] / "configs" / "demo"

SCRIPT = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from pathlib import Path
    from vidda.config import load_config
    from vidda.engine.distributed import distributed_run
    from vidda.engine.trainer import RunOptions, Trainer

    cfg_path, out, *overrides = sys.argv[1:]
    cfg = load_config(cfg_path, overrides)
    with distributed_run(cfg.train.device) as info:  # as vidda.engine.run.train joins the group
        trainer = Trainer(cfg, RunOptions(Path(out), progress=False), info)
        result = trainer.run()
        rank, world = dist.get_rank(), dist.get_world_size()
    assert not dist.is_initialized()  # the group is left at the end of the run
    state = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    torch.save({"world": world, "step": result["step"], "student": state},
               Path(out) / f"rank{rank}.pt")
    """
)


def test_two_gloo_processes_keep_identical_weights(tmp_path: Path):
    synth = generate(tmp_path / "synth", seed=2, cfg=SynthConfig(
        height=32, width=64, clips={"train": 2, "val": 1}, frames_per_clip=4))  # fmt: skip
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    overrides = [f"data.{k}.root={synth}" for k in ("source", "target", "val")] + [
        "data.source.crop_size=[32,32]", "data.target.crop_size=[32,32]", "data.batch_size=1",
        "data.num_workers=0", "schedule.iters=3", "train.log_every=1", "train.eval_every=3",
        "model.head_kwargs.embed_dim=32",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=29517", str(script), str(CONFIGS / "dacs_mic.yaml"),
         str(tmp_path / "run"), *overrides],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    a = torch.load(tmp_path / "run" / "rank0.pt")
    b = torch.load(tmp_path / "run" / "rank1.pt")
    assert a["world"] == b["world"] == 2 and a["step"] == b["step"] == 3
    a, b = a["student"], b["student"]
    for key, value in a.items():
        if "running" in key or "num_batches" in key:
            continue  # BN statistics are per process (buffers are not broadcast, as the original)
        assert torch.equal(value, b[key]), key
    assert (tmp_path / "run" / "latest.pt").is_file()  # written by rank 0 only
    assert not (tmp_path / "run" / "rank1").exists()


def test_distributed_run_leaves_only_a_group_it_joined(tmp_path: Path, monkeypatch):
    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; the group itself has one rank
    monkeypatch.setenv("RANK", "0")
    store, real_init = f"file://{tmp_path / 'store'}", dist.init_process_group

    def init(backend: str) -> None:
        real_init(backend, init_method=store, rank=0, world_size=1)

    monkeypatch.setattr(distributed.dist, "init_process_group", init)
    with pytest.raises(RuntimeError, match="boom"), distributed.distributed_run("cpu") as info:
        assert info.enabled and dist.is_initialized()
        raise RuntimeError("boom")
    assert not dist.is_initialized()  # joined here: left at the end, also after an error

    init("gloo")  # a caller that joined the group itself keeps it
    try:
        with distributed.distributed_run("cpu") as info:
            assert info.enabled
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
