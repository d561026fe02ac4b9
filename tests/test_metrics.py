"""Tests for vidda.metrics; expected numbers are derived by hand in comments, not by the code."""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pytest
import torch

from vidda.classes import CLASSES, SYNTHIA_SEQ_CLASSES, VIPER_CLASSES
from vidda.metrics import ConfusionMatrix, evaluate_both, format_table, to_json

NAN = math.nan


def _brute_force(pred: np.ndarray, gt: np.ndarray, c: int = 19, ignore: int = 255) -> np.ndarray:
    """Reference confusion matrix by an explicit Python loop (independent of the implementation)."""
    mat = np.zeros((c, c), dtype=np.int64)
    for g, p in zip(
        np.asarray(gt).ravel().tolist(), np.asarray(pred).ravel().tolist(), strict=True
    ):
        if g != ignore:
            mat[g, p] += 1
    return mat


def _random_pair(rng: np.random.Generator, shape, c: int = 19, ignore_frac: float = 0.1):
    gt = rng.integers(0, c, shape, dtype=np.uint8)
    gt[rng.random(shape) < ignore_frac] = 255
    pred = rng.integers(0, c, shape, dtype=np.uint8)
    return pred, gt


def _assert_lists_close(actual, expected, tol=1e-9):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        if isinstance(e, float) and math.isnan(e):
            assert math.isnan(a), (actual, expected)
        else:
            assert a == pytest.approx(e, abs=tol), (actual, expected)


# --------------------------------------------------------------------------- tiny, by hand

