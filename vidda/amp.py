"""Mixed precision: the autocast dtype of each ``amp`` setting (training and inference)."""

from __future__ import annotations

import torch

AMP_DTYPES: dict[str, torch.dtype | None] = {
    "off": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""``train.amp`` / ``vidda infer --amp`` value → autocast dtype (``None``: full precision)."""
