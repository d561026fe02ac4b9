"""Checkpoint reading and MiT key layouts: official SegFormer, Hugging Face (published and
transformers ≥ 5 names), strict/non-strict checked loading, and safe file reading."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from vidda.errors import UserError
from vidda.models.backbones.mit import MixTransformer, build_mit
from vidda.models.weights import (
    WeightsError,
    detect_format,
    load_backbone_file,
    load_checked,
    load_mit,
    mit_from_hf,
    mit_from_official,
    mit_state_dict,
    mit_to_hf,
    read_checkpoint,
    strip_prefix,
)

B0_KEYS = 176  # parameter tensors of MiT-b0


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny; with 2 threads, OpenMP spin-waits make the tests several times
    slower whenever another process holds a CPU. One thread is as fast on an idle machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def source() -> MixTransformer:
    """A MiT-b0 with random, non-trivial values in every tensor (biases included)."""
    torch.manual_seed(0)
    model = build_mit("mit_b0").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))


def fresh() -> MixTransformer:
    return build_mit("mit_b0", init_weights=False).eval()


def same_features(a: MixTransformer, b: MixTransformer, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return all(torch.equal(fa, fb) for fa, fb in zip(a(x), b(x), strict=True))


def official_layout(model: MixTransformer) -> dict[str, torch.Tensor]:
    """What ``mit_b*.pth`` holds: the encoder keys plus an ImageNet classifier."""
    sd = dict(model.state_dict())
    sd["head.weight"] = torch.randn(1000, model.out_channels[-1])
    sd["head.bias"] = torch.randn(1000)
    return sd


# --------------------------------------------------------------------------- official layout


def test_official_layout_loads_strictly_without_head(source, image) -> None:
    sd = official_layout(source)
    assert detect_format(sd) == "mit"
    converted = mit_from_official(sd)
    assert "head.weight" not in converted and "head.bias" not in converted
    target = fresh()
    report = load_checked(target, converted)
    assert report.complete and len(report.loaded) == B0_KEYS
    assert same_features(source, target, image)


def test_official_file_through_load_mit(source, image, tmp_path: Path) -> None:
    path = tmp_path / "mit_b0.pth"
    torch.save(official_layout(source), path)
    target = fresh()
    report = load_mit(target, path)
    assert report.complete and len(report.loaded) == B0_KEYS
    assert same_features(source, target, image)


def test_head_is_an_error_without_conversion(source) -> None:
    with pytest.raises(WeightsError, match=r"unexpected: head\.bias, head\.weight"):
        load_checked(fresh(), official_layout(source))
    report = load_checked(fresh(), official_layout(source), ignore=[r"^head\."])
    assert report.ignored == ("head.bias", "head.weight") and report.complete


# --------------------------------------------------------------------------- Hugging Face layout


def test_hf_published_names_and_kv_split(source) -> None:
    sd = source.state_dict()
    hf = mit_to_hf(sd)
    assert len(hf) == B0_KEYS + 8 * 2  # kv weight and bias become key + value in 8 blocks
    kv_w, kv_b = sd["block1.1.attn.kv.weight"], sd["block1.1.attn.kv.bias"]  # [64, 32], [64]
    pre = "segformer.encoder.block.0.1.attention.self"
    assert torch.equal(hf[f"{pre}.key.weight"], kv_w[:32])
    assert torch.equal(hf[f"{pre}.value.weight"], kv_w[32:])
    assert torch.equal(hf[f"{pre}.value.bias"], kv_b[32:])
    expected = {
        "segformer.encoder.patch_embeddings.0.proj.weight": "patch_embed1.proj.weight",
        "segformer.encoder.patch_embeddings.3.layer_norm.bias": "patch_embed4.norm.bias",
        "segformer.encoder.block.0.0.layer_norm_1.weight": "block1.0.norm1.weight",
        "segformer.encoder.block.0.0.attention.self.query.weight": "block1.0.attn.q.weight",
        "segformer.encoder.block.2.1.attention.self.sr.weight": "block3.1.attn.sr.weight",
        "segformer.encoder.block.0.0.attention.self.layer_norm.bias": "block1.0.attn.norm.bias",
        "segformer.encoder.block.3.0.attention.output.dense.weight": "block4.0.attn.proj.weight",
        "segformer.encoder.block.1.0.layer_norm_2.bias": "block2.0.norm2.bias",
        "segformer.encoder.block.0.0.mlp.dense1.weight": "block1.0.mlp.fc1.weight",
        "segformer.encoder.block.0.0.mlp.dwconv.dwconv.weight": "block1.0.mlp.dwconv.dwconv.weight",
        "segformer.encoder.block.0.0.mlp.dense2.bias": "block1.0.mlp.fc2.bias",
        "segformer.encoder.layer_norm.3.weight": "norm4.weight",
    }
    for hf_key, key in expected.items():
        assert torch.equal(hf[hf_key], sd[key]), hf_key
    assert not any("block.3.0.attention.self.sr" in k for k in hf)
    assert all(k.startswith("segformer.encoder.") for k in hf)


@pytest.mark.parametrize("prefix", ["segformer.", ""])
def test_hf_layout_with_heads_loads_and_gives_identical_outputs(source, image, prefix: str) -> None:
    sd = mit_to_hf(source.state_dict(), prefix=prefix)
    sd["decode_head.linear_c.0.proj.weight"] = torch.randn(256, 32)
    sd["decode_head.classifier.weight"] = torch.randn(19, 256, 1, 1)
    sd["classifier.weight"] = torch.randn(1000, 256)
    assert detect_format(sd) == "hf"
    converted = mit_from_hf(sd)
    assert set(converted) == set(source.state_dict())
    target = fresh()
    assert load_checked(target, converted).complete
    assert same_features(source, target, image)
    assert load_mit(fresh(), sd).complete


def test_hf_round_trip_is_exact(source) -> None:
    sd = source.state_dict()
    back = mit_from_hf(mit_to_hf(sd))
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_hf_transformers5_module_names_are_understood(source) -> None:
    renames = [
        (r"^segformer\.encoder\.patch_embeddings\.(\d)\.", r"stages.\1.patch_embeddings."),
        (r"^segformer\.encoder\.block\.(\d)\.", r"stages.\1.blocks."),
        (r"^segformer\.encoder\.layer_norm\.(\d)\.", r"stages.\1.layer_norm."),
        (r"attention\.self\.query", "attention.q_proj"),
        (r"attention\.self\.key", "attention.k_proj"),
        (r"attention\.self\.value", "attention.v_proj"),
        (r"attention\.self\.sr", "attention.sequence_reduction.sequence_reduction"),
        (r"attention\.self\.layer_norm", "attention.sequence_reduction.layer_norm"),
        (r"attention\.output\.dense", "attention.o_proj"),
        (r"layer_norm_1", "layernorm_before"),
        (r"layer_norm_2", "layernorm_after"),
        (r"mlp\.dense1", "mlp.fc1"),
        (r"mlp\.dense2", "mlp.fc2"),
    ]
    v5 = {}
    for key, value in mit_to_hf(source.state_dict()).items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        v5[key] = value
    assert "stages.0.blocks.0.attention.sequence_reduction.sequence_reduction.weight" in v5
    assert detect_format(v5) == "hf"
    back = mit_from_hf(v5)
    assert set(back) == set(source.state_dict())
    assert all(torch.equal(back[k], v) for k, v in source.state_dict().items())


def test_hf_key_without_value_is_an_error(source) -> None:
    sd = mit_to_hf(source.state_dict())
    del sd["segformer.encoder.block.1.0.attention.self.value.bias"]
    with pytest.raises(WeightsError, match=r"block\.1\.0\.attention\.self\.key\.bias.*value"):
        mit_from_hf(sd)


def test_unknown_encoder_key_is_an_error(source) -> None:
    sd = mit_to_hf(source.state_dict())
    sd["segformer.encoder.block.0.0.attention.self.rel_pos.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"attention\.self\.rel_pos\.weight"):
        mit_from_hf(sd)
    with pytest.raises(WeightsError, match=r"block1\.0\.attn\.bogus\.weight"):
        mit_to_hf({"block1.0.attn.bogus.weight": torch.zeros(1)})


def test_unknown_layout_is_an_error() -> None:
    sd = {"backbone.layer1.0.conv1.weight": torch.zeros(1)}
    assert detect_format(sd) == "unknown"
    with pytest.raises(WeightsError, match="not a MiT checkpoint"):
        mit_state_dict(sd)
    assert detect_format(strip_prefix({"module.block1.0.norm1.weight": 0}, "module.")) == "mit"


# --------------------------------------------------------------------------- checked loading


def test_missing_key_is_named(source) -> None:
    sd = dict(source.state_dict())
    del sd["block2.1.attn.sr.bias"]
    with pytest.raises(WeightsError, match=r"missing: block2\.1\.attn\.sr\.bias") as err:
        load_checked(fresh(), sd)
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)
    report = load_checked(fresh(), sd, strict=False)
    assert report.missing == ("block2.1.attn.sr.bias",) and len(report.loaded) == B0_KEYS - 1


def test_shape_mismatch_names_key_and_both_shapes(source) -> None:
    sd = dict(source.state_dict())
    sd["block1.0.attn.kv.weight"] = torch.zeros(32, 32)
    for strict in (True, False):
        with pytest.raises(
            WeightsError,
            match=r"block1\.0\.attn\.kv\.weight: checkpoint \(32, 32\) vs module "
            r"\(64, 32\)",
        ):
            load_checked(fresh(), sd, strict=strict)


def test_many_missing_keys_are_summarised() -> None:
    with pytest.raises(WeightsError, match=rf"and {B0_KEYS - 10} more \({B0_KEYS} in all\)"):
        load_checked(fresh(), {})


def test_a_failed_strict_load_changes_nothing(source) -> None:
    target = fresh()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    sd = dict(source.state_dict())
    sd["extra"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="unexpected: extra"):
        load_checked(target, sd)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


# --------------------------------------------------------------------------- reading files


def test_safetensors_and_pth_files_load(source, tmp_path: Path) -> None:
    save_file = pytest.importorskip("safetensors.torch").save_file

    sd = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(mit_to_hf(sd), tmp_path / "model.safetensors")
    torch.save(sd, tmp_path / "plain.pth")
    torch.save({"meta": {"epoch": 3}, "state_dict": sd, "optimizer": {}}, tmp_path / "mmcv.pth")
    torch.save({"model": official_layout(source)}, tmp_path / "wrapped.pth")
    for name in ("model.safetensors", "plain.pth", "mmcv.pth", "wrapped.pth"):
        loaded = read_checkpoint(tmp_path / name)
        converted = mit_state_dict(loaded)
        assert set(converted) == set(sd), name
        assert all(torch.equal(converted[k], sd[k]) for k in sd), name
        assert load_mit(fresh(), tmp_path / name).complete, name


class Payload:
    """Something that is not a tensor; unpickling it would run code."""

    def __reduce__(self):
        return (Path.touch, (Path(MARKER[0]),))


MARKER: list[str] = [""]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_refused_without_running_them(tmp_path: Path) -> None:
    MARKER[0] = str(tmp_path / "code-ran")
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": Payload()}, path)
    with pytest.raises(WeightsError, match=r"evil\.pth: refused by safe \(weights_only\)") as err:
        read_checkpoint(path)
    assert "never unpickles" in str(err.value)
    assert not Path(MARKER[0]).exists()

    legacy = tmp_path / "legacy.pkl"
    legacy.write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(WeightsError, match="legacy.pkl"):
        read_checkpoint(legacy)
    assert not Path(MARKER[0]).exists()


def test_non_tensor_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pth"
    torch.save({"w": torch.zeros(1), "epoch": 3}, path)
    with pytest.raises(WeightsError, match=r"mixed\.pth: entries that are not tensors: epoch"):
        read_checkpoint(path)


@pytest.mark.parametrize("name", ["junk.pth", "junk.safetensors", "empty.bin"])
def test_unreadable_files_are_named(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"" if name.startswith("empty") else b"certainly not a checkpoint " * 4)
    with pytest.raises(WeightsError, match=re.escape(name)):
        read_checkpoint(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nowhere\.pth: checkpoint file not found"):
        read_checkpoint(tmp_path / "nowhere.pth")
    with pytest.raises(WeightsError, match="not found"):
        load_mit(fresh(), tmp_path / "nowhere.safetensors")


# --------------------------------------------------------------------------- backbone files


@pytest.mark.parametrize("layout", ["official", "hf"])
def test_load_backbone_file_mit(source, image, tmp_path: Path, layout: str) -> None:
    sd = official_layout(source) if layout == "official" else mit_to_hf(source.state_dict())
    torch.save(sd, tmp_path / "backbone.pth")
    target = fresh()
    assert load_backbone_file(target, tmp_path / "backbone.pth").complete
    assert same_features(source, target, image)


def test_load_backbone_file_own_keys_drops_classifier_and_names_the_file(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    sd = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in net.state_dict().items()}
    sd |= {"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}
    torch.save(sd, tmp_path / "resnet.pth")
    report = load_backbone_file(net, tmp_path / "resnet.pth")
    assert report.complete and torch.equal(net[0].weight, sd["0.weight"])
    del sd["1.running_var"]
    torch.save(sd, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match=r"resnet\.pth: .*missing: 1\.running_var"):
        load_backbone_file(net, tmp_path / "resnet.pth")