# 3 classes. Pixel pairs (gt, pred): (0,0) (0,1) (1,1) / (1,2) (2,2) (255,0)->dropped
TINY_GT = np.array([[0, 0, 1], [1, 2, 255]])
TINY_PRED = np.array([[0, 1, 1], [2, 2, 0]])
# rows = GT: row0 = [1,1,0], row1 = [0,1,1], row2 = [0,0,1]
TINY_MATRIX = [[1, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_tiny_matrix_and_scores_by_hand():
    cm = ConfusionMatrix(num_classes=3)
    cm.update(TINY_PRED, TINY_GT)
    assert cm.matrix.tolist() == TINY_MATRIX
    assert cm.matrix.dtype == np.int64
    res = cm.compute()
    # intersection = diag = [1,1,1]; gt = row sums = [2,2,1]; pred = col sums = [1,2,2]
    assert res["intersection"] == [1, 1, 1]
    assert res["gt_pixels"] == [2, 2, 1]
    assert res["pred_pixels"] == [1, 2, 2]
    # union = gt + pred - inter = [2,3,2]
    assert res["union"] == [2, 3, 2]
    _assert_lists_close(res["iou"], [1 / 2, 1 / 3, 1 / 2])  # fractions
    _assert_lists_close(res["acc"], [1 / 2, 1 / 2, 1 / 1])
    # mIoU = (1/2 + 1/3 + 1/2) / 3 = 4/9 -> 44.44 %
    assert res["miou"] == pytest.approx(100 * 4 / 9)
    # mAcc = (1/2 + 1/2 + 1) / 3 = 2/3
    assert res["macc"] == pytest.approx(100 * 2 / 3)
    # aAcc = 3 correct / 5 kept pixels
    assert res["aacc"] == pytest.approx(60.0)
    assert res["pixels"] == 5
    assert res["classes"] == [0, 1, 2]
    assert res["protocol"] == "standard"


# 19 classes, VIPER subset (excludes 3 wall, 5 pole, 12 rider, 16 train).
# pairs (gt, pred): (0,0) (0,0) (0,5) (0,13) (13,13) (13,5) (5,5) (255,0)->dropped
EXCL_GT = np.array([0, 0, 0, 0, 13, 13, 5, 255])
EXCL_PRED = np.array([0, 0, 5, 13, 13, 5, 5, 0])


def test_excluded_prediction_standard_protocol_by_hand():
    cm = ConfusionMatrix()
    cm.update(EXCL_PRED, EXCL_GT)
    res = cm.compute("viper", protocol="standard")
    # keep GT in subset -> drop (5,5). Kept: (0,0)x2 (0,5) (0,13) (13,13) (13,5) = 6 pixels
    assert res["pixels"] == 6
    # class 0: inter 2, gt 4, pred 2 -> union 4 -> IoU 1/2, acc 2/4
    # class 13: inter 1, gt 2, pred 2 ((0,13) and (13,13)) -> union 3 -> IoU 1/3, acc 1/2
    assert res["intersection"][0] == 2 and res["union"][0] == 4
    assert res["intersection"][13] == 1 and res["union"][13] == 3
    assert res["iou"][0] == pytest.approx(0.5)
    assert res["iou"][13] == pytest.approx(1 / 3)
    # the pole predictions are errors: still counted as predicted pixels, but pole is excluded
    assert res["pred_pixels"][5] == 2
    assert math.isnan(res["iou"][5]) and math.isnan(res["acc"][5])
    # mIoU = (1/2 + 1/3) / 2 = 5/12 = 41.67 %; aAcc = 3/6
    assert res["miou"] == pytest.approx(100 * 5 / 12)
    assert res["aacc"] == pytest.approx(50.0)
    # mAcc = (1/2 + 1/2) / 2
    assert res["macc"] == pytest.approx(50.0)


def test_excluded_prediction_uvda_protocol_by_hand():
    cm = ConfusionMatrix()
    cm.update(EXCL_PRED, EXCL_GT)
    res = cm.compute("viper", protocol="uvda")
    # keep GT AND pred in subset -> drop (0,5) (13,5) (5,5). Kept: (0,0)x2 (0,13) (13,13) = 4
    assert res["pixels"] == 4
    # class 0: inter 2, gt 3, pred 2 -> union 3 -> IoU 2/3, acc 2/3
    # class 13: inter 1, gt 1, pred 2 -> union 2 -> IoU 1/2, acc 1
    assert res["iou"][0] == pytest.approx(2 / 3)
    assert res["iou"][13] == pytest.approx(1 / 2)
    assert res["acc"][13] == pytest.approx(1.0)
    assert res["pred_pixels"][5] == 0
    # mIoU = (2/3 + 1/2) / 2 = 7/12 = 58.33 %; aAcc = 3/4
    assert res["miou"] == pytest.approx(100 * 7 / 12)
    assert res["aacc"] == pytest.approx(75.0)
    assert res["classes"] == list(VIPER_CLASSES)
    assert sum(not math.isnan(v) for v in res["iou"]) == 2  # only classes 0 and 13 are seen


def test_all_classes_protocols_coincide_by_hand():
    cm = ConfusionMatrix()
    cm.update(EXCL_PRED, EXCL_GT)
    both = evaluate_both(cm)
    # 7 kept pixels. class 0: inter 2, union 4 + 2 - 2 = 4 -> 1/2
    # class 5: inter 1, gt 1, pred 3 -> union 3 -> 1/3; class 13: inter 1, gt 2, pred 2 -> 1/3
    # mIoU = (1/2 + 1/3 + 1/3) / 3 = 7/18
    for protocol in ("standard", "uvda"):
        assert both[protocol]["protocol"] == protocol
        assert both[protocol]["miou"] == pytest.approx(100 * 7 / 18)
        assert both[protocol]["pixels"] == 7


def test_nan_classes_left_out_of_mean():
    # 4 classes; pairs (0,0) (0,0) (1,0) (1,2). class 3 never appears; class 2 only predicted.
    cm = ConfusionMatrix(num_classes=4)
    cm.update(np.array([0, 0, 0, 2]), np.array([0, 0, 1, 1]))
    res = cm.compute()
    # class 0: inter 2, gt 2, pred 3 -> union 3 -> 2/3
    # class 1: inter 0, gt 2, pred 0 -> union 2 -> 0
    # class 2: inter 0, gt 0, pred 1 -> union 1 -> IoU 0 (counted!), acc NaN (no GT)
    # class 3: union 0 -> NaN (left out)
    _assert_lists_close(res["iou"], [2 / 3, 0.0, 0.0, NAN])
    _assert_lists_close(res["acc"], [1.0, 0.0, NAN, NAN])
    assert res["miou"] == pytest.approx(100 * (2 / 3) / 3)
    assert res["macc"] == pytest.approx(50.0)  # (1 + 0) / 2


def test_empty_matrix_gives_nan_without_warnings():
    cm = ConfusionMatrix()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's "Mean of empty slice"
        res = cm.compute("synthia_seq")
    assert math.isnan(res["miou"]) and math.isnan(res["aacc"])
    assert res["pixels"] == 0


# --------------------------------------------------------------------------- accumulation & inputs


def test_accumulation_equals_one_big_image_and_brute_force():
    rng = np.random.default_rng(0)
    pairs = [_random_pair(rng, (17, 23)) for _ in range(5)]
    cm = ConfusionMatrix()
    for pred, gt in pairs:
        cm.update(pred, gt)
    big = ConfusionMatrix()
    big.update(np.concatenate([p for p, _ in pairs]), np.concatenate([g for _, g in pairs]))
    expected = sum(_brute_force(p, g) for p, g in pairs)
    np.testing.assert_array_equal(cm.matrix, expected)
    np.testing.assert_array_equal(big.matrix, expected)
    assert cm.total == sum(int((g != 255).sum()) for _, g in pairs)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.int16])
