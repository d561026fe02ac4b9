"""One composed training step against a plain re-derivation written here.

Every composition the paper configs use — source-only, target-only, DACS (+FD, +MIC, no mix),
+ flow-based refinement (each strategy and fill mode), + the video discriminator, ACCEL with
consistent mixup (+ MIC, + discriminator) — runs one ``train_step`` of the real method on tiny
stand-in networks (float64) and hand-made clip batches. The reference below recomputes the same
step from the published method — normalise, EMA teacher, pseudo-label and its quality weight,
ClassMix, blur, block mask, warp, refine, feature distance, discriminator — with plain tensor
code, OpenCV and numpy, calling nothing of ``vidda`` except the stand-in networks' weights.
Every logged loss term and the gradient of every student (and discriminator) parameter must agree.

The random draws are replayed from the same seeds in the order the methods document: numpy's
``rng.choice`` per ClassMix image; on the torch generator the two augmentation gates, a blur σ
(per mixed image, once per MIC batch) and MIC's block grid. Colour jitter is switched off
(``color_jitter_p = 1``: its gate never opens); it has its own tests against kornia's formulas.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from standins import Head, Stride4
from torch import Tensor, nn

from vidda.config.load import config_from_dict, merge_overrides
from vidda.models.segmentors.accel import ACCEL
from vidda.models.segmentors.encoder_decoder import EncoderDecoder
from vidda.models.segmentors.hrda import HRDA
from vidda.uda.method import StepContext
from vidda.uda.methods import build_method

K = 5  # classes of the stand-in head
B = 2
IMNET_MEAN = (123.675, 116.28, 103.53)  # ImageNet statistics on the 0-255 scale
IMNET_STD = (58.395, 57.12, 57.375)
TAU_FD = 0.005  # DAFormer's feature-distance weight, the default
RARE = {3, 5, 12, 16, 18, 17, 7, 6, 15, 4, 11}  # the 11 rarest Cityscapes classes
ATOL = 1e-9
HR_CROP = 32  # HRDA's detail crop in the tests
STEP = 2  # the iteration tested (of 3)


# --------------------------------------------------------------------------- stand-in networks


class Float64(nn.Module):
    """The stand-in backbone, run in float64 (the methods hand it float32 images)."""

    out_channels = Stride4.out_channels

    def __init__(self) -> None:
        super().__init__()
        self.net = Stride4().double()

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.net(x.double())


def single_student(seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    return EncoderDecoder(Float64(), Head(K).double())


def hrda_student(seed: int = 0) -> HRDA:
    torch.manual_seed(seed)
    return HRDA(Float64(), Head(K).double(), Head(K).double(), hr_crop=(HR_CROP, HR_CROP))


def accel_student(seed: int = 0) -> ACCEL:
    torch.manual_seed(seed)
    model = ACCEL(EncoderDecoder(Float64(), Head(K).double()), K).double()
    with torch.no_grad():  # a fusion that reads the warped half too
        model.fusion.weight.add_(0.3 * torch.randn_like(model.fusion.weight))
    return model


@dataclass
class Nets:
    """Plain copies of a student's stand-in modules (the reference's networks)."""

    backbone: nn.Module
    head: nn.Module
    fusion: Tensor | None = None  # ACCEL's [K, 2K] 1x1 weight
    attention: nn.Module | None = None  # HRDA's scale-attention head

    def features(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def parameters(self) -> list[Tensor]:
        ps = [*self.backbone.parameters(), *self.head.parameters()]
        if self.attention is not None:
            ps += list(self.attention.parameters())
        return ps + ([self.fusion] if self.fusion is not None else [])


def nets_of(student: nn.Module) -> Nets:
    base = student.segmentor if isinstance(student, ACCEL) else student
    fusion = None
    if isinstance(student, ACCEL):
        fusion = student.fusion.weight.detach().clone()[:, :, 0, 0].requires_grad_(True)
    attention = copy.deepcopy(base.scale_attention) if isinstance(base, HRDA) else None
    nets = Nets(copy.deepcopy(base.backbone), copy.deepcopy(base.decode_head), fusion, attention)
    for p in nets.parameters():
        p.requires_grad_(True)
    return nets


def averaged(a: Nets, b: Nets, w_a: float) -> Nets:
    """``w_a · a + (1 − w_a) · b`` parameter by parameter, without gradients."""
    out = copy.deepcopy(a)
    with torch.no_grad():
        for p, q in zip(out.parameters(), b.parameters(), strict=True):
            p.mul_(w_a).add_((1 - w_a) * q)
            p.requires_grad_(False)
    return out


def perturbed(student: nn.Module, seed: int) -> dict[str, Tensor]:
    """A state dict near the student's, as after an optimizer step."""
    g = torch.Generator().manual_seed(seed)
    return {k: v + 0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype)
            for k, v in student.state_dict().items()}  # fmt: skip


# --------------------------------------------------------------------------- plain reference ops


def norm(u8: Tensor) -> Tensor:
    """uint8 ``[..., 3, H, W]`` → ImageNet-normalised float32."""
    mean = torch.tensor(IMNET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMNET_STD).view(3, 1, 1)
    return (u8.float() - mean) / std


