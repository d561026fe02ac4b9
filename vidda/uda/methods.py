"""Build the training method a config names, from its parts."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vidda.config.derived import has_labels, target_previous_offset
from vidda.config.registry import lookup
from vidda.config.schema import Config
from vidda.config.validate import validate
from vidda.uda.adversarial import Adversary
from vidda.uda.augment import StrongAugParams
from vidda.uda.clip_view import ClipView
from vidda.uda.dacs import DACS, TargetClips
from vidda.uda.fd import ImageNetFD
from vidda.uda.method import Method
from vidda.uda.mic import MaskedConsistency
from vidda.uda.mixed_target import TargetMixer
from vidda.uda.refine import RefineSchedule
from vidda.uda.supervised import Supervised
from vidda.uda.teacher import EMATeacher
from vidda.uda.video_pl import PLRefiner

Builder = Callable[[Config, nn.Module, "nn.Module | None"], Method]


def build_dacs(cfg: Config, student: nn.Module, student_forward: nn.Module | None) -> DACS:
    """DACS with the techniques ``cfg.method`` switches on, each built here and handed in."""
    m = cfg.method
    teacher = EMATeacher(student, alpha=m.ema_alpha)
    fd = None
    if m.fd.enabled:  # a frozen copy of the (ImageNet-initialised) backbone
        fd = ImageNetFD(student.backbone, m.fd.weight, m.fd.classes, m.fd.min_ratio,
                        student.feature_scale)  # fmt: skip
    aug = StrongAugParams(m.color_jitter_p, m.color_jitter_s, m.blur)
    mixer = None
    if m.mix == "class":
        mixer = TargetMixer(aug, m.consistent_mix, cfg.compat.mixup_aug_per_frame)
    clips = TargetClips(
        ClipView(cfg.data.source.offsets, "data.source"),
        ClipView(cfg.data.target.offsets, "data.target"),
        m.frame_distance,
        target_previous_offset(cfg, bool(student.two_frame)),
        has_labels(cfg.data.target),
    )
    refiner, schedule = None, None
    if m.refine.enabled:  # trained mixed like the other target losses (`mix`)
        refiner = PLRefiner(m.refine, cfg.compat.original_warp)
        schedule = RefineSchedule(m.refine.l_warp, m.refine.l_mix, m.refine.begin)
    mic = None
    if m.mic.enabled:
        mic = MaskedConsistency(m.mic.block_size, m.mic.mask_ratio, m.mic.weight, aug)
    adversary = None
    if m.discriminator.enabled:
        adversary = Adversary(m.discriminator, cfg.model.num_classes, cfg.compat.joint_softmax,
                              cfg.schedule.iters)  # fmt: skip
    return DACS(student, student_forward, teacher, clips, m.pseudo_threshold, mixer, fd, mic,
                refiner, schedule, adversary)  # fmt: skip


def _supervised(domain: str) -> Builder:
    def build(cfg: Config, student: nn.Module, student_forward: nn.Module | None) -> Method:
        return Supervised(student, student_forward, domain=domain)

    return build


METHODS: dict[str, Builder] = {
    "source_only": _supervised("source"),
    "target_only": _supervised("target"),
    "dacs": build_dacs,
}


def build_method(cfg: Config, student: nn.Module, student_forward: nn.Module | None) -> Method:
    """``method.name`` → a ``Method`` around ``student`` (``student_forward``: its DDP wrapper).

    Raises:
        ConfigError: an unknown method, or settings that cannot work with the model and data
            (:func:`vidda.config.validate.validate`).
    """
    build = lookup(METHODS, cfg.method.name, "method.name", "method")
    validate(cfg)
    return build(cfg, student, student_forward)