def test_numpy_dtypes_and_torch_agree(dtype):
    rng = np.random.default_rng(1)
    pred, gt = _random_pair(rng, (2, 3, 9, 11))  # leading batch dims
    expected = _brute_force(pred, gt)
    cm_np = ConfusionMatrix()
    cm_np.update(pred.astype(dtype), gt.astype(dtype))
    np.testing.assert_array_equal(cm_np.matrix, expected)
    cm_t = ConfusionMatrix()
    cm_t.update(torch.from_numpy(pred.astype(dtype)), torch.from_numpy(gt.astype(dtype)))
    np.testing.assert_array_equal(cm_t.matrix, expected)
    # mixed: numpy prediction, torch GT
    cm_mix = ConfusionMatrix()
    cm_mix.update(pred.astype(dtype), torch.from_numpy(gt).long())
    np.testing.assert_array_equal(cm_mix.matrix, expected)


def test_torch_argmax_batch_input():
    logits = torch.zeros(2, 19, 2, 2)
    logits[:, 13] = 1.0  # every pixel predicted "car"
    gt = torch.tensor([[[13, 13], [0, 255]], [[13, 255], [255, 255]]])
    cm = ConfusionMatrix()
    cm.update(logits.argmax(1), gt)
    # kept pixels: (13,13) x3, (0,13) x1
    assert cm.matrix[13, 13] == 3 and cm.matrix[0, 13] == 1 and cm.total == 4
    assert cm.device.type == "cpu"


def test_uint8_overflow_trap():
    # 13 * 19 + 13 = 260 wraps to 4 in uint8; 18 * 19 + 18 = 360 wraps to 104
    gt = np.array([13, 18, 18, 255], dtype=np.uint8)
    pred = np.array([13, 18, 0, 18], dtype=np.uint8)
    for make in (lambda a: a, torch.from_numpy):
        cm = ConfusionMatrix()
        cm.update(make(pred), make(gt))
        mat = cm.matrix
        assert mat[13, 13] == 1 and mat[18, 18] == 1 and mat[18, 0] == 1
        assert mat.sum() == 3


