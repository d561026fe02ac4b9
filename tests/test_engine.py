"""The training engine: methods run, resume is exact, bad runs stop clearly, checkpoints survive."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidda.cli import main
from vidda.config import load_config
from vidda.data.datasets.synthetic import SynthConfig, generate
from vidda.engine.checkpoint import CheckpointError, load_checkpoint
from vidda.engine.run import train
from vidda.engine.trainer import DivergedError

CONFIGS = Path(__file__).parents[1] / "configs" / "demo"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(height=32, width=64, clips={"train": 2, "val": 1}, frames_per_clip=4)
    return generate(root, seed=1, cfg=cfg)


def tiny(synth: Path, method: str = "source_only", *extra: str):
    overrides = [
        f"data.{k}.root={synth}" for k in ("source", "target", "val")
    ] + [
        "data.source.crop_size=[32,32]", "data.target.crop_size=[32,32]", "data.batch_size=2",
        "data.num_workers=0", "schedule.iters=6", "schedule.warmup_iters=2",
        "train.log_every=1", "model.head_kwargs.embed_dim=32", "deterministic=true",
        *extra,
    ]  # fmt: skip
    return load_config(CONFIGS / f"{method}.yaml", overrides)


@pytest.mark.parametrize(
    "method,extra",
    [
        ("source_only", ()),
        ("dacs_mic", ()),
        ("dacs_mic", ("method.fd.enabled=true", "method.mic.enabled=false")),
        ("source_only", ("method.name=target_only",)),
        ("dacs_mic", ("train.amp=bf16", "train.image_every=2")),
    ],
)
def test_each_method_trains_a_few_iterations(synth: Path, tmp_path: Path, method, extra):
    result = train(tiny(synth, method, *extra, "train.eval_every=3"), tmp_path, progress=False)
    assert result["step"] == 6
    assert set(result["eval"]) == {"standard", "uvda", "label_free"}
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 6
    assert (tmp_path / "latest.pt").is_file() and (tmp_path / "config.yaml").is_file()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def states_equal(a: dict, b: dict) -> None:
    for name in a["models"]:
        for key, value in a["models"][name].items():
            assert torch.equal(value, b["models"][name][key]), f"{name}.{key}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for field in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[k][field], sb[k][field]), (k, field)


def test_stop_and_resume_ends_with_identical_weights(synth: Path, tmp_path: Path):
    cfg = tiny(synth, "dacs_mic", "train.eval_every=0")
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "split", stop_after=3, progress=False)
    first = load_checkpoint(tmp_path / "split" / "latest.pt")
    assert first["step"] == 3
    train(cfg, tmp_path / "split", resume="auto", progress=False)
    a = load_checkpoint(tmp_path / "straight" / "latest.pt")
    b = load_checkpoint(tmp_path / "split" / "latest.pt")
    assert a["step"] == b["step"] == 6 and set(a["models"]) == {"student", "teacher"}
    states_equal(a, b)


def test_nan_loss_stops_naming_the_iteration_and_keeps_the_checkpoint(synth, tmp_path, monkeypatch):
    from vidda.models.segmentors.encoder_decoder import EncoderDecoder

    calls = {"n": 0}
    loss = EncoderDecoder.loss

    def poisoned(self, outputs, label, weight=None):
        calls["n"] += 1
        out = loss(self, outputs, label, weight)
        return {k: v * float("nan") for k, v in out.items()} if calls["n"] >= 4 else out

    monkeypatch.setattr(EncoderDecoder, "loss", poisoned)
    cfg = tiny(synth, "source_only", "train.checkpoint_every=2", "train.log_every=3")
    with pytest.raises(DivergedError, match=r"non-finite loss at iteration 4: loss_seg_sou=nan"):
        train(cfg, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "latest.pt")  # written after iteration 2, still good
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["models"]["student"].values()
               if v.is_floating_point())  # fmt: skip


def test_checkpoint_from_another_architecture_is_refused(synth, tmp_path):
    train(tiny(synth, "source_only", "schedule.iters=1"), tmp_path / "a", progress=False)
    other = tiny(synth, "source_only", "model.head_kwargs.embed_dim=16")
    with pytest.raises(CheckpointError, match="does not fit"):
        train(other, tmp_path / "b", resume=str(tmp_path / "a" / "latest.pt"), progress=False)


def test_out_of_disk_on_save_keeps_the_previous_checkpoint(synth, tmp_path, monkeypatch):
    cfg = tiny(synth, "source_only", "train.checkpoint_every=2")
    train(cfg, tmp_path, stop_after=2, progress=False)
    before = (tmp_path / "latest.pt").read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="previous one is intact"):
        train(cfg, tmp_path, resume="auto", progress=False)
    assert (tmp_path / "latest.pt").read_bytes() == before
    assert not list(tmp_path.glob(".latest.pt.tmp*"))


def test_unknown_method_and_dry_run(synth, tmp_path, capsys):
    cfg = CONFIGS / "source_only.yaml"
    assert main(["train", str(cfg), "method.name=fancy", "--dry-run"]) == 2
    assert "method.name: 'fancy' is not one of" in capsys.readouterr().err
    assert main(["train", str(cfg), "--dry-run"]) == 0
    assert "method: Supervised" in capsys.readouterr().err


def test_vidda_eval_reports_both_protocols_and_saves_maps(synth, tmp_path, capsys):
    import cv2
    import numpy as np

    from vidda.classes import ID_TO_TRAIN_ID

    train(tiny(synth, "source_only", "schedule.iters=2"), tmp_path / "run", progress=False)
    overrides = [f"data.val.root={synth}", "model.head_kwargs.embed_dim=32"]
    argv = ["eval", str(CONFIGS / "source_only.yaml"), str(tmp_path / "run" / "latest.pt"),
            *overrides, "--out", str(tmp_path / "ev"), "--save", "trainid", "labelid", "color",
            "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "== standard protocol" in out and "== uvda protocol" in out and "mIoU" in out
    doc = __import__("json").loads((tmp_path / "ev" / "eval.json").read_text())
    assert set(doc["results"]) == {"standard", "uvda", "label_free"}
    assert "== label-free: confidence" in out
    train_ids = sorted((tmp_path / "ev" / "trainid").glob("*.png"))
    label_ids = sorted((tmp_path / "ev" / "labelid").glob("*.png"))
    assert len(train_ids) == len(label_ids) == len(list((tmp_path / "ev" / "color").glob("*")))
    assert len(train_ids) == 2  # one val clip of 4 frames, samples from frame 2
    for a, b in zip(train_ids, label_ids, strict=True):
        t = cv2.imread(str(a), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(ID_TO_TRAIN_ID[cv2.imread(str(b), cv2.IMREAD_UNCHANGED)], t)
    bad = [*argv[:3], *overrides, "model.head_kwargs.embed_dim=48"]
    assert main(bad) == 2
    assert "does not fit" in capsys.readouterr().err


def test_unreadable_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "latest.pt"
    bad.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: not a readable vidda checkpoint (")
    assert "\n" not in message
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
