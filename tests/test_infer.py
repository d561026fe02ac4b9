"""``vidda infer``: inputs, outputs, resume, ACCEL pairing and input errors, on a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from vidda.classes import ID_TO_TRAIN_ID, PALETTE
from vidda.cli import main
from vidda.config.load import merge_overrides, save_config
from vidda.config.plain import plain_config
from vidda.config.schema import Config, EvalConfig
from vidda.engine.checkpoint import save_checkpoint
from vidda.infer import InferOptions, Segmenter, load_model, open_source, run_infer
from vidda.infer.outputs import OutputError, PredictionFiles
from vidda.models.build import build_segmentor
from vidda.models.normalize import normalize
from vidda.models.segmentors.accel import ACCEL

TINY = [
    "model.backbone=mit_b0",
    "model.head=segformer",
    "model.backbone_kwargs={embed_dims: [8, 16, 32, 64], num_heads: [1, 1, 2, 4], "
    "depths: [1, 1, 1, 1], drop_path_rate: 0.0}",
    "model.head_kwargs={embed_dim: 16}",
]
H, W = 48, 64


def tiny_config() -> Config:
    return merge_overrides(Config(name="tiny"), TINY)


def save_ckpt(path: Path, model: nn.Module, cfg: Config | None, **models: nn.Module) -> Path:
    """A checkpoint in the layout ``vidda train`` writes (``config`` + ``models``)."""
    state = {"step": 7, "models": {"student": model.state_dict(),
                                   **{k: m.state_dict() for k, m in models.items()}}}  # fmt: skip
    if cfg is not None:
        state["config"] = plain_config(cfg)
    return save_checkpoint(state, path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = build_segmentor(tiny_config().model, load_pretrained=False).eval()
    path = save_ckpt(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, tiny_config())
    return path, model


def frames(n: int, h: int = H, w: int = W, seed: int = 0) -> list[np.ndarray]:
    """``n`` textured R,G,B frames with a bright disc moving right."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    out = []
    for i in range(n):
        img = np.roll(base, i, axis=1).copy()
        cv2.circle(img, (8 + 5 * i, h // 2), 7, (250, 250, 250), -1)
        out.append(img)
    return out


def write_video(path: Path, rgb: list[np.ndarray], codec: str = "mp4v") -> Path:
    h, w = rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, (w, h))
    assert writer.isOpened()
    for f in rgb:
        writer.write(f[..., ::-1].copy())
    writer.release()
    return path


def write_folder(folder: Path, rgb: list[np.ndarray], names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f, name in zip(rgb, names, strict=True):
        cv2.imwrite(str(folder / f"{name}.png"), f[..., ::-1])
    return folder


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def reference_prediction(model: nn.Module, rgb: np.ndarray) -> np.ndarray:
    """The tiny model's trainIds for one R,G,B frame, computed here without vidda.infer."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        return model.predict(normalize(x)).argmax(1)[0].numpy().astype(np.uint8)


def assert_palette(color_bgr: np.ndarray, trainid: np.ndarray) -> None:
    """Every colour pixel is the Cityscapes colour of its trainId (table in classes.py)."""
    for t in np.unique(trainid):
        r, g, b = PALETTE[t]
        assert (color_bgr[trainid == t] == (b, g, r)).all(), f"class {t}"


# --------------------------------------------------------------------------- video and folder


def test_video_gives_every_output_with_the_right_sizes_and_colours(tiny, tmp_path, capsys):
    ckpt, model = tiny
    video = write_video(tmp_path / "clip.mp4", frames(6))
    out = tmp_path / "out"
    argv = [
        "infer", str(ckpt), str(video), "--out", str(out), "--no-progress", "--overlay-video",
        "--save", "trainid", "labelid", "color", "overlay", "areas",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "6 frames (6 segmented, 0 already done)" in capsys.readouterr().out
    names = [f"frame_{i:06d}" for i in range(6)]
    for kind in ("trainid", "labelid", "color", "overlay"):
        assert sorted(p.stem for p in (out / kind).glob("*.png")) == names, kind

    cap = cv2.VideoCapture(str(video))  # decode independently; compare with the model itself
    for name in names:
        ok, bgr = cap.read()
        assert ok
        trainid = read_png(out / "trainid" / f"{name}.png")
        assert trainid.shape == (H, W) and trainid.dtype == np.uint8
        expected = reference_prediction(model, bgr[..., ::-1].copy())
        assert (trainid == expected).mean() > 0.999
        color = read_png(out / "color" / f"{name}.png")
        assert color.shape == (H, W, 3)
        assert_palette(color, trainid)
        assert np.array_equal(ID_TO_TRAIN_ID[read_png(out / "labelid" / f"{name}.png")], trainid)
        assert read_png(out / "overlay" / f"{name}.png").shape == (H, W, 3)

    rows = list(csv.reader((out / "areas.csv").open()))
    assert rows[0][:3] == ["frame", "name", "road"] and len(rows) == 7
    shares = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert np.allclose(shares.sum(1), 1.0, atol=1e-4)
    first = read_png(out / "trainid" / "frame_000000.png")
    assert np.allclose(shares[0], np.bincount(first.ravel(), minlength=19) / first.size, atol=1e-6)

    playback = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(playback.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == summary["processed"] == 6 and summary["fps"] > 0
    assert summary["input"] == str(video) and summary["checkpoint"] == str(ckpt)
    assert "EncoderDecoder" in summary["model"] and summary["complete"] is True
    tc = summary["temporal_consistency"]
    assert tc["pairs"] == 5 and 0 <= tc["pixel_acc"] <= 100 and tc["coverage"] > 0.5


def test_frame_folder_natural_order_names_and_resize(tiny, tmp_path):
    ckpt, model = tiny
    names = ["img_10", "img_2", "img_1"]
    rgb = frames(3, seed=1)
    folder = write_folder(tmp_path / "frames", rgb, names)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    argv = ["infer", str(ckpt), str(folder), "--out", str(out), "--no-progress",
            "--save", "trainid", "color", "areas", "--resize", "48x36"]  # fmt: skip
    assert main(argv) == 0
    rows = list(csv.reader((out / "areas.csv").open()))[1:]
    assert [r[1] for r in rows] == ["img_1", "img_2", "img_10"]
    for name in names:
        trainid = read_png(out / "trainid" / f"{name}.png")
        assert trainid.shape == (H, W)  # native size although the model ran at 48x36
        assert_palette(read_png(out / "color" / f"{name}.png"), trainid)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_size"] == [36, 48] and summary["frame_size"] == [H, W]

    glob_out = tmp_path / "glob_out"  # a glob selects like a folder
    assert main(["infer", str(ckpt), str(folder / "img_1*.png"), "--out", str(glob_out),
                 "--no-progress", "--no-temporal", "--resize", "native"]) == 0  # fmt: skip
    assert sorted(p.stem for p in (glob_out / "trainid").glob("*.png")) == ["img_1", "img_10"]
    expected = reference_prediction(model, rgb[2])
    assert (read_png(glob_out / "trainid" / "img_1.png") == expected).mean() > 0.999


def test_stride_and_max_frames_select_frames(tiny, tmp_path):
    ckpt, _ = tiny
    video = write_video(tmp_path / "clip.mp4", frames(7))
    out = tmp_path / "out"
    argv = ["infer", str(ckpt), str(video), "--out", str(out), "--no-progress",
            "--stride-frames", "3", "--max-frames", "2", "--save", "trainid"]  # fmt: skip
    assert main(argv) == 0
    written = sorted(p.stem for p in (out / "trainid").glob("*.png"))
    assert written == ["frame_000000", "frame_000003"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 2 and summary["temporal_consistency"]["pairs"] == 1


def test_labelid_export_maps_back_to_train_ids_exactly(tmp_path):
    pred = np.arange(19, dtype=np.uint8).repeat(3)[None].repeat(2, axis=0)  # every class
    files = PredictionFiles(tmp_path, ("labelid", "trainid", "color"))
    files.write("f", pred)
    labelid = read_png(tmp_path / "labelid" / "f.png")
    assert np.array_equal(ID_TO_TRAIN_ID[labelid], pred)
    # spot checks against the official labels.py table: road 7, sky 23, car 26, bicycle 33
    assert labelid[0, 0] == 7 and labelid[0, 30] == 23 and labelid[0, 39] == 26
    assert labelid[0, 54] == 33
    # every written map reads back to the same trainIds, including the colour PNG
    for kinds in (("trainid",), ("labelid",), ("color",)):
        assert np.array_equal(PredictionFiles(tmp_path, kinds).read_back("f"), pred)


# --------------------------------------------------------------------------- resume


def test_resume_skips_finished_frames(tiny, tmp_path, capsys):
    ckpt, _ = tiny
    folder = write_folder(tmp_path / "frames", frames(4, seed=2), [f"f{i}" for i in range(4)])
    out = tmp_path / "out"
    argv = ["infer", str(ckpt), str(folder), "--out", str(out), "--no-progress",
            "--save", "trainid", "color", "areas"]  # fmt: skip
    assert main(argv) == 0
    first = json.loads((out / "summary.json").read_text())
    pngs = sorted(out.glob("*/*.png"))
    mtimes = {p: p.stat().st_mtime_ns for p in pngs}
    (out / "color" / "f2.png").unlink()
    capsys.readouterr()

    assert main(argv) == 0
    assert "4 frames (1 segmented, 3 already done)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["processed"], summary["skipped"], summary["frames"]) == (1, 3, 4)
    for p in pngs:
        if p.stem != "f2":
            assert p.stat().st_mtime_ns == mtimes[p], p
    assert (out / "color" / "f2.png").is_file()
    assert (out / "trainid" / "f2.png").stat().st_mtime_ns != mtimes[out / "trainid" / "f2.png"]
    # the run-wide outputs cover every frame again, with the same values
    assert len(list(csv.reader((out / "areas.csv").open()))) == 5
    assert summary["temporal_consistency"] == first["temporal_consistency"]
    assert summary["class_share"] == first["class_share"]

    assert main([*argv, "--overwrite"]) == 0
    assert "(4 segmented, 0 already done)" in capsys.readouterr().out


# --------------------------------------------------------------------------- ACCEL


class ColourNet(nn.Module):
    """Single-frame stand-in: 3 classes, logits = the normalised R, G, B channels."""

    out_stride = 1

    def inference(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] * 10

    def predict(self, x, mode="whole", crop=None, stride=None) -> torch.Tensor:
        return self.inference(x)


def uniform_frames(colours: list[tuple[int, int, int]]) -> list[np.ndarray]:
    return [np.full((24, 32, 3), c, np.uint8) for c in colours]


@pytest.mark.parametrize("stride,gap", [(1, 1), (2, 1), (1, 2)])
def test_accel_uses_the_previous_input_frame(tmp_path, stride, gap):
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    rgb = uniform_frames([red, green, blue, red, green])  # per-frame classes 0 1 2 0 1
    folder = write_folder(tmp_path / "frames", rgb, [f"f{i}" for i in range(5)])
    model = ACCEL(ColourNet(), 3)
    with torch.no_grad():  # fused = warped logits of frame t−1 only
        model.fusion.weight.zero_()
        model.fusion.weight[:, 3:, 0, 0] = torch.eye(3)
    seg = Segmenter(model, EvalConfig(), "cpu")
    assert seg.two_frame
    opts = InferOptions(out_dir=tmp_path / "out", save=("trainid",), progress=False,
                        stride_frames=stride, batch_size=2, pair_gap=gap)  # fmt: skip
    summary = run_infer(seg, open_source(folder), opts, num_classes=3)
    # frame 0 is paired with itself; frame t with input frame t−gap (also when that frame is
    # not output); near the start (t < gap) with the first input frame
    expected = {(1, 1): {"f0": 0, "f1": 0, "f2": 1, "f3": 2, "f4": 0},
                (2, 1): {"f0": 0, "f2": 1, "f4": 0},
                (1, 2): {"f0": 0, "f1": 0, "f2": 0, "f3": 1, "f4": 2}}[stride, gap]  # fmt: skip
    for name, cls in expected.items():
        assert (read_png(tmp_path / "out" / "trainid" / f"{name}.png") == cls).all(), name
    assert summary["frames"] == len(expected)


@pytest.mark.parametrize("accel_config", [True, False], ids=["accel_config", "base_config"])
def test_accel_checkpoint_is_recognised_and_runs(tmp_path, accel_config):
    # a config with model.segmentor=accel, or one naming only the base network (then wrapped)
    cfg = tiny_config()
    base_cfg = cfg.model
    if accel_config:
        cfg = merge_overrides(cfg, ["model.segmentor=accel", "model.accel.base=encoder_decoder",
                                    "method.name=dacs"])  # ACCEL trains with DACS only
    torch.manual_seed(0)
    accel = ACCEL(build_segmentor(base_cfg, load_pretrained=False), 19)
    with torch.no_grad():
        accel.fusion.weight.mul_(0.5).add_(0.25)
    ckpt = save_ckpt(tmp_path / "accel.pt", accel, cfg)
    loaded = load_model(ckpt)
    assert isinstance(loaded.model, ACCEL)
    assert torch.equal(loaded.model.fusion.weight, accel.fusion.weight)
    folder = write_folder(tmp_path / "frames", frames(3, seed=3), ["a", "b", "c"])
    out = tmp_path / "out"
    assert main(["infer", str(ckpt), str(folder), "--out", str(out), "--no-progress",
                 "--batch-size", "2"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["two_frame"] is True and summary["processed"] == 3
    assert sorted(p.stem for p in (out / "color").glob("*.png")) == ["a", "b", "c"]


def test_hrda_checkpoint_runs_through_its_own_predict(tmp_path):
    hrda_keys = ["model.segmentor=hrda", "model.segmentor_kwargs={hr_crop: [64, 64]}"]
    cfg = merge_overrides(tiny_config(), hrda_keys)
    torch.manual_seed(1)
    hrda = build_segmentor(cfg.model, load_pretrained=False).eval()
    ckpt = save_ckpt(tmp_path / "hrda.pt", hrda, cfg)
    rgb = frames(2, h=96, w=128, seed=5)  # the context pass runs at half this size
    folder = write_folder(tmp_path / "frames", rgb, ["a", "b"])
    out = tmp_path / "out"
    assert main(["infer", str(ckpt), str(folder), "--out", str(out), "--no-progress"]) == 0
    assert "HRDA" in json.loads((out / "summary.json").read_text())["model"]
    for name, image in zip(["a", "b"], rgb, strict=True):
        expected = reference_prediction(hrda, image)
        assert (read_png(out / "trainid" / f"{name}.png") == expected).mean() > 0.999


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_without_config_needs_config_flag(tiny, tmp_path, capsys):
    _, model = tiny
    bare = save_ckpt(tmp_path / "bare.pt", model, None)
    folder = write_folder(tmp_path / "frames", frames(1), ["only"])
    out = tmp_path / "out"
    assert main(["infer", str(bare), str(folder), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds no config" in err and "--config" in err and str(bare) in err
    cfg_file = save_config(tiny_config(), tmp_path / "tiny.yaml")
    assert main(["infer", str(bare), str(folder), "--out", str(out), "--no-progress",
                 "--config", str(cfg_file)]) == 0  # fmt: skip
    assert (out / "trainid" / "only.png").is_file()
    assert main(["infer", str(bare), str(folder), "--out", str(out), "--no-progress",
                 "--config", str(cfg_file), "--network", "teacher"]) == 2  # fmt: skip
    assert "no teacher network" in capsys.readouterr().err


def test_teacher_network_and_overrides(tiny, tmp_path):
    _, model = tiny
    teacher = build_segmentor(tiny_config().model, load_pretrained=False).eval()
    ckpt = save_ckpt(tmp_path / "two.pt", model, tiny_config(), teacher=teacher)
    folder = write_folder(tmp_path / "frames", frames(1), ["x"])
    out = tmp_path / "out"
    assert main(["infer", str(ckpt), str(folder), "--out", str(out), "--no-progress",
                 "--network", "teacher", "eval.mode=slide", "eval.crop_size=[32,32]",
                 "eval.stride=[16,16]"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["network"] == "teacher" and summary["eval"]["mode"] == "slide"


# --------------------------------------------------------------------------- input errors


def test_corrupt_video_names_the_file_and_frame(tiny, tmp_path, capsys):
    ckpt, _ = tiny
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert main(["infer", str(ckpt), str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "frame 0" in err and len(err.strip().splitlines()[-1]) > 0


def test_truncated_video_stops_at_the_frame_reached(tiny, tmp_path, capsys):
    ckpt, _ = tiny
    video = write_video(tmp_path / "clip.avi", frames(20, seed=4), codec="MJPG")
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o"
    assert main(["infer", str(ckpt), str(video), "--out", str(out), "--no-progress",
                 "--no-temporal"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    reached = summary["frames"]
    assert 0 < reached < 20 and summary["complete"] is False
    assert str(video) in err and f"at frame {reached}" in err
    assert len(list((out / "trainid").glob("*.png"))) == reached


def test_input_errors_are_one_line(tiny, tmp_path, capsys):
    ckpt, _ = tiny
    out = str(tmp_path / "o")
    missing = tmp_path / "nothing.mp4"
    assert main(["infer", str(ckpt), str(missing), "--out", out]) == 2
    assert str(missing) in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["infer", str(ckpt), str(tmp_path / "empty"), "--out", out]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["infer", str(ckpt), str(tmp_path / "empty" / "*.jpg"), "--out", out]) == 2
    assert "no image files" in capsys.readouterr().err

    mixed = write_folder(tmp_path / "mixed", [*frames(1), *frames(1, w=40)], ["a", "b"])
    assert main(["infer", str(ckpt), str(mixed), "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(mixed / "b.png") in err and "40x48" in err and f"{W}x{H}" in err
    assert main(["infer", str(ckpt), str(mixed), "--out", out, "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_outputs_are_written_atomically(tmp_path):
    files = PredictionFiles(tmp_path, ("trainid",))
    files.write("a", np.zeros((4, 4), np.uint8))
    assert [p.name for p in (tmp_path / "trainid").iterdir()] == ["a.png"]
    assert not files.complete("b") and files.complete("a")
    (tmp_path / "trainid" / "b.png").mkdir()  # the final rename cannot replace a folder
    with pytest.raises(OutputError, match="cannot write .*b.png"):
        files.write("b", np.zeros((4, 4), np.uint8))
    assert sorted(p.name for p in (tmp_path / "trainid").iterdir()) == ["a.png", "b.png"]


def test_overlay_blends_colours_and_draws_a_legend():
    from vidda.infer.overlay import render_overlay

    rgb = np.full((60, 80, 3), 200, np.uint8)
    pred = np.zeros((60, 80), np.uint8)
    pred[:, 40:] = 13  # road | car
    out = render_overlay(rgb, pred)
    road, car = np.array(PALETTE[0]), np.array(PALETTE[13])
    assert np.abs(out[50, 30].astype(int) - (200 + road) / 2).max() <= 1  # outside the legend
    assert np.abs(out[50, 70].astype(int) - (200 + car) / 2).max() <= 1
    legend = out[:20, :40].reshape(-1, 3)
    for colour in (road, car):  # one swatch per class present, in its exact colour
        assert (legend == colour).all(axis=1).any()


def test_cli_save_choices_match_the_module() -> None:
    from vidda.cli import infer as cli
    from vidda.infer.outputs import DEFAULT_SAVE, SAVE_CHOICES

    assert cli.INFER_SAVE_CHOICES == SAVE_CHOICES
    assert cli.INFER_DEFAULT_SAVE == DEFAULT_SAVE


def test_default_pair_gap_is_the_training_gap():
    from vidda.infer.command import training_gap

    cfg = tiny_config()
    assert training_gap(cfg) == 1
    assert training_gap(merge_overrides(cfg, ["method.frame_distance=2"])) == 2
    bdd = merge_overrides(cfg, ["data.val.type=bddvid", "data.val.root=/nonexistent"])
    assert training_gap(bdd) == 2  # BDDVid's canonical offsets are 2 video frames apart
    assert training_gap(merge_overrides(bdd, ["data.val.frame_step=3"])) == 3
