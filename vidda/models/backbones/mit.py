"""Mix Transformer (MiT-b0 … b5), the SegFormer encoder, with the official state-dict key names.

The parameter names are those of the official SegFormer ImageNet files (``mit_b*.pth``), so such
a file, minus its ``head.*`` classifier, loads strictly (see :mod:`vidda.models.weights`).

Layout. Tokens travel as ``[B, N, C]`` with ``N = H·W`` in row-major order. Every switch between
tokens and a feature map is a free view: ``[B, N, C] → view(B, H, W, C) → permute(0, 3, 1, 2)``
is an NCHW tensor in ``channels_last`` memory format, which convolutions accept without a copy
and return in the same format, so the way back to tokens is a view as well. The stage outputs are
therefore ``channels_last`` views; call ``.contiguous()`` before ``.view`` if you need NCHW
contiguity.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

PATCH_NORM_EPS = 1e-5  # patch-embedding and spatial-reduction LayerNorms (PyTorch default)
BLOCK_NORM_EPS = 1e-6  # pre-norms of every block and the norm at the end of each stage
OUT_STRIDES = (4, 8, 16, 32)


@dataclass(frozen=True)
class MiTVariant:
    """The shape of one MiT variant: per-stage channels, heads, blocks and reduction ratios."""

    embed_dims: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)


_WIDE = (64, 128, 320, 512)
_HEADS = (1, 2, 5, 8)

VARIANTS: dict[str, MiTVariant] = {
    "mit_b0": MiTVariant((32, 64, 160, 256), _HEADS, (2, 2, 2, 2)),
    "mit_b1": MiTVariant(_WIDE, _HEADS, (2, 2, 2, 2)),
    "mit_b2": MiTVariant(_WIDE, _HEADS, (3, 4, 6, 3)),
    "mit_b3": MiTVariant(_WIDE, _HEADS, (3, 4, 18, 3)),
    "mit_b4": MiTVariant(_WIDE, _HEADS, (3, 8, 27, 3)),
    "mit_b5": MiTVariant(_WIDE, _HEADS, (3, 6, 40, 3)),
}


def tokens_to_map(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """``[B, H·W, C]`` tokens → ``[B, C, H, W]`` map (a view; channels_last if x is contiguous)."""
    return x.unflatten(1, hw).permute(0, 3, 1, 2)


def map_to_tokens(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` map → ``[B, H·W, C]`` tokens (a view when x is channels_last)."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


class DropPath(nn.Module):
    """Stochastic depth per sample (as timm): in training, zero a sample's residual branch with
    probability ``p`` and scale the kept samples by ``1 / (1 - p)``; identity in eval mode.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, ...]`` → same shape."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}"


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with overlapping windows (padding ``k // 2``), then LayerNorm.

    ``[B, C_in, H, W] → [B, H'·W', C]`` with ``H' = ⌊(H + 2p − k) / s⌋ + 1``.
    """

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim, eps=PATCH_NORM_EPS)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """x: ``[B, C_in, H, W]`` → (tokens ``[B, H'·W', C]``, ``(H', W')``)."""
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(map_to_tokens(x)), hw


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from a spatially reduced map.

    With ``sr_ratio > 1`` the tokens are reduced by a ``sr×sr`` convolution of stride ``sr``
    (``attn.sr``) and a LayerNorm (``attn.norm``) before ``kv``; ``kv`` outputs ``[k | v]``.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=PATCH_NORM_EPS)

    def _reduce(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """``[B, N, C] → [B, M, C]`` with ``M = ⌊H/sr⌋·⌊W/sr⌋`` (identity when sr = 1)."""
        if self.sr_ratio == 1:
            return x
        return self.norm(map_to_tokens(self.sr(tokens_to_map(x, hw))))

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """x: ``[B, N, C]`` tokens of an ``H×W`` grid ``hw`` → ``[B, N, C]``."""
        heads = self.num_heads
        q = self.q(x).unflatten(-1, (heads, -1)).transpose(1, 2)  # [B, h, N, d]
        kv = self.kv(self._reduce(x, hw)).unflatten(-1, (2, heads, -1))  # [B, M, 2, h, d]
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 × [B, h, M, d]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, h, N, d], scale d^-1/2
        return self.proj(out.transpose(1, 2).flatten(2))


class DWConv(nn.Module):
    """Depthwise 3×3 convolution on tokens; its Conv2d is also named ``dwconv`` (official keys)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """x: ``[B, N, C]`` → ``[B, N, C]``."""
        return map_to_tokens(self.dwconv(tokens_to_map(x, hw)))


class MixFFN(nn.Module):
    """``fc1 (C → rC) → depthwise 3×3 conv → GELU (erf) → fc2 (rC → C)`` on ``[B, N, C]``."""

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """x: ``[B, N, C]`` → ``[B, N, C]``."""
        return self.fc2(self.act(self.dwconv(self.fc1(x), hw)))


class Block(nn.Module):
    """Pre-norm block on ``[B, N, C]``: ``x += DropPath(Attn(LN₁ x))``, then the same with FFN/LN₂.

    LN₁ and LN₂ use eps 1e-6.
    """

    def __init__(
        self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = MixFFN(dim, mlp_ratio)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """x: ``[B, N, C]`` tokens of an ``H×W`` grid ``hw`` → ``[B, N, C]``."""
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x), hw))


