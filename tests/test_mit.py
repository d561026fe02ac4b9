"""MiT-b0…b5: shapes, gradients, parameter counts, key names, init, and agreement with
``transformers``' SegformerModel (an independent implementation) on converted random weights."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidda.models.backbones import build_backbone
from vidda.models.backbones import mit as mit_module
from vidda.models.backbones.mit import (
    VARIANTS,
    DropPath,
    EfficientSelfAttention,
    MixTransformer,
    build_mit,
)
from vidda.models.weights import load_checked, mit_from_hf, mit_to_hf

NAMES = sorted(VARIANTS)

# Encoder parameters without the classifier, as the original's MiT b0–b5 hold them.
SPEC_PARAMS = {
    "mit_b0": 3_319_392,
    "mit_b1": 13_151_424,
    "mit_b2": 24_196_288,
    "mit_b3": 44_072_128,
    "mit_b4": 60_842_688,
    "mit_b5": 81_443_008,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny; with 2 threads, OpenMP spin-waits make the tests several times
    slower whenever another process holds a CPU, and one thread costs little when none does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def meta_mit(name: str) -> MixTransformer:
    """A model without storage, for names, shapes and counts; shared, so never modify it."""
    with torch.device("meta"):
        return build_mit(name, init_weights=False)


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every tensor non-trivial values: weights of variance 1/fan_in (so activations stay
    O(1) and an erf/tanh GELU mix-up shows), non-zero biases and LayerNorm scales around 1 (so a
    swapped or misrouted tensor changes the output)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim > 1:
                p.copy_(noise / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):  # LayerNorm scale
                p.copy_(1 + 0.2 * noise)
            else:
                p.copy_(0.1 * noise)
    return module


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def expected_params(embed_dims, depths, sr_ratios, mlp_ratio=4, in_chans=3) -> int:
    """Parameter count from the layer shapes of the original's state dict, independent of the model
    code."""
    total, c_prev = 0, in_chans
    for i, (c, depth, sr) in enumerate(zip(embed_dims, depths, sr_ratios, strict=True)):
        k = 7 if i == 0 else 3
        total += k * k * c_prev * c + c + 2 * c  # patch conv (+bias) and its LayerNorm
        h = mlp_ratio * c
        block = 2 * c + (c * c + c) + (2 * c * c + 2 * c) + (c * c + c)  # norm1, q, kv, proj
        block += 2 * c + (c * h + h) + (9 * h + h) + (h * c + c)  # norm2, fc1, dwconv, fc2
        if sr > 1:
            block += c * c * sr * sr + c + 2 * c  # sr conv and its LayerNorm
        total += depth * block + 2 * c  # blocks and the stage norm
        c_prev = c
    return total


# --------------------------------------------------------------------------- shapes, gradients


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_every_variant(name: str) -> None:
    torch.manual_seed(0)
    model = build_mit(name, drop_path_rate=0.0)  # no random branch dropping in this test
    assert model.out_strides == (4, 8, 16, 32)
    assert model.out_channels == VARIANTS[name].embed_dims

    for size, grad in ((64, False), (32, True)):
        model.train(grad)
        with torch.set_grad_enabled(grad):
            feats = model(torch.randn(2, 3, size, size))
        assert [tuple(f.shape) for f in feats] == [
            (2, c, size // s, size // s)
            for c, s in zip(model.out_channels, model.out_strides, strict=True)
        ]
        assert all(torch.isfinite(f).all() for f in feats)

    # A random projection: a plain sum is blind to everything before a LayerNorm.
    gen = torch.Generator().manual_seed(1)
    loss = sum((f * torch.randn(f.shape, generator=gen)).sum() for f in feats)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert p.grad.shape == p.shape, pname
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def test_non_square_and_odd_input_sizes() -> None:
    model = build_mit("mit_b0").eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 50, 70))
    # floor((H + 2p - k) / s) + 1 per stage: 50 → 13 → 7 → 4 → 2, 70 → 18 → 9 → 5 → 3
    assert [tuple(f.shape[-2:]) for f in feats] == [(13, 18), (7, 9), (4, 5), (2, 3)]
    assert all(torch.isfinite(f).all() for f in feats)


def test_channels_last_input_gives_the_same_features() -> None:
    model = randomize(build_mit("mit_b0")).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        ref = model(x)
        out = model(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(ref, out, strict=True):
        assert max_abs_diff(a, b) <= 1e-5
        assert b.is_contiguous(memory_format=torch.channels_last)  # documented: free views


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    plain = randomize(build_mit("mit_b0", drop_path_rate=0.0)).train()
    ckpt = build_mit("mit_b0", drop_path_rate=0.0, gradient_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for model in (plain, ckpt):
        loss = sum((f * f).mean() for f in model(x))
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for n in grads[0]:
        assert max_abs_diff(grads[0][n], grads[1][n]) <= 1e-6 * (1 + grads[0][n].abs().max()), n


def test_wrong_input_is_rejected() -> None:
    model = meta_mit("mit_b0")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(1, 4, 32, 32, device="meta"))


def test_registry_builds_mit() -> None:
    model = build_backbone("mit_b1", drop_path_rate=0.0, init_weights=False)
    assert isinstance(model, MixTransformer)
    assert model.out_channels == (64, 128, 320, 512)


# --------------------------------------------------------------------------- counts and keys


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts(name: str) -> None:
    model = meta_mit(name)
    count = sum(p.numel() for p in model.parameters())
    v = VARIANTS[name]
    assert count == expected_params(v.embed_dims, v.depths, v.sr_ratios) == SPEC_PARAMS[name]
    assert list(model.buffers()) == []


def test_b5_parameter_split_matches_spec() -> None:
    model = meta_mit("mit_b5")
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        group = "patch_embed" if top.startswith("patch_embed") else top
        group = "norms" if top.startswith("norm") else group
        groups[group] = groups.get(group, 0) + p.numel()
    assert groups == {
        "patch_embed": 1_929_408,
        "block1": 944_640,
        "block2": 2_795_520,
        "block3": 66_252_800,
        "block4": 9_518_592,
        "norms": 2_048,
    }


def test_state_dict_keys_and_shapes() -> None:
    sd = meta_mit("mit_b0").state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["patch_embed1.proj.weight"] == (32, 3, 7, 7)
    assert shapes["patch_embed2.proj.weight"] == (64, 32, 3, 3)
    assert shapes["patch_embed1.norm.bias"] == (32,)
    assert shapes["block1.0.mlp.dwconv.dwconv.weight"] == (128, 1, 3, 3)
    assert shapes["block1.0.attn.sr.weight"] == (32, 32, 8, 8)
    assert shapes["block3.1.attn.sr.weight"] == (160, 160, 2, 2)
    assert shapes["block1.0.attn.norm.weight"] == (32,)
    assert shapes["block2.1.attn.kv.weight"] == (128, 64)
    assert shapes["block4.1.attn.q.bias"] == (256,)
    assert shapes["block4.1.mlp.fc2.weight"] == (256, 1024)
    assert shapes["norm4.weight"] == (256,)
    assert "block4.0.attn.sr.weight" not in sd
    assert "block4.0.attn.norm.weight" not in sd
    top = [name for name, _ in meta_mit("mit_b0").named_children()]
    assert top == [f"patch_embed{i}" for i in range(1, 5)] + [
        f"{m}{i}" for i in range(1, 5) for m in ("block", "norm")
    ]


def test_b5_has_1052_parameter_tensors() -> None:
    model = meta_mit("mit_b5")
    assert len(model.state_dict()) == 1052
    assert len(list(model.parameters())) == 1052


def test_norm_eps_gelu_and_drop_path_rates() -> None:
    model = meta_mit("mit_b5")
    for name, m in model.named_modules():
        if isinstance(m, nn.LayerNorm):
            small = name.startswith("patch_embed") or name.endswith("attn.norm")
            assert m.eps == (1e-5 if small else 1e-6), name
        if isinstance(m, nn.GELU):
            assert m.approximate == "none", name
    rates = [b.drop_path.p for i in range(1, 5) for b in getattr(model, f"block{i}")]
    assert len(rates) == 52
    assert rates == pytest.approx([0.1 * i / 51 for i in range(52)])


# --------------------------------------------------------------------------- init, DropPath, SDPA


def test_scratch_init_follows_spec() -> None:
    torch.manual_seed(0)
    model = build_mit("mit_b0")
    for name, m in model.named_modules():
        if isinstance(m, nn.LayerNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm)):
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
    kv = model.block4[0].attn.kv.weight  # [512, 256]
    assert kv.std().item() == pytest.approx(0.02, rel=0.03)
    assert kv.abs().max().item() < 0.2
    for conv, fan_out in (
        (model.patch_embed1.proj, 7 * 7 * 32),
        (model.block1[0].attn.sr, 8 * 8 * 32),
        (model.block1[0].mlp.dwconv.dwconv, 3 * 3 * 128 // 128),
    ):
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.08)


def test_drop_path_per_sample() -> None:
    torch.manual_seed(0)
    drop = DropPath(0.25).train()
    out = drop(torch.ones(4000, 3, 5))
    per_sample = out.flatten(1)
    kept = per_sample[:, 0] != 0
    assert torch.all(per_sample == per_sample[:, :1])  # all-or-nothing per sample
    assert torch.allclose(per_sample[kept], torch.full_like(per_sample[kept], 1 / 0.75))
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.03)
    x = torch.randn(8, 4)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)


def test_attention_matches_explicit_softmax_reference() -> None:
    torch.manual_seed(0)
    attn = randomize(EfficientSelfAttention(dim=64, num_heads=2, sr_ratio=2)).eval()
    h, w, c, heads, d = 6, 10, 64, 2, 32
    x = torch.randn(3, h * w, c)
    grid = x.transpose(1, 2).reshape(3, c, h, w)
    reduced = F.layer_norm(
        attn.sr(grid).flatten(2).transpose(1, 2), (c,), attn.norm.weight, attn.norm.bias, 1e-5
    )
    kv = reduced @ attn.kv.weight.T + attn.kv.bias
    k, v = kv[..., :c], kv[..., c:]  # [k | v]
    q = x @ attn.q.weight.T + attn.q.bias

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], t.shape[1], heads, d).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d)
    ref = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(3, h * w, c)
    ref = ref @ attn.proj.weight.T + attn.proj.bias
    with torch.no_grad():
        assert max_abs_diff(attn(x, (h, w)), ref) <= 1e-5


def test_attention_goes_through_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(mit_module.F, "scaled_dot_product_attention", counting)
    with torch.no_grad():
        build_mit("mit_b0").eval()(torch.randn(1, 3, 32, 32))
    assert len(calls) == 8  # one per block


# --------------------------------------------------------------------------- transformers


def _hf_config(name: str):
    transformers = pytest.importorskip("transformers")
    v = VARIANTS[name]
    return transformers.SegformerConfig(
        hidden_sizes=list(v.embed_dims),
        num_attention_heads=list(v.num_heads),
        depths=list(v.depths),
        sr_ratios=list(v.sr_ratios),
        mlp_ratios=[4] * 4,
        hidden_act="gelu",
        drop_path_rate=0.1,
    )


def _use_spec_eps(hf_model: nn.Module) -> None:
    """HF builds every LayerNorm with PyTorch's default eps 1e-5; the original (and vidda) uses
    1e-6 in the block and stage norms. Align them so the comparison is exact, not ~3e-5 off."""
    for name, m in hf_model.named_modules():
        if (
            isinstance(m, nn.LayerNorm)
            and "patch_embeddings" not in name
            and "attention" not in name
        ):
            m.eps = 1e-6


def _max_diffs(ours: list[torch.Tensor], hf_states) -> list[float]:
    assert len(hf_states) == 4
    return [max_abs_diff(a, b) for a, b in zip(ours, hf_states, strict=True)]


@pytest.mark.parametrize(("name", "size"), [("mit_b0", (64, 96)), ("mit_b5", (64, 64))])
def test_matches_transformers_loading_our_published_layout(name, size, tmp_path) -> None:
    """vidda weights → ``mit_to_hf`` → files as on the hub → ``SegformerModel.from_pretrained``."""
    config = _hf_config(name)
    from safetensors.torch import save_file
    from transformers import SegformerModel

    with torch.device("meta"):
        ours = build_mit(name, init_weights=False)
    ours = randomize(ours.to_empty(device="cpu")).eval()
    config.save_pretrained(tmp_path)
    save_file(mit_to_hf(ours.state_dict()), tmp_path / "model.safetensors")
    hf, info = SegformerModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info.get("mismatched_keys"), info
    hf.eval()
    _use_spec_eps(hf)

    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diffs = _max_diffs(ours(x), hf(x, output_hidden_states=True).hidden_states)
    assert max(diffs) <= 1e-4, diffs


def test_matches_transformers_converting_its_state_dict() -> None:
    """HF model (its own module names) → ``mit_from_hf`` → strict load into vidda MiT-b0."""
    config = _hf_config("mit_b0")
    from transformers import SegformerModel

    hf = randomize(SegformerModel(config), seed=3).eval()
    _use_spec_eps(hf)
    ours = build_mit("mit_b0", init_weights=False).eval()
    report = load_checked(ours, mit_from_hf(hf.state_dict()))
    assert report.complete and len(report.loaded) == 176

    x = torch.randn(1, 3, 50, 70, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        diffs = _max_diffs(ours(x), hf(x, output_hidden_states=True).hidden_states)
    assert max(diffs) <= 1e-4, diffs
