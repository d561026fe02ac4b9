"""Label conversion and RCS statistics on miniature trees in each dataset's on-disk format.

Expected trainIds are written out by hand from cityscapesScripts' ``labels.py`` and the mappings of
the original UVDA converters; they are deliberately not taken from the module's tables.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vidda.data.convert import (
    STATS_FILES,
    SYNTHIA_SEQ_TO_TRAIN_ID,
    VIPER_TO_TRAIN_ID,
    ConvertError,
    convert_dataset,
)
from vidda.errors import UserError

# VIPER id → trainId, van (25) → train (16) as the original converter does.
VIPER_EXPECTED = {
    0: 255, 1: 255, 2: 10, 3: 0, 4: 1, 5: 255, 6: 9, 7: 8, 8: 8, 9: 2, 10: 255, 11: 4, 12: 255,
    13: 6, 14: 7, 15: 255, 16: 255, 17: 255, 18: 255, 19: 255, 20: 11, 21: 255, 22: 18, 23: 17,
    24: 13, 25: 16, 26: 15, 27: 14, 28: 255, 29: 16, 30: 255, 31: 255,
}  # fmt: skip
# VIPER classes.csv colours (R, G, B): van (25) and train (29) share (0, 80, 100).
VIPER_PALETTE = [
    (0, 0, 0), (111, 74, 0), (70, 130, 180), (128, 64, 128), (244, 35, 232), (230, 150, 140),
    (152, 251, 152), (87, 182, 35), (35, 142, 35), (70, 70, 70), (153, 153, 153),
    (190, 153, 153), (150, 20, 20), (250, 170, 30), (220, 220, 0), (180, 180, 100),
    (173, 153, 153), (168, 153, 153), (81, 0, 21), (81, 0, 81), (220, 20, 60), (255, 0, 0),
    (119, 11, 32), (0, 0, 230), (0, 0, 142), (0, 80, 100), (0, 60, 100), (0, 0, 70), (0, 0, 90),
    (0, 80, 100), (0, 100, 100), (50, 0, 90),
]  # fmt: skip
# SYNTHIA-SEQS id (R channel) → trainId: 11 bicycle → rider, 12 lane marking → ignore.
SYNTHIA_EXPECTED = {
    0: 255, 1: 10, 2: 2, 3: 0, 4: 1, 5: 4, 6: 8, 7: 5, 8: 13, 9: 7, 10: 11, 11: 12, 12: 255,
    13: 255, 14: 255, 15: 6,
}  # fmt: skip
# Cityscapes labelId → trainId; every other id 0..33 → 255.
CITYSCAPES_EXPECTED = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

H, W = 6, 8
QUIET = {"progress": False}


# --------------------------------------------------------------------------- writers


def write_viper(path: Path, ids: np.ndarray) -> None:
    """A VIPER ``cls`` PNG: palette image whose indices are the class ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.astype(np.uint8).tobytes())
    img.putpalette([channel for rgb in VIPER_PALETTE for channel in rgb])
    img.save(path)