def resize(z: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(z.shape[-2:]) == tuple(size):
        return z
    return F.interpolate(z, size, mode="bilinear", align_corners=False)


def ce(logits: Tensor, label: Tensor, weight: Tensor | None = None) -> Tensor:
    """Pixel-weighted cross-entropy averaged over all B·H·W pixels (255 contributes 0)."""
    z = resize(logits, tuple(label.shape[-2:]))
    logp = z.log_softmax(dim=1)
    lab = label.long()
    ignored = lab == 255
    nll = -logp.gather(1, lab.masked_fill(ignored, 0)[:, None])[:, 0]
    nll = nll.masked_fill(ignored, 0.0)
    if weight is not None:
        nll = nll * weight
    return nll.sum() / nll.numel()


def bilinear_at(x: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Sample ``x`` ``[B, C, H, W]`` at ``p + flow(p)`` with bilinear weights (gather, no
    grid_sample); valid where the point lies in the hull of pixel centres. 0 where invalid."""
    b, c, h, w = x.shape
    fl = flow.double()
    xs = torch.arange(w, dtype=torch.float64).view(1, 1, w) + fl[:, 0]
    ys = torch.arange(h, dtype=torch.float64).view(1, h, 1) + fl[:, 1]
    valid = (xs >= -1e-3) & (xs <= w - 1 + 1e-3) & (ys >= -1e-3) & (ys <= h - 1 + 1e-3)
    x0, y0 = xs.floor(), ys.floor()
    out = torch.zeros_like(x)
    flat = x.reshape(b, c, h * w)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wgt = (1 - (xs - xi).abs()).clamp(min=0) * (1 - (ys - yi).abs()).clamp(min=0)
            idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().view(b, 1, h * w)
            vals = flat.gather(2, idx.expand(b, c, h * w)).view(b, c, h, w)
            out = out + wgt[:, None].to(x.dtype) * vals
    return out.masked_fill(~valid[:, None], 0.0), valid


def nearest_at(x: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest sample of ``x`` ``[B, C, H, W]`` at ``p + flow(p)`` (flows never at .5)."""
    b, c, h, w = x.shape
    xs = torch.arange(w, dtype=torch.float64).view(1, 1, w) + flow[:, 0].double()
    ys = torch.arange(h, dtype=torch.float64).view(1, h, 1) + flow[:, 1].double()
    valid = (xs >= -1e-3) & (xs <= w - 1 + 1e-3) & (ys >= -1e-3) & (ys <= h - 1 + 1e-3)
    xi, yi = xs.round().clamp(0, w - 1).long(), ys.round().clamp(0, h - 1).long()
    idx = (yi * w + xi).view(b, 1, h * w).expand(b, c, h * w)
    out = x.reshape(b, c, h * w).gather(2, idx).view(b, c, h, w)
    return out.masked_fill(~valid[:, None], 0), valid


def blur(x: Tensor, sigma: float) -> Tensor:
    """OpenCV Gaussian blur of float32 images ``[N, C, H, W]``, kernel ≈ 10 % of each side,
    mirrored border without repeating the edge."""

    def ksize(length: int) -> int:
        c = math.ceil(0.1 * length)
        return int(math.floor(c - 0.5 + c % 2))

    n, c, h, w = x.shape
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        for j in range(c):
            out[i, j] = cv2.GaussianBlur(x[i, j].numpy(), (ksize(w), ksize(h)), sigma, None,
                                         sigma, cv2.BORDER_REFLECT_101)  # fmt: skip
    return torch.from_numpy(out)


def classmix_masks(y_s: Tensor, rng: np.random.Generator) -> Tensor:
    """DACS: half (rounded up) of the classes present in the whole source batch (255 included),
    drawn per image without replacement; the image's pixels of those classes are pasted."""
    classes = np.unique(y_s.numpy())
    n = len(classes)
    masks = []
    for i in range(y_s.shape[0]):
        drawn = rng.choice(classes, (n + 1) // 2, replace=False)
        masks.append(torch.from_numpy(np.isin(y_s[i].numpy(), drawn)))
    return torch.stack(masks)


def paste(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a`` where ``mask`` ``[B, H, W]`` else ``b`` (maps ``[B, H, W]`` or ``[B, C, H, W]``)."""
    m = mask if a.ndim == 3 else mask[:, None]
    return torch.where(m, a, b)


def pseudo(teacher_logits: Tensor, tau: float, margins: Tensor) -> dict[str, Tensor]:
    """Argmax label, quality weight (share of confident pixels of the batch) × margins, probs."""
    probs = teacher_logits.float().softmax(dim=1)  # the methods' softmax runs in float32
    conf, label = probs.max(dim=1)
    q = (conf >= tau).float().mean()
    return {"label": label, "weight": q * margins.float(), "probs": probs, "q": q}


def fd_reference(f_s: Tensor, f_i: Tensor, label: Tensor, classes: list[int],
                 min_ratio: float = 0.75) -> Tensor:  # fmt: skip
    """DAFormer FD: mean L2 distance of features over cells whose source label is a chosen
    class covering at least ``min_ratio`` of the cell (255 counts as its own class)."""
    b, _, h, w = f_s.shape
    s = label.shape[-1] // w
    dist = (f_s - f_i.detach()).pow(2).sum(dim=1).sqrt()
    total, count = dist.new_zeros(()), 0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                cell = label[i, y * s : (y + 1) * s, x * s : (x + 1) * s].flatten().tolist()
                values = sorted(set(cell), key=lambda v: (-cell.count(v), v if v != 255 else 99))
                top = values[0]
                if top != 255 and cell.count(top) / len(cell) >= min_ratio and top in classes:
                    total = total + dist[i, y, x]
                    count += 1
    return total / max(count, 1)


def disc_forward(params: list[Tensor], x: Tensor) -> Tensor:
    """AdaptSegNet's discriminator: five 4×4 stride-2 convolutions, LeakyReLU(0.2) between."""
    for i in range(5):
        x = F.conv2d(x, params[2 * i], params[2 * i + 1], stride=2, padding=1)
        if i < 4:
            x = F.leaky_relu(x, 0.2)
    return x


def disc_input(z_t: Tensor, z_tk: Tensor, size: tuple[int, int]) -> Tensor:
    """Both frames' logits resized to ``size``, softmaxed per frame, stacked (t first)."""
    return torch.cat((resize(z_t, size).softmax(1), resize(z_tk, size).softmax(1)), dim=1)


# --------------------------------------------------------------------------- batches and configs


def labels(h: int, w: int, seed: int, ignore: bool = True) -> Tensor:
    """``[B, H, W]`` uint8: 8×8 blocks of one class each, 10 % of pixels re-drawn, a 255 patch."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, K, (B, h // 8, w // 8), generator=g)
    lab = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
    noise = torch.rand(B, h, w, generator=g) < 0.1
    lab = torch.where(noise, torch.randint(0, K, (B, h, w), generator=g), lab)
    if ignore:
        lab[:, : h // 4, : w // 8] = 255
    return lab.to(torch.uint8)


def make_clip(t: int, h: int, w: int, seed: int, flow: tuple[float, float],
              ignore: bool = True) -> dict[str, Any]:  # fmt: skip
    """A clip batch of ``t`` random frames. Frame i of batch element b has the constant flow
    ``(u + 0.75 i + 2b, v + 0.75 i)``; for u, v ≡ ±0.25 (mod 1) neither a flow nor the sum of two
    consecutive ones is at half a pixel, so nearest sampling is unambiguous. Flows are invalid
    on a band of rows that moves with i, b and the seed; margins exclude a top row and a column."""
    g = torch.Generator().manual_seed(seed)
    flows = torch.zeros(B, t, 2, h, w)
    valid = torch.ones(B, t, h, w, dtype=torch.bool)
    for b in range(B):
        for i in range(t):
            flows[b, i, 0], flows[b, i, 1] = flow[0] + 0.75 * i + 2 * b, flow[1] + 0.75 * i
            row = (3 + 5 * i + 7 * b + seed) % (h - 2)
            valid[b, i, row : row + 2] = False
    margins = torch.ones(B, h, w, dtype=torch.bool)
    margins[:, :1], margins[:, :, -1:] = False, False
    return {
        "frames": torch.randint(0, 256, (B, t, 3, h, w), generator=g, dtype=torch.uint8),
        "label": labels(h, w, seed + 1, ignore),
        "flows": flows,
        "flow_valid": valid,
        "pl_valid": margins,
    }


def config(h: int, w: int, offsets: list[int], overrides: list[str]) -> Any:
    flows = [o for o in offsets if o != offsets[0]]

    def ds(domain: str) -> dict[str, Any]:
        return {"type": "synthetic", "root": "", "domain": domain, "split": "train",
                "offsets": offsets, "flow_offsets": flows, "crop_size": [h, w]}  # fmt: skip

    base = {
        "seed": 0,
        "data": {"source": ds("source"), "target": ds("target"), "batch_size": B},
        "model": {"num_classes": K},
        "method": {"name": "dacs", "color_jitter_p": 1.0, "ema_alpha": 0.9},
        "schedule": {"iters": 3, "warmup_iters": 1},
        "train": {"device": "cpu"},
    }
    return merge_overrides(config_from_dict(base), overrides)


# --------------------------------------------------------------------------- the composition


@dataclass
class Setup:
    """One composition: model kind, image size, config overrides and what the reference does."""

    accel: bool = False
    hrda: bool = False
    h: int = 64
    w: int = 64
    blur: bool = True
    mix: bool = True
    fd: list[int] | None = None  # FD classes
    fd_min_ratio: float = 0.75
    mic: float = 0.0  # MIC weight (0 = off)
    refine: list[str] | None = None  # strategies (None = off)
    fill: str = "bottom"
    l_warp: float = 0.8
    l_mix: float = 0.3
    begin: int = 2  # = STEP: the refined label's first iteration
    thresholds: tuple[float, float] = (0.0, 0.0)  # warp_frame, consis_conf
    disc: bool = False
    consistent: bool = True  # ACCEL: frame t−k and the flow mixed with frame t's mask
    aug_per_frame: bool = False  # compat.mixup_aug_per_frame
    k: int = 1  # method.frame_distance
    seed: int = 0
    draw_seed: int = 8  # the step's random streams; 8 opens the blur gates of most setups
    extra: list[str] = field(default_factory=list)

    def overrides(self, tau: float) -> list[str]:
        o = [f"method.pseudo_threshold={tau!r}", f"method.frame_distance={self.k}",
             f"method.blur={str(self.blur).lower()}",
             f"method.mix={'class' if self.mix else 'none'}", *self.extra]  # fmt: skip
        if self.accel:
            o += ["model.segmentor=accel", f"method.consistent_mix={str(self.consistent).lower()}",
                  f"compat.mixup_aug_per_frame={str(self.aug_per_frame).lower()}"]  # fmt: skip
        if self.fd is not None:
            o += ["method.fd.enabled=true", f"method.fd.classes={self.fd}",
                  f"method.fd.min_ratio={self.fd_min_ratio}"]  # fmt: skip
        if self.mic:
            o += ["method.mic.enabled=true", f"method.mic.weight={self.mic}",
                  "method.mic.block_size=16", "method.mic.mask_ratio=0.5"]  # fmt: skip
        if self.refine is not None:
            strategies = ",".join(self.refine)
            o += ["method.refine.enabled=true", f"method.refine.strategies=[{strategies}]",
                  f"method.refine.fill={self.fill}", f"method.refine.l_warp={self.l_warp}",
                  f"method.refine.l_mix={self.l_mix}", f"method.refine.begin={self.begin}",
                  f"method.refine.warp_frame_threshold={self.thresholds[0]}",
                  f"method.refine.consis_conf_threshold={self.thresholds[1]}"]  # fmt: skip
        if self.disc:
            d = "method.discriminator"
            o += [f"{d}.enabled=true", f"{d}.width=4", f"{d}.weight=2.0", f"{d}.lambda_adv=0.5"]
        return o


def teacher_logits(nets: Nets, x: Tensor, prev: Tensor | None = None,
                   flow: Tensor | None = None, valid: Tensor | None = None) -> Tensor:  # fmt: skip
    """Full-resolution teacher logits; ACCEL fuses the warped t−k logits."""
    size = tuple(x.shape[-2:])
    with torch.no_grad():
        if nets.attention is not None:
            return hrda_inference(nets, x)
        z = resize(nets.logits(x), size)
        if prev is None:
            return z
        return fuse(nets, z, resize(nets.logits(prev), size), flow, valid)


def fuse(nets: Nets, z: Tensor, z_tk: Tensor, flow: Tensor, valid: Tensor) -> Tensor:
    """ACCEL: warp the t−k logits onto t (invalid → frame t's), 1×1 fusion of [z; warped]."""
    warped, ok = bilinear_at(z_tk, flow)
    ok = ok & valid
    warped = torch.where(ok[:, None], warped, z)
    assert nets.fusion is not None
    return torch.einsum("oc,bchw->bohw", nets.fusion.to(z.dtype), torch.cat((z, warped), 1))


def student_logits(nets: Nets, x: Tensor, prev: Tensor | None = None,
                   flow: Tensor | None = None, valid: Tensor | None = None) -> Tensor:  # fmt: skip
    """The student's training logits: stride 4 (single frame), or ACCEL's fused full-size ones
    (frame t−k runs without gradient)."""
    if prev is None:
        return nets.logits(x)
    size = tuple(x.shape[-2:])
    with torch.no_grad():
        z_tk = resize(nets.logits(prev), size)
    return fuse(nets, resize(nets.logits(x), size), z_tk, flow, valid)


def hrda_context(nets: Nets, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
    """HRDA's context pass on the half-size image: features, logits S_lr, attention A."""
    feats = nets.backbone(resize(x, (x.shape[-2] // 2, x.shape[-1] // 2)))
    return feats, nets.head(feats), torch.sigmoid(nets.attention(feats))


def hrda_train(nets: Nets, x: Tensor, draws: Draws) -> dict[str, Any]:
    """HRDA's training pass: one detail crop per batch (offsets multiples of 8, y then x drawn),
    attention zero outside the crop, S = A·S_hr(placed) + (1 − A)·S_lr at stride 4."""
    h, w = x.shape[-2:]

    def offset(margin: int) -> int:
        return int(torch.randint(0, max((margin + 1) // 8, 1), (1,), generator=draws.g)) * 8

    y1, x1 = offset(h - HR_CROP), offset(w - HR_CROP)
    feats, s_lr, att = hrda_context(nets, x)
    s_hr = nets.logits(x[:, :, y1 : y1 + HR_CROP, x1 : x1 + HR_CROP])
    inside = torch.zeros_like(att)  # the crop's footprint at the context logits' stride 8
    inside[:, :, y1 // 8 : (y1 + HR_CROP) // 8, x1 // 8 : (x1 + HR_CROP) // 8] = 1
    att = att * inside
    size = (h // 4, w // 4)
    placed = s_hr.new_zeros((x.shape[0], K, *size))
    placed[:, :, y1 // 4 : (y1 + HR_CROP) // 4, x1 // 4 : (x1 + HR_CROP) // 4] = s_hr
    fused = resize(att, size) * placed + resize((1 - att) * s_lr, size)
    return {"logits": fused, "hr": s_hr, "box": (y1, x1), "features": feats}


def hrda_inference(nets: Nets, x: Tensor) -> Tensor:
    """HRDA's inference: detail logits from crops at half-crop stride, averaged; full size."""
    h, w = x.shape[-2:]
    _, s_lr, att = hrda_context(nets, x)
    total = x.new_zeros((x.shape[0], K, h // 4, w // 4), dtype=torch.float64)
    count = torch.zeros(h // 4, w // 4, dtype=torch.float64)
    step = HR_CROP // 2
    for y in range(0, h - HR_CROP + 1, step):
        for xx in range(0, w - HR_CROP + 1, step):
            win = (slice(None), slice(None), slice(y // 4, (y + HR_CROP) // 4),
                   slice(xx // 4, (xx + HR_CROP) // 4))  # fmt: skip
            total[win] += nets.logits(x[:, :, y : y + HR_CROP, xx : xx + HR_CROP])
            count[win[2:]] += 1
    size = (h // 4, w // 4)
    fused = resize(att, size) * (total / count) + resize((1 - att) * s_lr, size)
    return resize(fused, (h, w))


class Draws:
    """The step's torch generator, replayed."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.blurs = 0  # σ draws, i.e. blurred images or clips

    def rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.g)

    def sigma(self) -> float:
        self.blurs += 1
        return float(0.15 + self.rand(1)[0])


def mixed_aug(x: Tensor, draws: Draws, blur_on: bool, clips: bool) -> Tensor:
    """DACS's augmentation of mixed images ``[B, 3, H, W]`` (or clips ``[B, 2, 3, H, W]``):
    shared gates, then per image a σ; colour jitter is off here."""
    gates = draws.rand(2)
    if not (blur_on and gates[1] > 0.5):
        return x
    out = []
    for xi in x:
        frames = xi if clips else xi[None]
        out.append(blur(frames, draws.sigma()).reshape(xi.shape))
    return torch.stack(out)


def refine_reference(s: Setup, cur: dict[str, Tensor], prev: dict[str, Tensor], flow: Tensor,
                     valid: Tensor, gt: Tensor, src_h: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Warp frame t−k's pseudo-label onto t, fill the holes, apply the strategies in their
    fixed order (consis, max_conf, warp_frame, consis_conf, rare_class, oracle)."""
    lab_w, ok = nearest_at(prev["label"][:, None].double(), flow)
    ok = ok & valid
    label = lab_w[:, 0].long().masked_fill(~ok, 255)
    weight = nearest_at(prev["weight"][:, None], flow)[0][:, 0].masked_fill(~ok, 0.0)
    probs = bilinear_at(prev["probs"], flow)[0].masked_fill(~ok[:, None], 0.0)
    h, w = label.shape[-2:]
    if s.fill == "bottom":
        rows = torch.arange(h).view(h, 1) >= (800 if src_h == 1024 else int(h * 0.7))
        cols = torch.arange(w).view(1, w)
        region = rows | (cols < 100) | (cols >= w - 100)
        take = region & (weight == 0)
    elif s.fill == "all":
        take = ~ok
    else:
        take = torch.zeros_like(ok)
    label = torch.where(take, cur["label"], label)
    weight = torch.where(take, cur["weight"], weight)
    names = set(s.refine or [])
    c_t = cur["probs"].max(1).values
    c_w = probs.max(1).values

    def drop(bad: Tensor) -> None:
        nonlocal label, weight
        label, weight = label.masked_fill(bad, 255), weight.masked_fill(bad, 0.0)

    if "consis" in names:
        drop(label != cur["label"])
    if "max_conf" in names:
        use_cur = (c_t > c_w) | ~ok
        label = torch.where(use_cur, cur["label"], label)
        weight = torch.where(use_cur, cur["weight"], weight)
    if "warp_frame" in names:
        drop((c_w < s.thresholds[0]) & ok)
    if "consis_conf" in names:
        drop(~((label == cur["label"]) & (c_t > s.thresholds[1])))
    if "rare_class" in names:
        out = label.clone()
        for idx in np.ndindex(*label.shape):
            a, b = int(cur["label"][idx]), int(label[idx])
            if a == b or (a in RARE and b not in RARE):
                out[idx] = a
            elif b in RARE and a not in RARE:
                out[idx] = b
            else:
                out[idx] = 255
        label = out
        weight = weight.masked_fill(label == 255, 0.0)
    if "oracle" in names:
        drop(~((label == gt.long()) & (gt != 255)))
    return label, weight


def chained(clip: dict[str, Any], i: int) -> tuple[Tensor, Tensor]:
    """Flow from frame i to frame i − 2: f_i(p) + f_{i−1}(p + f_i(p)) (bilinear), valid where
    f_i is, where every neighbour of f_{i−1} read is, and where the end point is inside."""
    f0, v0 = clip["flows"][:, i], clip["flow_valid"][:, i]
    f1, v1 = clip["flows"][:, i - 1], clip["flow_valid"][:, i - 1]
    second, inside = bilinear_at(f1.double(), f0)
    ok1, _ = bilinear_at(v1[:, None].double(), f0)
    flow = f0.double() + second
    _, inside_end = bilinear_at(torch.zeros_like(flow[:, :1]), flow)
    return flow.float(), v0 & inside & (ok1[:, 0] > 1 - 1e-4) & inside_end


def pl_acc(label: Tensor, gt: Tensor) -> tuple[float, float]:
    labelled = gt != 255
    kept = labelled & (label != 255)
    correct = (kept & (label == gt.long())).sum()
    return float(correct / kept.sum()), float(kept.sum() / labelled.sum())


def reference_step(s: Setup, st: Nets, teacher: Nets, imnet: nn.Module | None,
                   d_params: list[Tensor] | None, src: dict[str, Any], tgt: dict[str, Any],
                   tau: float) -> tuple[dict[str, float], Tensor, list[Tensor]]:  # fmt: skip
    """The whole DACS iteration; returns the logged terms, the student's total loss and the
    discriminator's loss gradient."""
    rng = np.random.default_rng(s.draw_seed)
    draws = Draws(s.draw_seed)
    i0, i1 = src["frames"].shape[1] - 1, src["frames"].shape[1] - 2  # frames t and t−1
    y_s = src["label"].long()
    xs, xt = norm(src["frames"][:, i0]), norm(tgt["frames"][:, i0])
    xs_p, xt_p = norm(src["frames"][:, i1]), norm(tgt["frames"][:, i1])
    fs, vs = src["flows"][:, i0], src["flow_valid"][:, i0]
    ft, vt = tgt["flows"][:, i0], tgt["flow_valid"][:, i0]
    two = s.accel
    logs: dict[str, float] = {}
    total = torch.zeros((), dtype=torch.float64)

    def forward(x: Tensor, *pair: Tensor) -> dict[str, Any]:
        """The student's training outputs for frame t (and, ACCEL, frame t−k and the flow)."""
        if s.hrda:
            return hrda_train(st, x, draws)
        if pair:
            return {"logits": student_logits(st, x, *pair)}
        feats = st.features(x)
        return {"logits": st.head(feats), "features": feats}

    def loss_terms(out: dict[str, Any], label: Tensor, weight: Tensor | None = None):
        if not s.hrda:
            return {"loss_seg": ce(out["logits"], label, weight)}
        y1, x1 = out["box"]
        crop = (slice(None), slice(y1, y1 + HR_CROP), slice(x1, x1 + HR_CROP))
        w_hr = None if weight is None else weight[crop]
        return {"loss_seg": 0.9 * ce(out["logits"], label, weight),
                "loss_seg_hr": 0.1 * ce(out["hr"], label[crop], w_hr)}  # fmt: skip

    def add(tag: str, terms: dict[str, Tensor], scale: float = 1.0) -> None:
        nonlocal total
        for k, v in terms.items():
            logs[f"{k}_{tag}" if tag else k] = float(scale * v.detach())
            total = total + scale * v

    # source (+ FD on the same forward; HRDA: the context features, the image at half size)
    out_s = forward(xs, xs_p, fs, vs) if two else forward(xs)
    add("src", loss_terms(out_s, y_s))
    if imnet is not None:
        with torch.no_grad():
            ref = imnet(resize(xs, (xs.shape[-2] // 2, xs.shape[-1] // 2)) if s.hrda else xs)[-1]
        add("", {"loss_fd": TAU_FD * fd_reference(out_s["features"][-1], ref, y_s, s.fd or [],
                                                   s.fd_min_ratio)})

    # pseudo-label of frame t (and t−k)
    margins, gt = tgt["pl_valid"], tgt["label"]
    cur = pseudo(teacher_logits(teacher, xt, *((xt_p, ft, vt) if two else ())), tau, margins)
    logs["pl_weight"] = float(cur["weight"].mean())
    logs["pl_acc_raw"] = pl_acc(cur["label"], gt)[0]

    def target_loss(label: Tensor, weight: Tensor) -> dict[str, Tensor]:
        if not s.mix:
            return loss_terms(forward(xt, *((xt_p, ft, vt) if two else ())), label, weight)
        masks = classmix_masks(y_s, rng)
        x_mix = paste(masks, xs, xt)
        if two:
            p_mix, f_mix, v_mix = xt_p, ft, vt
            if s.consistent:
                p_mix, f_mix = paste(masks, xs_p, xt_p), paste(masks, fs, ft)
                v_mix = paste(masks, vs, vt)
            if s.aug_per_frame:
                x_aug = mixed_aug(x_mix, draws, s.blur, clips=False)
                p_aug = mixed_aug(p_mix, draws, s.blur, clips=False)
            else:  # one draw per clip for both frames
                clip = mixed_aug(torch.stack((x_mix, p_mix), 1), draws, s.blur, clips=True)
                x_aug, p_aug = clip[:, 0], clip[:, 1]
            out = forward(x_aug, p_aug, f_mix, v_mix)
        else:
            out = forward(mixed_aug(x_mix, draws, s.blur, clips=False))
        mixed_label = paste(masks, y_s, label)
        mixed_weight = paste(masks, torch.ones_like(weight), weight)
        return loss_terms(out, mixed_label, mixed_weight)

    if s.refine is not None and s.begin <= STEP:
        xt_pp = norm(tgt["frames"][:, i1 - 1]) if two else None
        prev_in = (xt_pp, tgt["flows"][:, i1], tgt["flow_valid"][:, i1]) if two else ()
        if s.k == 1:
            prev = pseudo(teacher_logits(teacher, xt_p, *prev_in), tau, margins)
            flow, valid = ft, vt
        else:  # frame t−2, the flows t → t−1 → t−2 chained
            prev = pseudo(teacher_logits(teacher, norm(tgt["frames"][:, i0 - 2])), tau, margins)
            flow, valid = chained(tgt, i0)
        label, weight = refine_reference(s, cur, prev, flow, valid, gt, y_s.shape[-2])
        logs["pl_acc_refined"], logs["pl_coverage_refined"] = pl_acc(label, gt)
        add("warp", target_loss(label, weight), s.l_warp)
    w_mix = s.l_mix if s.refine is not None else 1.0
    if w_mix > 0:
        add("mix", target_loss(cur["label"], cur["weight"]), w_mix)

    if s.mic:  # colour augmentation (blur eligible), one block mask for the frame(s)
        frames = torch.stack((xt, xt_p), 1) if two else xt[:, None]
        gates = draws.rand(2)
        if gates[1] > 0.5:
            frames = blur(frames.flatten(0, 1), draws.sigma()).view(frames.shape)
        h, w = xt.shape[-2:]
        keep = (draws.rand(B, 1, round(h / 16), round(w / 16)) > 0.5).float()
        keep = keep.repeat_interleave(16, 2).repeat_interleave(16, 3)[:, None]
        frames = frames * keep
        out = forward(frames[:, 0], *((frames[:, 1], ft, vt) if two else ()))
        add("mic", loss_terms(out, cur["label"], cur["weight"]), s.mic)

    d_grads: list[Tensor] = []
    if d_params is not None:  # LS-GAN video discriminator, source 0, target 1
        size = (xt.shape[-2] // 2, xt.shape[-1] // 2)
        if two:
            def earlier(c: dict[str, Any]) -> tuple[Tensor, ...]:  # (t−1, t−2, flow of t−1)
                return norm(c["frames"][:, i1]), norm(c["frames"][:, i1 - 1]), \
                    c["flows"][:, i1], c["flow_valid"][:, i1]  # fmt: skip

            pairs_s = [(xs, xs_p, fs, vs), earlier(src)]
            pairs_t = [(xt, xt_p, ft, vt), earlier(tgt)]
        else:
            pairs_s, pairs_t = [(xs,), (xs_p,)], [(xt,), (xt_p,)]
        with torch.no_grad():
            d_src = disc_input(*(forward(*p)["logits"] for p in pairs_s), size)
        d_trg = disc_input(*(forward(*p)["logits"] for p in pairs_t), size)
        frozen = [p.detach() for p in d_params]
        add("", {"loss_adv": 2.0 * 0.5 * disc_forward(frozen, d_trg).pow(2).mean()})
        out_s = disc_forward(d_params, d_src.detach())
        out_t = disc_forward(d_params, d_trg.detach())
        d_loss = 2.0 * (0.5 * out_s.pow(2).mean() + 0.5 * (out_t - 1).pow(2).mean())
        logs["loss_disc"] = float(d_loss.detach())
        d_grads = list(torch.autograd.grad(d_loss, d_params))
    assert draws.blurs > 0 or not ((s.blur and s.mix) or s.mic), "pick a seed that blurs"
    return logs, total, d_grads


# --------------------------------------------------------------------------- the test driver


def run_composition(s: Setup) -> None:
    offsets = [-2, -1, 0]
    student = accel_student(s.seed) if s.accel else single_student(s.seed)
    if s.hrda:
        student = hrda_student(s.seed)
    src = make_clip(3, s.h, s.w, 10 + s.seed, (1.25, 0.25))
    tgt = make_clip(3, s.h, s.w, 20 + s.seed, (-0.75, 1.25), ignore=False)

    # weights at step 0 (teacher initialised to them), then after two optimizer steps; the EMA
    # momentum is min(1 − 1/(t + 1), α): 0.5 at step 1, 2/3 at step 2
    theta0 = nets_of(student)
    states = [perturbed(student, 100 + s.seed), perturbed(student, 200 + s.seed)]
    later = [copy.deepcopy(student) for _ in states]
    for model, state in zip(later, states, strict=True):
        model.load_state_dict(state)
    nets1, st = nets_of(later[0]), nets_of(later[1])
    teacher = averaged(averaged(theta0, nets1, 0.5), st, 2 / 3)
    tau = threshold_between(teacher, tgt, s.accel)

    cfg = config(s.h, s.w, offsets, s.overrides(tau))
    method = build_method(cfg, student, None)
    ref_imnet = copy.deepcopy(theta0.backbone).requires_grad_(False) if s.fd is not None else None
    d_params = None
    adversary = getattr(method, "adversary", None)
    if adversary is not None:
        adversary.disc.double()  # float64 like the stand-ins (same Parameter objects)
        d_params = [p.detach().clone().requires_grad_(True) for p in adversary.disc.parameters()]
    method.train()
    method.before_step(0)
    for step, state in enumerate(states, start=1):
        student.load_state_dict(state)
        method.before_step(step)
    for p in student.parameters():
        p.grad = None

    def backward(loss: Tensor) -> None:
        loss.backward()

    g, rng = torch.Generator().manual_seed(s.draw_seed), np.random.default_rng(s.draw_seed)
    ctx = StepContext(STEP, g, rng, backward)
    logs, _ = method.train_step({"source": src, "target": tgt}, ctx)

    ref_logs, total, d_grads = reference_step(s, st, teacher, ref_imnet, d_params, src, tgt, tau)
    got = {k: float(v) for k, v in logs.items() if k != "lr_disc"}
    assert set(got) == set(ref_logs), (sorted(got), sorted(ref_logs))
    for k, v in ref_logs.items():
        assert got[k] == pytest.approx(v, rel=1e-7, abs=ATOL), (k, got[k], v)
    assert all(v != 0 for k, v in ref_logs.items() if k.startswith("loss")), ref_logs

    grads = torch.autograd.grad(total, st.parameters())
    base = student.segmentor if s.accel else student
    params = list(base.parameters())
    got_grads = [p.grad for p in params]
    if s.accel:
        got_grads.append(student.fusion.weight.grad[:, :, 0, 0])
    for i, (g, r) in enumerate(zip(got_grads, grads, strict=True)):
        assert g is not None, f"student parameter {i} got no gradient"
        # ACCEL's warp runs its sampling grid in float32: ~1e-7 relative noise
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6 * float(r.abs().max()))
    if adversary is not None:
        assert logs["lr_disc"] == pytest.approx(1e-4 * (1 - STEP / 3) ** 0.9)
        for p, r in zip(adversary.disc.parameters(), d_grads, strict=True):
            assert p.grad is not None
            torch.testing.assert_close(p.grad, r, rtol=1e-5, atol=1e-6 * float(r.abs().max()))


def threshold_between(teacher: Nets, tgt: dict[str, Any], accel: bool) -> float:
    """A confidence threshold that about half the target pixels of every frame pass, far
    from every pixel's confidence (so the quality weight is neither 0 nor 1 and no tie decides)."""
    f = tgt["frames"]
    confs = []
    for i in (0, 1, 2):
        x = norm(f[:, i])
        extra = (norm(f[:, i - 1]), tgt["flows"][:, i], tgt["flow_valid"][:, i]) if accel else ()
        confs.append(teacher_logits(teacher, x, *extra).double().softmax(1).amax(1).flatten())
    c = torch.cat(confs).sort().values
    mid = len(c) // 2
    gaps = c[mid - len(c) // 8 : mid + len(c) // 8].diff()
    j = int(gaps.argmax()) + mid - len(c) // 8
    assert gaps.max() > 2e-6
    return float((c[j] + c[j + 1]) / 2)


@pytest.mark.parametrize("domain", ["source", "target"])
def test_supervised_step_matches_the_reference(domain: str) -> None:
    """Source-only / target-only: cross-entropy on frame t of that domain's labelled clips."""
    student = single_student()
    nets = nets_of(student)
    batch = {"source": make_clip(3, 64, 64, 1, (0.0, 0.0)),
             "target": make_clip(3, 64, 64, 2, (0.0, 0.0))}  # fmt: skip
    cfg = config(64, 64, [-2, -1, 0], [f"method.name={domain}_only"])
    method = build_method(cfg, student, None)
    assert method.uses_target == (domain == "target")
    ctx = StepContext(0, torch.Generator().manual_seed(0), np.random.default_rng(0),
                      lambda loss: loss.backward())  # fmt: skip
    logs, _ = method.train_step(batch, ctx)

    clip = batch[domain]
    loss = ce(nets.logits(norm(clip["frames"][:, 2])), clip["label"].long())
    assert set(logs) == {f"loss_seg_{domain[:3]}"}
    assert float(logs[f"loss_seg_{domain[:3]}"]) == pytest.approx(float(loss.detach()), rel=1e-9)
    for p, r in zip(student.parameters(), torch.autograd.grad(loss, nets.parameters()),
                    strict=True):  # fmt: skip
        torch.testing.assert_close(p.grad, r, rtol=1e-7, atol=1e-12)


# one of each kind first: a mutant that breaks a kind fails early (tools/mutate.py runs -x)
COMPOSITIONS = {
    "dacs": Setup(),
    "accel_mixup": Setup(accel=True),
    "refine_consis": Setup(refine=["consis"], h=32, w=256, mic=0.7),
    "video_discriminator": Setup(disc=True),
    "hrda": Setup(hrda=True, draw_seed=1),
    "dacs_fd_mic": Setup(fd=[0, 2, 4], mic=1.3, seed=1),
    "dacs_no_blur": Setup(blur=False),
    "dacs_mic_no_blur": Setup(blur=False, mic=0.7, draw_seed=1),  # MIC blurs with method.blur off
    "dacs_no_mix": Setup(mix=False),
    "dacs_fd": Setup(fd=[1, 3]),
    "dacs_mic": Setup(mic=0.7),
    "refine_consis_k2": Setup(refine=["consis"], h=32, w=256, k=2),
    "refine_max_conf": Setup(refine=["max_conf"], h=32, w=256),
    "refine_warp_frame": Setup(refine=["warp_frame"], h=32, w=256, thresholds=(0.3, 0.0)),
    "refine_consis_conf": Setup(refine=["consis_conf"], h=32, w=256, thresholds=(0.0, 0.3)),
    "refine_rare_class": Setup(refine=["rare_class"], h=32, w=256, fill="all"),
    "refine_oracle": Setup(refine=["oracle"], h=32, w=256, l_mix=0.0),
    "refine_warped_as_is_fill_none": Setup(refine=[], h=32, w=256, fill="none"),
    "refine_consis_max_conf_fill_all": Setup(refine=["max_conf", "consis"], h=32, w=256,
                                             fill="all", seed=1),  # fmt: skip
    "hrda_fd_mic": Setup(hrda=True, fd=[1, 3], fd_min_ratio=0.3, mic=0.7, draw_seed=1),
    "hrda_refine_consis": Setup(hrda=True, refine=["consis"], h=32, w=256, seed=1, draw_seed=1),
    "hrda_discriminator": Setup(hrda=True, disc=True, seed=2, draw_seed=1),
    "video_discriminator_consis": Setup(disc=True, refine=["consis"], h=64, w=256),
    "accel_mix_not_consistent": Setup(accel=True, consistent=False),
    "accel_mixup_aug_per_frame": Setup(accel=True, aug_per_frame=True, seed=2),
    "accel_mixup_mic": Setup(accel=True, mic=0.7, seed=1),
    "accel_mixup_discriminator": Setup(accel=True, disc=True),
    "accel_mixup_consis": Setup(accel=True, refine=["consis"], h=32, w=256),
}


@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_dacs_step_matches_the_reference(name: str) -> None:
    run_composition(COMPOSITIONS[name])