class MixTransformer(nn.Module):
    """The MiT encoder: 4 stages of (overlapping patch embedding, blocks, LayerNorm).

    Args:
        embed_dims: channels ``C_1..C_4`` of the four stages.
        num_heads: attention heads per stage.
        depths: blocks per stage.
        sr_ratios: spatial-reduction ratio of the keys/values per stage.
        mlp_ratio: hidden width of the Mix-FFN relative to ``C_i``.
        drop_path_rate: stochastic depth of the last block; the rate grows linearly from 0 over
            all blocks of all stages.
        in_chans: input channels.
        gradient_checkpointing: recompute each block in the backward pass (saves memory).
        init_weights: run the from-scratch init; pass False when a checkpoint follows.

    ``forward([B, in_chans, H, W])`` returns 4 maps ``[B, C_i, H_i, W_i]`` with strides
    ``out_strides = (4, 8, 16, 32)``: ``H_1 = ⌊(H − 1)/4⌋ + 1``, ``H_{i+1} = ⌊(H_i − 1)/2⌋ + 1``.
    """

    def __init__(
        self,
        embed_dims: Sequence[int],
        num_heads: Sequence[int],
        depths: Sequence[int],
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        in_chans: int = 3,
        gradient_checkpointing: bool = False,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("num_heads", num_heads), ("depths", depths), ("sr_ratios", sr_ratios)):
            if len(value) != len(embed_dims):
                raise ValueError(f"{name} {tuple(value)} must have one entry per stage")
        self.in_chans = in_chans
        self.out_channels = tuple(int(c) for c in embed_dims)
        self.out_strides = OUT_STRIDES[: len(embed_dims)]
        self.gradient_checkpointing = gradient_checkpointing
        rates = drop_path_rates(drop_path_rate, sum(depths))
        dims_in = (in_chans, *self.out_channels[:-1])
        # Registration order as in the official file: patch_embed1..4, then block_i / norm_i.
        for i, (c_in, c) in enumerate(zip(dims_in, self.out_channels, strict=True), start=1):
            kernel, stride = (7, 4) if i == 1 else (3, 2)
            self.add_module(f"patch_embed{i}", OverlapPatchEmbed(c_in, c, kernel, stride))
        for i, c in enumerate(self.out_channels, start=1):
            start = sum(depths[: i - 1])
            args = (c, num_heads[i - 1], sr_ratios[i - 1], mlp_ratio)
            blocks = [Block(*args, rates[start + j]) for j in range(depths[i - 1])]
            self.add_module(f"block{i}", nn.ModuleList(blocks))
            self.add_module(f"norm{i}", nn.LayerNorm(c, eps=BLOCK_NORM_EPS))
        if init_weights:
            self.apply(init_module)

    def stages(self) -> Iterator[tuple[OverlapPatchEmbed, nn.ModuleList, nn.LayerNorm]]:
        """(patch embedding, blocks, final norm) of each stage, in order."""
        for i in range(1, len(self.out_channels) + 1):
            yield (
                getattr(self, f"patch_embed{i}"),
                getattr(self, f"block{i}"),
                getattr(self, f"norm{i}"),
            )

    def _run_block(self, block: Block, x: Tensor, hw: tuple[int, int]) -> Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, hw, use_reentrant=False)
        return block(x, hw)

    def forward(self, x: Tensor) -> list[Tensor]:
        """x: ``[B, in_chans, H, W]`` → 4 maps ``[B, C_i, H_i, W_i]`` (channels_last views)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected input [B, {self.in_chans}, H, W], got {tuple(x.shape)}")
        features = []
        for embed, blocks, norm in self.stages():
            tokens, hw = embed(x)
            for block in blocks:
                tokens = self._run_block(block, tokens, hw)
            x = tokens_to_map(norm(tokens), hw)
            features.append(x)
        return features


def drop_path_rates(max_rate: float, n_blocks: int) -> list[float]:
    """``linspace(0, max_rate, n_blocks)``: the stochastic-depth rate of each block, in order."""
    if n_blocks == 1:
        return [0.0]
    return [max_rate * i / (n_blocks - 1) for i in range(n_blocks)]


@torch.no_grad()
def init_module(m: nn.Module) -> None:
    """From-scratch init: Linear ~ truncated N(0, 0.02²) (cut at ±2), bias 0; LayerNorm 1, 0;
    Conv2d ~ N(0, 2 / fan_out) with ``fan_out = k_h·k_w·C_out / groups``, bias 0.
    """
    if isinstance(m, nn.Linear):
        # Truncation at ±2 is at 100 σ, so a clamped normal is the same law, at half the cost.
        m.weight.normal_(0.0, 0.02).clamp_(-2.0, 2.0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
    elif isinstance(m, nn.Conv2d):
        k_h, k_w = m.kernel_size
        fan_out = k_h * k_w * m.out_channels // m.groups
        m.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
    else:
        return
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def build_mit(variant: str, **kwargs) -> MixTransformer:
    """MiT ``variant`` (``"mit_b0"`` … ``"mit_b5"``); ``kwargs`` override constructor arguments."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown MiT variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return MixTransformer(**{**asdict(VARIANTS[variant]), **kwargs})