def write_synthia(path: Path, ids: np.ndarray, rng: np.random.Generator, bits: int = 16) -> None:
    """A SYNTHIA ``GT/LABELS`` PNG: class id in R, instance junk in G and B."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if bits == 16 else np.uint8
    junk = rng.integers(0, np.iinfo(dtype).max + 1, size=(*ids.shape, 2)).astype(dtype)
    bgr = np.dstack([junk[..., 0], junk[..., 1], ids.astype(dtype)])
    assert cv2.imwrite(str(path), bgr)


def write_gray(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), values.astype(np.uint8))


def read_label(path: Path) -> np.ndarray:
    """A written trainId label: must be an 8-bit single-channel PNG."""
    out = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert out is not None and out.dtype == np.uint8 and out.ndim == 2, path
    with Image.open(path) as img:
        assert img.mode == "L"
    return out


def mapped(ids: np.ndarray, table: dict[int, int]) -> np.ndarray:
    out = np.full(ids.shape, 255, np.uint8)
    for raw, train_id in table.items():
        out[ids == raw] = train_id
    return out


def counts_of(train_ids: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(train_ids, return_counts=True)
    return {str(int(v)): int(n) for v, n in zip(values, counts, strict=True) if v != 255}


def load_stats(root: Path) -> tuple[list, dict, dict]:
    return tuple(json.loads((root / name).read_text()) for name in STATS_FILES)  # type: ignore


def every_id(n: int) -> np.ndarray:
    """An image holding each id 0..n-1 at least once."""
    return np.resize(np.arange(n), (H, W)) if n <= H * W else np.arange(n).reshape(4, -1)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def viper(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """VIPER root: train 001 (frames 0, 10, 15, 20), train 002 (frame 10), val 001 (frame 10)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "viper"
    arrays = {}
    for rel in (
        "train/cls/001/001_00000",
        "train/cls/001/001_00010",
        "train/cls/001/001_00015",
        "train/cls/001/001_00020",
        "train/cls/002/002_00010",
        "val/cls/001/001_00010",
    ):
        arrays[rel] = rng.integers(0, 32, size=(H, W))
        write_viper(root / f"{rel}.png", arrays[rel])
    return root, arrays


