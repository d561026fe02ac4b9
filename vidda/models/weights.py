"""Read checkpoint files and map foreign key layouts onto vidda modules; nothing is downloaded.

* :func:`read_checkpoint` reads ``.safetensors`` or a PyTorch file (``weights_only``: tensors and
  plain containers only, never arbitrary pickled objects) and unwraps ``state_dict`` / ``model``.
* :func:`load_checked` loads a state dict into a module and reports missing, unexpected and
  mis-shaped keys by name.
* MiT layouts (:func:`detect_format`):

  - ``"mit"``: the official SegFormer ImageNet files ``mit_b*.pth`` (the vidda key names, plus a
    ``head.*`` classifier that :func:`mit_from_official` drops);
  - ``"hf"``: Hugging Face ``nvidia/mit-b*`` / ``nvidia/segformer-*`` files as published
    (transformers 4.x names such as ``segformer.encoder.block.0.0.attention.self.query.weight``;
    with or without the ``segformer.`` prefix) and the module names of transformers ≥ 5
    (``stages.0.blocks.0.attention.q_proj.weight``). HF keeps ``key`` and ``value`` as two
    Linear layers; vidda's ``attn.kv`` is their concatenation ``[k | v]`` along the outputs.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from vidda.config.load import ConfigError
from vidda.errors import UserError
from vidda.models.backbones.mit import VARIANTS

StateDict = dict[str, Tensor]
Format = Literal["mit", "hf", "unknown"]

SAFETENSORS_SUFFIX = ".safetensors"
WRAPPER_KEYS = ("state_dict", "model")  # unwrapped in this order, as the original loader does
SHOW_KEYS = 10  # how many key names an error message lists before "… and N more"


class WeightsError(UserError, ValueError):
    """A checkpoint that cannot be read, or does not fit the module it is loaded into."""


# --------------------------------------------------------------------------- reading files


def read_checkpoint(path: str | os.PathLike) -> StateDict:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict on the CPU.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``, which refuses pickled objects other than tensors and plain
    containers. A top-level ``state_dict`` or ``model`` entry is unwrapped.

    Raises:
        WeightsError: the file is missing or unreadable, holds non-tensor objects, or its
            state dict holds non-tensor values; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    is_safetensors = path.suffix.lower() == SAFETENSORS_SUFFIX
    obj = _read_safetensors(path) if is_safetensors else _read_torch(path)
    return _as_state_dict(unwrap_state_dict(obj), path)


def _read_safetensors(path: Path) -> StateDict:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as err:
        raise WeightsError(f"{path}: reading .safetensors needs `pip install safetensors`") from err
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err


def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path}: refused by safe (weights_only) loading: {_unpickler_reason(err)}. vidda "
            "reads only tensors and plain containers and never unpickles arbitrary objects; "
            "if you trust the file, re-save its state dict (or save it as .safetensors)."
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({err!r})") from err


def _unpickler_reason(err: Exception) -> str:
    """The one line of torch's long ``weights_only`` message that says what was refused."""
    text = str(err)
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.DOTALL)
    lines = [ln.strip() for ln in (m[1] if m else text).splitlines() if ln.strip()]
    reason = lines[0] if m else (lines[-1] if lines else type(err).__name__)
    return reason[:300]


def unwrap_state_dict(obj: object) -> object:
    """The ``state_dict`` or ``model`` entry of a checkpoint dict, else the object itself."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    return obj


def _as_state_dict(obj: object, path: Path) -> StateDict:
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise WeightsError(f"{path}: entries that are not tensors: {_names(bad)}")
    return dict(obj)


# --------------------------------------------------------------------------- checked loading


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_checked` did, key names sorted."""

    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # in the module, not in the state dict
    unexpected: tuple[str, ...] = ()  # in the state dict, not in the module
    ignored: tuple[str, ...] = ()  # matched an ``ignore`` pattern

    @property
    def complete(self) -> bool:
        """Every module key was loaded and every state-dict key was used (or ignored)."""
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        for what, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{what}: {_names(keys)}")
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)}")
        return "; ".join(parts)


