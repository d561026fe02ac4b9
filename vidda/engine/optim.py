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


def add_module_group(
    optimizer: torch.optim.Optimizer, module: nn.Module, cfg: OptimConfig, name: str
) -> None:
    """Add ``module``'s parameters to ``optimizer`` at the base lr and weight decay (one group
    ``name``, scheduled with the others). ``compat.disc_in_main_optimizer``: the original built
    its AdamW over the whole UDA wrapper, the video discriminator included."""
    group = {"params": [p for p in module.parameters() if p.requires_grad], "lr": cfg.lr,
             "weight_decay": cfg.weight_decay, "name": name, "initial_lr": cfg.lr}  # fmt: skip
    optimizer.add_param_group(group)