@pytest.fixture
def synthia(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    root = tmp_path / "synthia"
    arrays = {}
    for frame in ("000000", "000001", "000002", "000003"):
        arrays[frame] = rng.integers(0, 16, size=(H, W))
        write_synthia(root / "GT/LABELS/Stereo_Left/Omni_F" / f"{frame}.png", arrays[frame], rng)
    return root, arrays


def synthia_label(root: Path, frame: str) -> Path:
    return root / "GT/LABELS/Stereo_Left/Omni_F" / f"{frame}_labelTrainIds_updated.png"


@pytest.fixture
def cityscapes(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    root = tmp_path / "cityscapes"
    arrays = {}
    for rel in (
        "train/aachen/aachen_000000_000019",
        "train/bochum/bochum_000000_000313",
        "val/frankfurt/frankfurt_000000_000294",
    ):
        arrays[rel] = rng.integers(0, 34, size=(H, W))
        write_gray(root / "gtFine" / f"{rel}_gtFine_labelIds.png", arrays[rel])
    return root, arrays


@pytest.fixture
def bdd(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    root = tmp_path / "bdd"
    arrays = {}
    values = np.array([*range(19), 255])
    for rel in (
        "train/labels/aaaa-0001_307",
        "train/labels/bbbb-0002_307",
        "val_orig_10k/labels/cccc-0003_307",
    ):
        arrays[rel] = rng.choice(values, size=(H, W))
        write_gray(root / f"{rel}.png", arrays[rel])
    return root, arrays


# --------------------------------------------------------------------------- class tables


def test_module_tables_match_the_spec():
    assert VIPER_TO_TRAIN_ID.dtype == np.uint8 and VIPER_TO_TRAIN_ID.shape == (256,)
    assert SYNTHIA_SEQ_TO_TRAIN_ID.dtype == np.uint8 and SYNTHIA_SEQ_TO_TRAIN_ID.shape == (256,)
    assert VIPER_TO_TRAIN_ID.tolist() == [VIPER_EXPECTED.get(i, 255) for i in range(256)]
    assert SYNTHIA_SEQ_TO_TRAIN_ID.tolist() == [SYNTHIA_EXPECTED.get(i, 255) for i in range(256)]


def test_viper_every_id_maps_per_table(tmp_path: Path):
    ids = every_id(32)
    write_viper(tmp_path / "train/cls/001/001_00010.png", ids)
    report = convert_dataset("viper", tmp_path, **QUIET)
    assert "1 converted" in report.summary() and "vegetation" in report.summary()
    out = read_label(tmp_path / "train/cls/001/001_00010_labelTrainIds.png")
    np.testing.assert_array_equal(out, mapped(ids, VIPER_EXPECTED))
    assert report.converted == 1 and report.class_pixels == {
        int(k): v for k, v in counts_of(out).items()
    }


def test_viper_van_and_train_share_a_colour_but_not_an_index(tmp_path: Path):
    assert VIPER_PALETTE[25] == VIPER_PALETTE[29]
    label = tmp_path / "train/cls/001/001_00010.png"
    write_viper(label, np.array([[25, 29, 24, 0]]))
    out_path = tmp_path / "train/cls/001/001_00010_labelTrainIds.png"

    convert_dataset("viper", tmp_path, **QUIET)
    assert read_label(out_path).tolist() == [[16, 16, 13, 255]]
    # Toggling the switch rewrites the up-to-date output without --overwrite.
    report = convert_dataset("viper", tmp_path, viper_van_as_train=False, **QUIET)
    assert report.converted == 1 and any("mapping" in w for w in report.warnings)
    assert read_label(out_path).tolist() == [[255, 16, 13, 255]]


def test_viper_without_splits_takes_frames_ending_in_0(viper):
    root, arrays = viper
    report = convert_dataset("viper", root, **QUIET)
    made = sorted(p.relative_to(root).as_posix() for p in root.rglob("*_labelTrainIds.png"))
    assert made == [
        "train/cls/001/001_00000_labelTrainIds.png",
        "train/cls/001/001_00010_labelTrainIds.png",
        "train/cls/001/001_00020_labelTrainIds.png",
        "train/cls/002/002_00010_labelTrainIds.png",
        "val/cls/001/001_00010_labelTrainIds.png",
    ]
    assert report.converted == 5 and report.stats_samples == 4  # statistics: train only
    for rel, ids in arrays.items():
        out = root / f"{rel}_labelTrainIds.png"
        if out.exists():
            np.testing.assert_array_equal(read_label(out), mapped(ids, VIPER_EXPECTED))


def test_viper_statistics_in_the_original_format(viper):
    root, arrays = viper
    report = convert_dataset("viper", root, **QUIET)
    assert report.stats_files == [root / name for name in STATS_FILES]
    stats_list, stats_dict, with_class = load_stats(root)

    train = [r for r in sorted(arrays) if r.startswith("train") and r.endswith("0")]
    expected = {
        f"{r}_labelTrainIds.png": counts_of(mapped(arrays[r], VIPER_EXPECTED)) for r in train
    }
    # sample_class_stats.json: a list sorted by file; class counts (str keys) plus "file".
    assert [s["file"] for s in stats_list] == sorted(expected)
    assert [{k: v for k, v in s.items() if k != "file"} for s in stats_list] == [
        expected[f] for f in sorted(expected)
    ]
    # sample_class_stats_dict.json: {file: {class: count}}.
    assert stats_dict == expected
    # samples_with_class.json: {class: [[file, count], ...]}, only classes present, never 255.
    rebuilt: dict[str, list] = {}
    for file in sorted(expected):
        for c, n in expected[file].items():
            rebuilt.setdefault(c, []).append([file, n])
    assert with_class == rebuilt and "255" not in with_class
    # The report's totals cover every label handled, val included.
    all_counts = [counts_of(mapped(a, VIPER_EXPECTED)) for r, a in arrays.items() if r[-1] == "0"]
    assert report.class_pixels == {
        c: sum(counts.get(str(c), 0) for counts in all_counts) for c in report.class_pixels
    }
    assert sum(report.class_pixels.values()) == sum(sum(c.values()) for c in all_counts)


def test_viper_split_files_restrict_conversion_and_statistics(viper):
    root, arrays = viper
    (root / "splits").mkdir()
    (root / "splits/train.txt").write_text("001/001_00010\n002/002_00010")  # no final newline
    (root / "splits/val.txt").write_text("001/001_00010\n")
    report = convert_dataset("viper", root, **QUIET)
    assert report.converted == 3
    assert not (root / "train/cls/001/001_00000_labelTrainIds.png").exists()
    assert not (root / "train/cls/001/001_00020_labelTrainIds.png").exists()
    stats_list, stats_dict, _ = load_stats(root)
    assert sorted(stats_dict) == [
        "train/cls/001/001_00010_labelTrainIds.png",
        "train/cls/002/002_00010_labelTrainIds.png",
    ]
    assert stats_dict["train/cls/002/002_00010_labelTrainIds.png"] == counts_of(
        mapped(arrays["train/cls/002/002_00010"], VIPER_EXPECTED)
    )


def test_explicit_split_file_and_missing_entry(viper, tmp_path: Path):
    root, _ = viper
    split = tmp_path / "my_train2.txt"
    split.write_text("001/001_00020\n")
    convert_dataset("viper", root, split_files=[split], **QUIET)
    assert sorted(load_stats(root)[1]) == ["train/cls/001/001_00020_labelTrainIds.png"]

    split.write_text("001/001_00020\n003/003_00010\n")
    with pytest.raises(ConvertError, match=r"1 of 2 entries .*003/003_00010\.png"):
        convert_dataset("viper", root, split_files=[split], **QUIET)
    odd = tmp_path / "frames.txt"
    odd.write_text("001/001_00020\n")
    with pytest.raises(ConvertError, match="'train' or 'val'"):
        convert_dataset("viper", root, split_files=[odd], **QUIET)


# --------------------------------------------------------------------------- SYNTHIA-Seq


@pytest.mark.parametrize("bits", [16, 8])
def test_synthia_every_id_from_the_r_channel(tmp_path: Path, bits: int):
    rng = np.random.default_rng(bits)
    ids = every_id(16)
    write_synthia(tmp_path / "GT/LABELS/Stereo_Left/Omni_F/000007.png", ids, rng, bits=bits)
    raw = cv2.imread(str(tmp_path / "GT/LABELS/Stereo_Left/Omni_F/000007.png"), -1)
    assert raw.dtype == (np.uint16 if bits == 16 else np.uint8) and raw.shape == (H, W, 3)
    convert_dataset("synthia-seq", tmp_path, **QUIET)
    np.testing.assert_array_equal(
        read_label(synthia_label(tmp_path, "000007")), mapped(ids, SYNTHIA_EXPECTED)
    )


def test_synthia_statistics_with_and_without_split(synthia):
    root, arrays = synthia
    report = convert_dataset("synthia-seq", root, **QUIET)
    assert report.converted == 4 and report.stats_samples == 4
    rel = "GT/LABELS/Stereo_Left/Omni_F/{}_labelTrainIds_updated.png"
    expected = {rel.format(f): counts_of(mapped(a, SYNTHIA_EXPECTED)) for f, a in arrays.items()}
    assert load_stats(root)[1] == expected

    (root / "splits").mkdir()
    (root / "splits/train.txt").write_text("000002\n000003.png\n")  # DA-VSN style accepted
    report = convert_dataset("synthia-seq", root, **QUIET)
    assert (report.converted, report.skipped, report.stats_samples) == (0, 2, 2)
    stats_list, stats_dict, with_class = load_stats(root)
    assert stats_dict == {k: v for k, v in expected.items() if "000002" in k or "000003" in k}
    assert [s["file"] for s in stats_list] == sorted(stats_dict)
    assert all(not f.startswith(rel.format("000000")) for c in with_class.values() for f, _ in c)


# --------------------------------------------------------------------------- Cityscapes, BDD


def test_cityscapes_every_id_and_optional_statistics(cityscapes, tmp_path: Path):
    root, arrays = cityscapes
    ids = every_id(34)
    write_gray(root / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png", ids)
    report = convert_dataset("cityscapes", root, **QUIET)
    assert report.converted == 4 and report.stats_files == []
    assert not (root / STATS_FILES[0]).exists()
    out = read_label(root / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png")
    np.testing.assert_array_equal(out, mapped(ids, CITYSCAPES_EXPECTED))
    for rel, a in arrays.items():
        out = read_label(root / "gtFine" / f"{rel}_gtFine_labelTrainIds.png")
        np.testing.assert_array_equal(out, mapped(a, CITYSCAPES_EXPECTED))

    report = convert_dataset("cityscapes", root, stats=True, **QUIET)
    assert report.skipped == 4 and report.stats_samples == 2
    assert load_stats(root)[1] == {
        f"gtFine/{r}_gtFine_labelTrainIds.png": counts_of(mapped(a, CITYSCAPES_EXPECTED))
        for r, a in arrays.items()
        if r.startswith("train")
    }


def test_bdd_masks_are_validated_not_rewritten(bdd):
    root, arrays = bdd
    before = sorted(p.name for p in root.rglob("*"))
    report = convert_dataset("bdd", root, **QUIET)
    assert (report.validated, report.converted, report.stats_files) == (3, 0, [])
    assert sorted(p.name for p in root.rglob("*")) == before

    (root / "splits").mkdir()
    (root / "splits/valid_imgs_train.txt").write_text("bbbb-0002_307\n")
    convert_dataset("bdd", root, stats=True, **QUIET)
    assert load_stats(root)[1] == {
        "train/labels/bbbb-0002_307.png": counts_of(arrays["train/labels/bbbb-0002_307"])
    }


def test_bdd_value_19_is_an_error_naming_file_and_value(bdd):
    root, _ = bdd
    bad = root / "val_orig_10k/labels/dddd-0004_307.png"
    write_gray(bad, np.array([[0, 19, 19, 255]]))
    with pytest.raises(ConvertError, match=r"dddd-0004_307\.png: label values \[19\]"):
        convert_dataset("bdd", root, **QUIET)


# --------------------------------------------------------------------------- idempotence, workers


def test_second_run_skips_and_overwrite_rewrites(viper):
    root, _ = viper
    first = convert_dataset("viper", root, **QUIET)
    outputs = sorted(root.rglob("*_labelTrainIds.png"))
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outputs}
    stats_bytes = [(root / n).read_bytes() for n in STATS_FILES]

    second = convert_dataset("viper", root, **QUIET)
    assert (second.converted, second.skipped) == (0, first.converted)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outputs} == snapshot
    assert [(root / n).read_bytes() for n in STATS_FILES] == stats_bytes
    assert second.class_pixels == first.class_pixels

    src = root / "train/cls/002/002_00010.png"  # a newer source is converted again
    newer = snapshot[root / "train/cls/002/002_00010_labelTrainIds.png"][1] + 10**9
    os.utime(src, ns=(newer, newer))
    assert convert_dataset("viper", root, **QUIET).converted == 1

    third = convert_dataset("viper", root, overwrite=True, **QUIET)
    assert (third.converted, third.skipped) == (first.converted, 0)
    assert {p: p.read_bytes() for p in outputs} == {p: b for p, (b, _) in snapshot.items()}
    assert not list(root.rglob("*.tmp"))


def test_worker_processes_give_the_same_result(synthia, tmp_path: Path):
    root, _ = synthia
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    single = convert_dataset("synthia-seq", root, workers=0, **QUIET)
    multi = convert_dataset("synthia-seq", copy, workers=2, **QUIET)
    assert (multi.converted, multi.class_pixels) == (single.converted, single.class_pixels)
    for out in sorted(root.rglob("*_updated.png")):
        assert (copy / out.relative_to(root)).read_bytes() == out.read_bytes()
    for name in STATS_FILES:
        assert (copy / name).read_bytes() == (root / name).read_bytes()


# --------------------------------------------------------------------------- bad input


def test_missing_root_empty_root_and_unknown_kind(tmp_path: Path):
    with pytest.raises(ConvertError, match="root not found: .*nowhere"):
        convert_dataset("viper", tmp_path / "nowhere", **QUIET)
    with pytest.raises(ConvertError, match=r"no VIPER label files found; looked for .*train/cls"):
        convert_dataset("viper", tmp_path, **QUIET)
    with pytest.raises(ConvertError, match="no SYNTHIA-Seq label files .*GT/LABELS"):
        convert_dataset("synthia-seq", tmp_path, **QUIET)
    with pytest.raises(ConvertError, match="no Cityscapes label files .*gtFine"):
        convert_dataset("cityscapes", tmp_path, **QUIET)
    with pytest.raises(ConvertError, match="no BDD label files .*labels"):
        convert_dataset("bdd", tmp_path, **QUIET)
    with pytest.raises(ConvertError, match="viper, synthia-seq, cityscapes, bdd"):
        convert_dataset("gta", tmp_path, **QUIET)
    assert issubclass(ConvertError, UserError)


def test_truncated_png_is_named(viper):
    root, _ = viper
    label = root / "train/cls/001/001_00010.png"
    label.write_bytes(label.read_bytes()[:60])
    with pytest.raises(ConvertError, match=r"001_00010\.png: cannot read label PNG"):
        convert_dataset("viper", root, **QUIET)


def test_truncated_synthia_png_is_named(synthia):
    root, _ = synthia
    label = root / "GT/LABELS/Stereo_Left/Omni_F/000002.png"
    label.write_bytes(label.read_bytes()[:80])
    with pytest.raises(ConvertError, match=r"000002\.png: cannot read label PNG"):
        convert_dataset("synthia-seq", root, **QUIET)


def test_rgb_viper_label_is_rejected(tmp_path: Path):
    label = tmp_path / "train/cls/001/001_00010.png"
    label.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(label)
    with pytest.raises(ConvertError, match=r"001_00010\.png: image mode 'RGB'"):
        convert_dataset("viper", tmp_path, **QUIET)


def test_values_outside_the_class_tables_are_reported(tmp_path: Path):
    write_viper(tmp_path / "v/train/cls/001/001_00010.png", np.array([[3, 40, 44, 31]]))
    with pytest.raises(ConvertError, match=r"001_00010\.png: label values \[40, 44\] .*VIPER"):
        convert_dataset("viper", tmp_path / "v", **QUIET)
    rng = np.random.default_rng(5)
    ids = np.array([[3, 16, 300, 15]])
    write_synthia(tmp_path / "s/GT/LABELS/Stereo_Left/Omni_F/000001.png", ids, rng)
    with pytest.raises(ConvertError, match=r"000001\.png: label values \[16, 300\] .*SYNTHIA"):
        convert_dataset("synthia-seq", tmp_path / "s", **QUIET)


def test_single_channel_synthia_label_is_rejected(tmp_path: Path):
    write_gray(tmp_path / "GT/LABELS/Stereo_Left/Omni_F/000001.png", np.zeros((H, W)))
    with pytest.raises(ConvertError, match=r"000001\.png: 1-channel image"):
        convert_dataset("synthia-seq", tmp_path, **QUIET)


def test_every_bad_file_is_listed_and_no_statistics_written(viper):
    root, _ = viper
    for rel in ("train/cls/001/001_00010.png", "val/cls/001/001_00010.png"):
        (root / rel).write_bytes(b"not a png")
    with pytest.raises(ConvertError, match=r"2 of 5 label files failed") as err:
        convert_dataset("viper", root, **QUIET)
    assert "train/cls/001/001_00010.png" in str(err.value)
    assert "val/cls/001/001_00010.png" in str(err.value)
    assert not (root / STATS_FILES[0]).exists()


def test_an_output_as_new_as_its_source_is_up_to_date(tmp_path: Path):
    from vidda.data.convert_labels import is_up_to_date

    src, dst = tmp_path / "src.png", tmp_path / "dst.png"
    src.write_bytes(b"a")
    assert not is_up_to_date(src, dst)  # no output yet
    dst.write_bytes(b"b")
    t = src.stat().st_mtime_ns
    os.utime(dst, ns=(t, t))
    assert is_up_to_date(src, dst)  # equal times: up to date
    os.utime(dst, ns=(t - 10**9, t - 10**9))
    assert not is_up_to_date(src, dst)  # older: stale