def load_checked(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    strict: bool = True,
    ignore: Iterable[str] = (),
) -> LoadReport:
    """Load ``state_dict`` into ``module`` after checking names and shapes.

    Args:
        module: the destination; its parameters and persistent buffers are the expected keys.
        state_dict: ``{name: tensor}``.
        strict: missing or unexpected keys are errors; otherwise they are only reported.
        ignore: regular expressions (``re.search``); matching keys are neither loaded nor
            reported as missing or unexpected.

    Raises:
        WeightsError: a shape mismatch (always; names the key and both shapes), or, with
            ``strict``, missing or unexpected keys (listed by name).
    """
    patterns = [re.compile(p) for p in ignore]

    def ignored(key: str) -> bool:
        return any(p.search(key) for p in patterns)

    expected = {k: v for k, v in module.state_dict().items() if not ignored(k)}
    given = {k: v for k, v in state_dict.items() if not ignored(k)}
    report = LoadReport(
        loaded=tuple(sorted(given.keys() & expected.keys())),
        missing=tuple(sorted(expected.keys() - given.keys())),
        unexpected=tuple(sorted(given.keys() - expected.keys())),
        ignored=tuple(sorted(k for k in state_dict if ignored(k))),
    )
    _check_shapes(expected, given, report.loaded)
    if strict and not report.complete:
        raise WeightsError(f"state dict does not match {type(module).__name__}: {report}")
    module.load_state_dict({k: given[k] for k in report.loaded}, strict=False)
    return report


def _check_shapes(expected: StateDict, given: Mapping[str, Tensor], keys: Iterable[str]) -> None:
    bad = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs module {tuple(expected[k].shape)}"
        for k in keys
        if given[k].shape != expected[k].shape
    ]
    if bad:
        raise WeightsError(f"shape mismatch in {len(bad)} tensors: {_names(bad, sep='; ')}")


def _names(keys: Iterable[str], sep: str = ", ") -> str:
    keys = list(keys)
    shown = sep.join(keys[:SHOW_KEYS])
    more = len(keys) - SHOW_KEYS
    return f"{shown} … and {more} more ({len(keys)} in all)" if more > 0 else shown


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> StateDict:
    """Remove ``prefix`` from the keys that have it; other keys are kept unchanged."""
    return {k.removeprefix(prefix): v for k, v in state_dict.items()}


# --------------------------------------------------------------------------- MiT layouts

_MIT_KEY = re.compile(r"^(patch_embed[1-9]|block[1-9]\.\d+|norm[1-9])\.")
_HF_PREFIX = "segformer."
_HF_KEY = re.compile(r"^(encoder\.(patch_embeddings|block|layer_norm)|stages)\.\d")

# HF sub-module path inside one block → vidda path: the published (transformers 4.x) names …
_HF4_BLOCK = {
    "layer_norm_1": "norm1",
    "attention.self.query": "attn.q",
    "attention.self.key": "attn.k",  # k and v are merged into attn.kv afterwards
    "attention.self.value": "attn.v",
    "attention.self.sr": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "attention.output.dense": "attn.proj",
    "layer_norm_2": "norm2",
    "mlp.dense1": "mlp.fc1",
    "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
    "mlp.dense2": "mlp.fc2",
}
# … and the module names of transformers >= 5.
_HF5_BLOCK = {
    "layernorm_before": "norm1",
    "attention.q_proj": "attn.q",
    "attention.k_proj": "attn.k",
    "attention.v_proj": "attn.v",
    "attention.sequence_reduction.sequence_reduction": "attn.sr",
    "attention.sequence_reduction.layer_norm": "attn.norm",
    "attention.o_proj": "attn.proj",
    "layernorm_after": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
    "mlp.fc2": "mlp.fc2",
}
_HF_BLOCK = {**_HF4_BLOCK, **_HF5_BLOCK}
_HF_EMBED = {"proj": "proj", "layer_norm": "norm"}
_MIT_TO_HF_BLOCK = {v: k for k, v in _HF4_BLOCK.items() if v not in ("attn.k", "attn.v")}
_MIT_TO_HF_EMBED = {v: k for k, v in _HF_EMBED.items()}

