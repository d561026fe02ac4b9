"""The one segmentor interface: inputs, normalisation, forward, what callers may ask, and the
resize rule HRDA and the feature distance share."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from standins import Head, Stride4

from vidda.models.segmentors.accel import ACCEL
from vidda.models.segmentors.base import Segmentor
from vidda.models.segmentors.encoder_decoder import EncoderDecoder
from vidda.models.segmentors.hrda import HRDA
from vidda.models.segmentors.inputs import Pair
from vidda.uda.fd import ImageNetFD, feature_distance

K = 5
IMNET_MEAN = (123.675, 116.28, 103.53)  # written out here, independent of the code under test
IMNET_STD = (58.395, 57.12, 57.375)


def models() -> dict[str, Segmentor]:
    torch.manual_seed(0)
    single = EncoderDecoder(Stride4(), Head(K))
    hrda = HRDA(Stride4(), Head(K), Head(K), hr_crop=(16, 16))
    return {"encoder_decoder": single, "hrda": hrda, "accel": ACCEL(EncoderDecoder(Stride4(),
                                                                                   Head(K)), K)}


def frames(b: int = 2, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("name", ["encoder_decoder", "hrda", "accel"])
def test_preprocess_is_imagenet_normalisation_and_not_in_the_state_dict(name):
    model = models()[name]
    x = frames()
    by_hand = torch.stack([(x[:, c].float() - IMNET_MEAN[c]) / IMNET_STD[c] for c in range(3)], 1)
    torch.testing.assert_close(model.preprocess(x), by_hand, rtol=0, atol=1e-6)
    assert not any("pixel_" in k for k in model.state_dict())  # checkpoints stay as they were
    prev = frames(seed=1)
    prepared = model.prepare(Pair(x, prev, torch.zeros(2, 2, 32, 32)))
    torch.testing.assert_close(prepared.prev, model.preprocess(prev))
    assert prepared.flow is not None and not prepared.flow.any()  # the flow is left alone
    with pytest.raises(ValueError, match=r"RGB images \[\.\.\., 3, H, W\]"):
        model.preprocess(torch.zeros(2, 4, 8, 8))


@pytest.mark.parametrize("name", ["encoder_decoder", "hrda", "accel"])
def test_forward_is_forward_train_and_predict_is_full_resolution(name):
    model = models()[name].eval()
    x = model.preprocess(frames())
    inputs = Pair(x, model.preprocess(frames(seed=1)), torch.randn(2, 2, 32, 32))
    if not model.two_frame:
        inputs = inputs.single()
    box = (0, 16, 16, 32)
    a = model(inputs, box=box, generator=torch.Generator().manual_seed(0))
    b = model.forward_train(inputs, box=box, generator=torch.Generator().manual_seed(0))
    assert a.keys() == b.keys() and "logits" in a
    torch.testing.assert_close(a["logits"], b["logits"])
    whole = model.predict(inputs)
    assert whole.shape == (2, K, 32, 32)
    torch.testing.assert_close(whole, model.inference(inputs))
    torch.testing.assert_close(model.predict(inputs, "slide", (32, 32), (16, 16)), whole)
    with pytest.raises(ValueError, match="mode must be 'whole' or 'slide'"):
        model.predict(inputs, "slide")
    with pytest.raises(ValueError, match="mode must be 'whole' or 'slide'"):
        model.predict(inputs, "tiles", (16, 16), (8, 8))


def test_callers_ask_the_interface_what_a_model_needs():
    m = models()
    assert not m["encoder_decoder"].two_frame and not m["hrda"].predict_two_frame
    assert m["accel"].two_frame and m["accel"].predict_two_frame
    single_eval = ACCEL(EncoderDecoder(Stride4(), Head(K)), K, compat_single_frame_eval=True)
    assert single_eval.two_frame and not single_eval.predict_two_frame
    # what predict_two_frame=False promises: frame t alone is enough
    x = single_eval.preprocess(frames())
    torch.testing.assert_close(single_eval.predict(Pair(x)), single_eval.segmentor.predict(x))
    assert m["hrda"].feature_scale == 0.5 and m["encoder_decoder"].feature_scale == 1.0
    assert ACCEL(m["hrda"], K).feature_scale == 0.5


def test_a_two_frame_model_refuses_frame_t_alone():
    model = models()["accel"]
    x = model.preprocess(frames())
    for bad in (x, Pair(x), Pair(x, x)):
        with pytest.raises(ValueError, match="ACCEL needs a Pair with frame t−k"):
            model.forward_train(bad)
        with pytest.raises(ValueError, match="ACCEL needs a Pair with frame t−k"):
            model.predict(bad)


@pytest.mark.parametrize("size", [(33, 47), (32, 48)])
def test_hrda_context_and_fd_reference_are_scaled_alike(size):
    """FD compares HRDA's context features with the frozen copy's on the same rescaled image:
    sizes round half up (17 × 24 for 33 × 47), also for odd sizes."""
    torch.manual_seed(0)
    hrda = HRDA(Stride4(), Head(K), Head(K), hr_crop=(16, 16)).eval()
    fd = ImageNetFD(hrda.backbone, weight=0.5, classes=None, feature_scale=hrda.feature_scale)
    h, w = size
    x = hrda.preprocess(frames(1, h, w))
    out = hrda.forward_train(x, box=(0, 16, 0, 16))
    small = (int(h * 0.5 + 0.5), int(w * 0.5 + 0.5))
    context = F.interpolate(x, small, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["features"][-1], hrda.backbone(context)[-1])
    label = torch.zeros(1, h, w, dtype=torch.long)
    with torch.no_grad():
        hrda.backbone.a.weight.add_(0.1)  # the student moved away from its frozen copy
    feats = hrda.backbone(context)[-1]
    expected = 0.5 * feature_distance(feats, fd.imnet(context)[-1], label, None)
    torch.testing.assert_close(fd(feats, x, label), expected)
    assert expected > 0
