"""AdamW with the DAFormer parameter groups.

* decoder parameters (decode head and HRDA scale attention): lr × ``head_lr_mult`` (10), weight
  decay kept — BN parameters of the decoder included (the original matched "head" first);
* backbone parameters whose name contains "norm" (MiT LayerNorms): weight decay 0;
* everything else (ResNet BN included, named ``bn*``): lr and weight decay as given.
"""

from __future__ import annotations

import torch
from torch import nn

from vidda.config.load import ConfigError
from vidda.config.schema import OptimConfig

DECODER_MODULES = ("decode_head", "scale_attention")


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Three groups (decoder, no-decay backbone, backbone) of trainable parameters."""
    decoder, no_decay, default = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # A wrapper (ACCEL) holds the segmentor as ``segmentor.*``; its own layers (the fusion
        # convolution) train at the base rate, as in the original.
        if name.removeprefix("segmentor.").split(".")[0] in DECODER_MODULES:
            decoder.append(p)
        elif "norm" in name:
            no_decay.append(p)
        else:
            default.append(p)
    groups = [
        {"params": default, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "backbone"},
        {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0, "name": "backbone_norm"},
        {"params": decoder, "lr": cfg.lr * cfg.head_lr_mult, "weight_decay": cfg.weight_decay,
         "name": "decoder"},
    ]  # fmt: skip
    for g in groups:
        g["initial_lr"] = g["lr"]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) over ``param_groups``."""
    if cfg.type != "adamw":
        raise ConfigError(f"optim.type: unknown optimizer {cfg.type!r}; expected 'adamw'")
    fused = next(model.parameters()).is_cuda
    return torch.optim.AdamW(param_groups(model, cfg), betas=tuple(cfg.betas), fused=fused)