def test_ignore_in_gt_dropped_even_with_any_valid_prediction():
    cm = ConfusionMatrix()
    cm.update(np.arange(19, dtype=np.uint8), np.full(19, 255, dtype=np.uint8))
    assert cm.total == 0


def test_custom_ignore_index_and_small_class_count():
    # ignore_index = -1 (not representable in uint8) and ignore_index = 2 inside the class range
    gt = np.array([0, 1, -1, 1])
    pred = np.array([0, 1, 1, 0])
    cm = ConfusionMatrix(num_classes=2, ignore_index=-1)
    cm.update(pred, gt)
    assert cm.matrix.tolist() == [[1, 0], [1, 1]]
    cm_t = ConfusionMatrix(num_classes=2, ignore_index=-1)
    cm_t.update(torch.from_numpy(pred), torch.from_numpy(gt))
    assert cm_t.matrix.tolist() == [[1, 0], [1, 1]]
    cm3 = ConfusionMatrix(num_classes=3, ignore_index=2)
    cm3.update(np.array([0, 2, 1], dtype=np.uint8), np.array([0, 2, 2], dtype=np.uint8))
    assert cm3.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_empty_input():
    cm = ConfusionMatrix()
    cm.update(np.zeros((0, 4), np.uint8), np.zeros((0, 4), np.uint8))
    cm.update(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert cm.total == 0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("make", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
def test_prediction_255_raises(make):
    cm = ConfusionMatrix()
    with pytest.raises(ValueError, match=r"pred .*\[255\]"):
        cm.update(make(np.array([0, 255], np.uint8)), make(np.array([0, 1], np.uint8)))
    # also when the GT of that pixel is ignored
    with pytest.raises(ValueError, match=r"pred .*\[19\]"):
        cm.update(make(np.array([19, 0])), make(np.array([255, 0])))
    assert cm.total == 0  # nothing was counted


@pytest.mark.parametrize("make", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
@pytest.mark.parametrize(
    ("bad", "named"),
    [([19], r"\[19\]"), ([100], r"\[100\]"), ([100, 19, 19], r"\[19, 100\]"), ([-1], r"\[-1\]")],
)
def test_bad_gt_values_named(make, bad, named):
    gt = np.array([0, 255, *bad])
    dtype = np.int64 if min(bad) < 0 else np.uint8
    pred = np.zeros_like(gt)
    cm = ConfusionMatrix()
    with pytest.raises(ValueError, match=rf"gt holds invalid trainIds {named}"):
        cm.update(make(pred.astype(dtype)), make(gt.astype(dtype)))


def test_bad_value_list_is_truncated():
    gt = np.arange(19, 60)
    with pytest.raises(ValueError, match=r"\[19, 20, .*\.\.\.\] \(41 distinct\)"):
        ConfusionMatrix().update(np.zeros_like(gt), gt)


def test_large_int_values_raise():
    with pytest.raises(ValueError, match=r"\[70000\]"):
        ConfusionMatrix().update(np.array([0, 1]), np.array([0, 70000]))
    with pytest.raises(ValueError, match=r"\[70000\]"):
        ConfusionMatrix().update(torch.tensor([0, 70000]), torch.tensor([0, 1]))


@pytest.mark.parametrize("make", [np.zeros, torch.zeros], ids=["numpy", "torch"])
def test_shape_mismatch_names_both_shapes(make):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        ConfusionMatrix().update(
            make((2, 3), dtype=np.uint8 if make is np.zeros else torch.uint8),
            make((3, 2), dtype=np.uint8 if make is np.zeros else torch.uint8),
        )


def test_float_input_rejected():
    with pytest.raises(TypeError, match="integer"):
        ConfusionMatrix().update(np.zeros(3, np.float32), np.zeros(3, np.uint8))
    with pytest.raises(TypeError, match="integer"):
        ConfusionMatrix().update(torch.zeros(3, dtype=torch.long), torch.zeros(3))


# --------------------------------------------------------------------------- state


def test_merge_and_iadd():
    rng = np.random.default_rng(2)
    (p1, g1), (p2, g2) = _random_pair(rng, (8, 8)), _random_pair(rng, (8, 8))
    a, b = ConfusionMatrix(), ConfusionMatrix()
    a.update(p1, g1)
    b.update(p2, g2)
    expected = _brute_force(p1, g1) + _brute_force(p2, g2)
    merged = ConfusionMatrix().merge(a).merge(b)
    np.testing.assert_array_equal(merged.matrix, expected)
    a += b
    np.testing.assert_array_equal(a.matrix, expected)
    np.testing.assert_array_equal(b.matrix, _brute_force(p2, g2))  # other untouched
    with pytest.raises(ValueError, match="3-class"):
        a.merge(ConfusionMatrix(num_classes=3))


def test_state_dict_round_trip_and_reset():
    cm = ConfusionMatrix()
    cm.update(EXCL_PRED, EXCL_GT)
    buf = io.BytesIO()
    torch.save(cm.state_dict(), buf)
    buf.seek(0)
    restored = ConfusionMatrix()
    restored.load_state_dict(torch.load(buf))
    np.testing.assert_array_equal(restored.matrix, cm.matrix)
    assert restored.compute("viper", "uvda")["miou"] == pytest.approx(100 * 7 / 12)
    # the state is a copy: later updates do not change it
    state = cm.state_dict()
    cm.update(EXCL_PRED, EXCL_GT)
    assert int(state["matrix"].sum()) == 7
    cm.reset()
    assert cm.total == 0
    with pytest.raises(ValueError, match=r"\(19, 19\)"):
        ConfusionMatrix(num_classes=3).load_state_dict(state)


def test_all_reduce_noop_and_single_rank_gloo(tmp_path):
    cm = ConfusionMatrix()
    cm.update(EXCL_PRED, EXCL_GT)
    before = cm.matrix
    cm.all_reduce()  # not initialised: no-op
    np.testing.assert_array_equal(cm.matrix, before)
    dist = torch.distributed
    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        cm.all_reduce()
    finally:
        dist.destroy_process_group()
    np.testing.assert_array_equal(cm.matrix, before)  # sum over one rank


# --------------------------------------------------------------------------- subsets & output


def test_subset_names_and_lists():
    cm = ConfusionMatrix()
    cm.update(EXCL_PRED, EXCL_GT)
    assert cm.compute("viper")["classes"] == list(VIPER_CLASSES)
    res = cm.compute("synthia_seq", "uvda")
    assert res["classes"] == list(SYNTHIA_SEQ_CLASSES) and len(res["classes"]) == 11
    # synthia_seq keeps 0, 5 and 13: all 7 pixels survive, same as the all-class numbers
    assert res["miou"] == pytest.approx(100 * 7 / 18)
    assert cm.compute("all")["classes"] == list(range(19))
    # explicit list [13, 0] -> sorted [0, 13]; uvda keeps (0,0)x2 (0,13) (13,13) as for VIPER
    assert cm.compute([13, 0], "uvda")["miou"] == pytest.approx(100 * 7 / 12)
    with pytest.raises(ValueError, match="unknown class subset"):
        cm.compute("gta")
    with pytest.raises(ValueError, match="protocol"):
        cm.compute(protocol="mmseg")


def test_to_json_and_format_table():
    cm = ConfusionMatrix()
    cm.update(EXCL_PRED, EXCL_GT)
    res = cm.compute("viper", "uvda")
    js = to_json(evaluate_both(cm, "viper"))
    text = json.dumps(js, allow_nan=False)  # NaN must be gone
    back = json.loads(text)
    assert back["uvda"]["iou"][5] is None
    assert back["uvda"]["intersection"][0] == 2
    assert back["standard"]["confusion"][0][5] == 1
    table = format_table(res)
    lines = table.splitlines()
    assert len(lines) == 2 + 19 + 1
    # road: IoU 2/3 = 66.67 %, acc 66.67 %, inter 2, union 3
    assert lines[2].split() == ["road", "66.67", "66.67", "2", "3"]
    # pole is excluded: nan row
    assert lines[2 + 5].split() == ["pole", "nan", "nan", "0", "0"]
    assert lines[2 + 6].startswith(CLASSES[6])
    # mIoU 58.33, mAcc (2/3 + 1)/2 = 83.33, aAcc 75.00
    assert lines[-1] == "mIoU: 58.33  mAcc: 83.33  aAcc: 75.00"
    assert format_table(back["uvda"]).splitlines()[-1] == lines[-1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_counts_on_device():
    rng = np.random.default_rng(3)
    pred, gt = _random_pair(rng, (2, 64, 64))
    cm = ConfusionMatrix()
    cm.update(torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda())
    assert cm.device.type == "cuda"
    np.testing.assert_array_equal(cm.matrix, _brute_force(pred, gt))
    with pytest.raises(ValueError, match=r"\[19\]"):
        cm.update(torch.tensor([0, 19]).cuda(), torch.tensor([0, 1]).cuda())


# --------------------------------------------------------------------------- device kernel
# CPU tensors are counted by the numpy kernel (zero-copy); the on-device torch kernel used for
# GPU tensors is exercised here directly on CPU tensors so CI without a GPU still covers it.


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_device_kernel_matches_brute_force(dtype):
    rng = np.random.default_rng(4)
    pred, gt = _random_pair(rng, (3, 13, 7))
    cm = ConfusionMatrix()
    counts = cm._count_torch(torch.from_numpy(pred).to(dtype), torch.from_numpy(gt).to(dtype))
    assert counts.dtype == torch.int64 and tuple(counts.shape) == (19, 19)
    np.testing.assert_array_equal(counts.numpy(), _brute_force(pred, gt))
    # overflow trap and hand-derived pairs: (13,13) (18,18) (18,0); (255,18) dropped
    small = cm._count_torch(
        torch.tensor([13, 18, 0, 18], dtype=dtype), torch.tensor([13, 18, 18, 255], dtype=dtype)
    )
    assert small[13, 13] == 1 and small[18, 18] == 1 and small[18, 0] == 1 and small.sum() == 3


@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        ([0, 255], [0, 1], r"pred holds invalid trainIds \[255\]"),
        ([19, 0], [255, 0], r"pred holds invalid trainIds \[19\]"),
        ([0, 0, 0], [19, 100, 255], r"gt holds invalid trainIds \[19, 100\]"),
        ([0, 0], [-3, 1], r"gt holds invalid trainIds \[-3\]"),
        ([0, 0], [2**32 + 1, 1], rf"gt holds invalid trainIds \[{2**32 + 1}\]"),  # no int32 wrap
    ],
)
def test_device_kernel_rejects_bad_values(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        ConfusionMatrix()._count_torch(torch.tensor(pred), torch.tensor(gt))


def test_device_kernel_custom_ignore_and_empty():
    cm = ConfusionMatrix(num_classes=2, ignore_index=-1)
    counts = cm._count_torch(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, -1, 1]))
    assert counts.tolist() == [[1, 0], [1, 1]]
    empty = ConfusionMatrix()._count_torch(torch.zeros(0, dtype=torch.long), torch.zeros(0).long())
    assert int(empty.sum()) == 0


def test_generic_path_refuses_prediction_id_num_classes():
    # ignore_index outside 0..255 takes the int64 fallback path
    cm = ConfusionMatrix(num_classes=3, ignore_index=-1)
    cm.update(np.array([0, 2]), np.array([0, -1]))
    with pytest.raises(ValueError, match=r"pred .*\[3\]"):
        cm.update(np.array([0, 3]), np.array([0, 1]))
    assert cm.total == 1