# (regex on an HF key without "segformer.", kind); groups: stage, [block], module path, param.
_HF_PATTERNS = (
    (re.compile(r"^encoder\.patch_embeddings\.(\d+)\.(.+)\.(\w+)$"), "embed"),
    (re.compile(r"^encoder\.block\.(\d+)\.(\d+)\.(.+)\.(\w+)$"), "block"),
    (re.compile(r"^encoder\.layer_norm\.(\d+)\.(\w+)$"), "norm"),
    (re.compile(r"^stages\.(\d+)\.patch_embeddings\.(.+)\.(\w+)$"), "embed"),
    (re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(.+)\.(\w+)$"), "block"),
    (re.compile(r"^stages\.(\d+)\.layer_norm\.(\w+)$"), "norm"),
)


def detect_format(state_dict: Mapping[str, Tensor]) -> Format:
    """``"mit"`` (official SegFormer / vidda MiT keys), ``"hf"`` (Hugging Face) or ``"unknown"``."""
    keys = list(state_dict)
    if any(_HF_KEY.match(k.removeprefix(_HF_PREFIX)) for k in keys):
        return "hf"
    if any(_MIT_KEY.match(k) for k in keys):
        return "mit"
    return "unknown"


def mit_from_official(state_dict: Mapping[str, Tensor]) -> StateDict:
    """Official SegFormer ImageNet ``mit_b*.pth`` → vidda MiT keys (``head.*`` dropped)."""
    return {k: v for k, v in state_dict.items() if not k.startswith("head.")}


def mit_from_hf(state_dict: Mapping[str, Tensor]) -> StateDict:
    """Hugging Face SegFormer encoder → vidda MiT keys.

    Keys outside the encoder (``classifier.*``, ``decode_head.*``) are dropped. ``key`` and
    ``value`` (each ``[C, C]`` / ``[C]``) become ``attn.kv`` = ``cat([k, v])`` (``[2C, C]`` /
    ``[2C]``).

    Raises:
        WeightsError: an encoder key that is not part of the MiT layout, or a ``key`` without
            its ``value`` (or the reverse).
    """
    out: StateDict = {}
    halves: dict[str, dict[str, tuple[str, Tensor]]] = {}  # kv key → {"k"|"v": (HF key, tensor)}
    for key, tensor in state_dict.items():
        short = key.removeprefix(_HF_PREFIX)
        if not short.startswith(("encoder.", "stages.")):
            continue
        name = _hf_key_to_mit(key, short)
        head, sep, tail = name.rpartition(".attn.")
        if sep and tail[:2] in ("k.", "v."):
            halves.setdefault(f"{head}.attn.kv.{tail[2:]}", {})[tail[0]] = (key, tensor)
        else:
            out[name] = tensor
    for kv_key, parts in halves.items():
        if len(parts) != 2:
            ((have, (hf_key, _)),) = parts.items()
            other = "value" if have == "k" else "key"
            raise WeightsError(f"{hf_key}: the matching attention {other} tensor is missing")
        out[kv_key] = torch.cat([parts["k"][1], parts["v"][1]])
    return out


def _hf_key_to_mit(key: str, short: str) -> str:
    for pattern, kind in _HF_PATTERNS:
        m = pattern.match(short)
        if m is None:
            continue
        stage, param = int(m[1]) + 1, m[m.lastindex]
        if kind == "norm":
            return f"norm{stage}.{param}"
        if kind == "embed" and m[2] in _HF_EMBED:
            return f"patch_embed{stage}.{_HF_EMBED[m[2]]}.{param}"
        if kind == "block" and m[3] in _HF_BLOCK:
            return f"block{stage}.{m[2]}.{_HF_BLOCK[m[3]]}.{param}"
    raise WeightsError(f"{key}: not a SegFormer (MiT) encoder key")


_MIT_PARTS = re.compile(
    r"^(?P<kind>patch_embed|block|norm)(?P<stage>\d+)\.(?:(?P<block>\d+)\.)?"
    r"(?:(?P<path>.+)\.)?(?P<param>\w+)$"
)


def mit_to_hf(state_dict: Mapping[str, Tensor], prefix: str = _HF_PREFIX) -> StateDict:
    """vidda MiT keys → the published Hugging Face layout (transformers 4.x names).

    ``attn.kv`` ``[2C, ...]`` is split into ``attention.self.key`` and ``.value``. ``prefix`` is
    prepended to every key (``"segformer."`` as in ``nvidia/mit-b*``; ``""`` for a bare
    ``SegformerModel``).

    Raises:
        WeightsError: a key that is not part of the MiT layout.
    """
    out: StateDict = {}
    for key, tensor in state_dict.items():
        for hf_key, part in _mit_key_to_hf(key, tensor):
            out[prefix + hf_key] = part
    return out


def _mit_key_to_hf(key: str, tensor: Tensor) -> list[tuple[str, Tensor]]:
    m = _MIT_PARTS.match(key)
    if m is None:
        raise WeightsError(f"{key}: not a MiT encoder key")
    kind, block, path, param = m.group("kind", "block", "path", "param")
    stage = int(m["stage"]) - 1
    where = f"encoder.block.{stage}.{block}"
    if kind == "norm" and block is None and path is None:
        return [(f"encoder.layer_norm.{stage}.{param}", tensor)]
    if kind == "patch_embed" and block is None and path in _MIT_TO_HF_EMBED:
        return [(f"encoder.patch_embeddings.{stage}.{_MIT_TO_HF_EMBED[path]}.{param}", tensor)]
    if kind == "block" and block is not None and path == "attn.kv":
        k, v = (part.clone() for part in tensor.chunk(2, dim=0))  # own storage each
        return [
            (f"{where}.attention.self.key.{param}", k),
            (f"{where}.attention.self.value.{param}", v),
        ]
    if kind == "block" and block is not None and path in _MIT_TO_HF_BLOCK:
        return [(f"{where}.{_MIT_TO_HF_BLOCK[path]}.{param}", tensor)]
    raise WeightsError(f"{key}: not a MiT encoder key")


def mit_state_dict(state_dict: Mapping[str, Tensor]) -> StateDict:
    """Any supported MiT layout (:func:`detect_format`) → vidda MiT keys.

    Raises:
        WeightsError: the layout is not recognised.
    """
    fmt = detect_format(state_dict)
    if fmt == "mit":
        return mit_from_official(state_dict)
    if fmt == "hf":
        return mit_from_hf(state_dict)
    raise WeightsError(
        f"not a MiT checkpoint: no official SegFormer (patch_embed1.*, block1.0.*) or Hugging "
        f"Face (segformer.encoder.*) keys among {_names(sorted(state_dict))}"
    )


def load_mit(
    module: nn.Module, source: str | os.PathLike | Mapping[str, Tensor], *, strict: bool = True
) -> LoadReport:
    """Load an official SegFormer or Hugging Face MiT checkpoint (a path or a state dict) into a
    vidda MiT encoder; with ``strict`` every encoder tensor must be found.
    """
    state_dict = source if isinstance(source, Mapping) else read_checkpoint(source)
    return load_checked(module, mit_state_dict(state_dict), strict=strict)


# --------------------------------------------------------------------------- backbone files

CLASSIFIER_PREFIXES = ("head.", "fc.", "classifier.")  # ImageNet classifiers of backbone files


def load_backbone_file(
    backbone: nn.Module, path: str | os.PathLike, *, strict: bool = True
) -> LoadReport:
    """Load an ImageNet backbone file into ``backbone``.

    The file may be an official SegFormer or Hugging Face MiT checkpoint (converted to vidda
    keys) or a state dict with the backbone's own key names (e.g. mmcv ResNet-V1c). An ImageNet
    classifier (``head.*``, ``fc.*``, ``classifier.*``) that the backbone does not have is dropped;
    with ``strict`` every other tensor must match.

    Raises:
        WeightsError: the file is unreadable or does not fit; the message names the file.
    """
    state_dict = read_checkpoint(path)
    try:
        if detect_format(state_dict) != "unknown":
            state_dict = mit_state_dict(state_dict)
        own = backbone.state_dict().keys()
        state_dict = {
            k: v for k, v in state_dict.items() if k in own or not k.startswith(CLASSIFIER_PREFIXES)
        }
        return load_checked(backbone, state_dict, strict=strict)
    except WeightsError as err:
        raise WeightsError(f"{path}: {err}") from err


def guess_backbone(state: Mapping[str, Tensor]) -> str:
    """The backbone (MiT variant or ``resnet101_v1c``) a backbone file holds, from its tensors."""
    if detect_format(state) == "unknown":
        if any(k.startswith("stem.") for k in state):
            return "resnet101_v1c"
        raise ConfigError("cannot tell which backbone the file holds; give --backbone")
    sd = mit_state_dict(state)
    width = sd["patch_embed1.proj.weight"].shape[0]
    depths = tuple(1 + max(int(k.split(".")[1]) for k in sd if k.startswith(f"block{i}."))
                   for i in range(1, 5))  # fmt: skip
    for variant, spec in VARIANTS.items():
        if spec.embed_dims[0] == width and tuple(spec.depths) == depths:
            return variant
    raise ConfigError(f"no MiT variant has width {width} and depths {depths}; give --backbone")
