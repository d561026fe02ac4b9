"""Import released DAFormer / HRDA / MIC (mmsegmentation 0.x) checkpoints into vidda segmentors.

A UDA training checkpoint is ``{"meta", "state_dict", "optimizer"}`` whose state dict holds the
student under ``model.``, the EMA teacher under ``ema_model.`` and the frozen ImageNet copy under
``imnet_model.`` (test-time exports have the student's keys without a prefix). Inside a network:
``backbone.*`` is unchanged; HRDA's ``decode_head.head.*`` and ``decode_head.scale_attention.*``
become vidda's ``decode_head.*`` and ``scale_attention.*``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from vidda.models.weights import LoadReport, WeightsError, load_checked

NETWORKS = {"student": "model.", "teacher": "ema_model.", "imnet": "imnet_model."}
_RENAMES = (("decode_head.head.", "decode_head."),
            ("decode_head.scale_attention.", "scale_attention."))  # fmt: skip
# Original-only tensors with no counterpart in vidda: SegFormer's unused ``conv_seg``.
ORIGINAL_ONLY = ("decode_head.conv_seg.",)


def is_mmseg_segmentor(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a state dict looks like an mmseg segmentor or UDA checkpoint."""
    keys = [k.removeprefix("module.") for k in state_dict]
    return any(k.startswith(("model.backbone.", "backbone.")) for k in keys) and any(
        "decode_head." in k for k in keys
    )


def segmentor_state_dict(state_dict: Mapping[str, Tensor], network: str = "student") -> dict:
    """The vidda keys of one network (``student``, ``teacher`` or ``imnet``) of an mmseg file."""
    if network not in NETWORKS:
        raise WeightsError(f"network must be one of {sorted(NETWORKS)}, got {network!r}")
    prefix = NETWORKS[network]
    keys = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if any(k.startswith(prefix) for k in keys):
        keys = {k[len(prefix) :]: v for k, v in keys.items() if k.startswith(prefix)}
    elif any(k.startswith(tuple(NETWORKS.values())) for k in keys):
        raise WeightsError(f"the checkpoint has no '{prefix}*' tensors for the {network}")
    out = {}
    for key, value in keys.items():
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def load_mmseg_segmentor(
    model: nn.Module, state_dict: Mapping[str, Tensor], network: str = "student"
) -> LoadReport:
    """Load ``network`` of an mmseg checkpoint into ``model``: every tensor must match (names of
    missing or unexpected keys and mismatched shapes are reported)."""
    own = model.state_dict()
    converted = {
        k: v
        for k, v in segmentor_state_dict(state_dict, network).items()
        if k in own or not k.startswith(ORIGINAL_ONLY)
    }
    return load_checked(model, converted)