def mit_b0(**kwargs) -> MixTransformer:
    """MiT-b0: C = (32, 64, 160, 256), depths (2, 2, 2, 2); 3.3 M parameters."""
    return build_mit("mit_b0", **kwargs)


def mit_b1(**kwargs) -> MixTransformer:
    """MiT-b1: C = (64, 128, 320, 512), depths (2, 2, 2, 2); 13.2 M parameters."""
    return build_mit("mit_b1", **kwargs)


def mit_b2(**kwargs) -> MixTransformer:
    """MiT-b2: C = (64, 128, 320, 512), depths (3, 4, 6, 3); 24.2 M parameters."""
    return build_mit("mit_b2", **kwargs)


def mit_b3(**kwargs) -> MixTransformer:
    """MiT-b3: C = (64, 128, 320, 512), depths (3, 4, 18, 3); 44.1 M parameters."""
    return build_mit("mit_b3", **kwargs)


def mit_b4(**kwargs) -> MixTransformer:
    """MiT-b4: C = (64, 128, 320, 512), depths (3, 8, 27, 3); 60.8 M parameters."""
    return build_mit("mit_b4", **kwargs)


def mit_b5(**kwargs) -> MixTransformer:
    """MiT-b5: C = (64, 128, 320, 512), depths (3, 6, 40, 3); 81.4 M parameters."""
    return build_mit("mit_b5", **kwargs)
