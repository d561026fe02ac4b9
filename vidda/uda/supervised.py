"""Supervised training on one labelled dataset: the source-only and target-only baselines."""

from __future__ import annotations

from typing import Any

import torch

from vidda.uda.method import Method, StepContext


class Supervised(Method):
    """Cross-entropy on the labelled clips of ``batch[domain]`` (key frame only).

    ``source_only`` trains on ``batch["source"]``; ``target_only`` on ``batch["target"]`` (the
    target's labelled training split: an upper bound, not an adaptation method).
    """

    def __init__(self, student, student_forward=None, domain: str = "source") -> None:
        super().__init__(student, student_forward)
        self.domain = domain
        self.uses_target = domain == "target"

    def train_step(
        self, batch: dict[str, Any], ctx: StepContext
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        clip = batch[self.domain]
        x = self.student.preprocess(clip["frames"][:, -1])
        label = clip["label"].long()
        out = self.student_forward(x, generator=ctx.generator)
        losses = self.student.loss(out, label)
        total = sum(losses.values())
        ctx.backward(total)
        logs = {f"{k}_{self.domain[:3]}": v.detach() for k, v in losses.items()}
        panels = {}
        if ctx.visuals:
            panels = {"image": clip["frames"][0, -1], "label": label[0],
                      "prediction": out["logits"][0].argmax(0)}  # fmt: skip
        return logs, panels
