"""The config schema: every key a vidda config may hold, with its type and default.

A YAML file only states what differs from these defaults. Keys not declared here are errors
(``vidda.config.load`` names the key, its file and the closest valid keys), so a typo can never
silently fall back to a default. Fields typed ``dict[str, Any]`` are free-form (method- or
model-specific keyword arguments) and are not checked key by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# Fixed sets of option values. The loader rejects any other value with the key and these values;
# code that needs the tuple of names takes ``typing.get_args`` of the alias.
DatasetType = Literal["synthetic", "cityscapes-seq", "viper-seq", "synthia-seq", "bddvid", "video"]
SyntheticDomain = Literal["", "source", "target"]  # "" for the real datasets
OnMissing = Literal["error", "drop"]
SegmentorName = Literal["encoder_decoder", "hrda", "accel"]
AccelBase = Literal["encoder_decoder", "hrda"]  # the single-frame segmentors
AccelInvalidFill = Literal["current", "zero"]
MethodName = Literal["source_only", "target_only", "dacs"]
MixMode = Literal["class", "none"]
# in the order the refinement applies them
RefineStrategy = Literal["consis", "max_conf", "warp_frame", "consis_conf", "rare_class", "oracle",
                         "class_thing", "class_stuff"]  # fmt: skip
RefineFill = Literal["bottom", "all", "none"]
OptimizerType = Literal["adamw"]
AmpMode = Literal["off", "bf16", "fp16"]
DeviceName = Literal["auto", "cpu", "cuda"]
ClassSubset = Literal["all", "viper", "synthia_seq"]
EvalProtocol = Literal["standard", "uvda"]
EvalMode = Literal["whole", "slide"]
# what selects `best.pt`: a protocol's mIoU (needs labels), or a label-free score of the
# predictions on data.val (vidda.engine.selection); auto: standard with labels, else label_free
BestBy = Literal["auto", "standard", "uvda", "temporal", "confidence", "confident", "entropy",
                 "im", "label_free"]  # fmt: skip
LABEL_FREE_BEST_BY = ("temporal", "confidence", "confident", "entropy", "im", "label_free")

# DAFormer's feature-distance classes (Cityscapes train ids: traffic light, traffic sign, person,
# rider, car, truck, bus, train, motorcycle, bicycle); the VIPER configs drop rider (12).
FD_THING_CLASSES: tuple[int, ...] = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
EXCLUSIVE_STRATEGIES = ("class_thing", "class_stuff")


def strategy_problem(strategies: list[str] | tuple[str, ...]) -> str | None:
    """Why a list of refinement strategies cannot run (unknown or exclusive names), or None."""
    known = get_args(RefineStrategy)
    unknown = sorted(set(strategies) - set(known))
    if unknown:
        return f"unknown refinement strategies {unknown}; known: {known}"
    if set(EXCLUSIVE_STRATEGIES) <= set(strategies):
        return " and ".join(EXCLUSIVE_STRATEGIES) + " are exclusive"
    return None


@dataclass
class DatasetConfig:
    """One split of one dataset and its input pipeline (see ``docs/datasets.md``).

    Offsets are canonical (…, -2, -1, 0 = the labelled frame); a dataset whose videos are sampled
    more densely multiplies them by its frame step (BDDVid: 2, so -1 reads the frame 2 back).
    """

    type: DatasetType = "synthetic"
    root: str = ""
    split: str = "train"
    split_file: str = ""  # "" = the dataset's own split file, else every label found
    domain: SyntheticDomain = ""  # synthetic only: source | target
    offsets: list[int] = field(default_factory=lambda: [-2, -1, 0])
    frame_step: int = 0  # 0 = the dataset's own
    flow_offsets: list[int] = field(default_factory=lambda: [-1, 0])  # frames whose flow is read
    flow_root: str = ""  # one folder for every offset; "" = the dataset's or `vidda flow compute`'s
    flow_roots: list[str | None] = field(default_factory=list)  # per offset; overrides flow_root
    resize: list[int] = field(default_factory=list)  # [W, H] keep-ratio target; [] = native
    ratio_range: list[float] = field(default_factory=list)  # [lo, hi] random extra scale
    crop_size: list[int] = field(default_factory=list)  # [H, W]; [] = no crop
    cat_max_ratio: float = 1.0
    flip: bool = False  # random horizontal flip (p = 0.5), training only
    photometric: bool = False  # colour jitter in the loader (same draw for all frames)
    pl_margins: list[int] = field(default_factory=list)  # [top, bottom, left, right] native px
    on_missing: OnMissing = "error"  # what to do with entries that miss files
    # type: video, the user's own unlabelled footage (split: train | val | all, see holdout)
    videos: list[str] = field(default_factory=list)  # video files, frame folders or quoted globs
    frame_rate: float = 17.0  # canonical offsets per second: frame_step = round(video fps / this)
    clip_stride: int = 0  # video frames between the key frames of consecutive clips; 0 = frame_step
    holdout: float = 0.0  # share at the end of each video that is split val (and not split train)
    cache_dir: str = ""  # decoded frames and flows; "" = <run folder>/video_cache
    flow_estimator: dict[str, Any] = field(default_factory=lambda: {"method": "dis"})


@dataclass
class RCSConfig:
    """Rare-class sampling of source clips (DAFormer); statistics from ``vidda data convert``."""

    enabled: bool = False
    class_temp: float = 0.01
    min_pixels: int = 3000
    min_crop_ratio: float = 2.0
    stats_file: str = ""  # "" = <source root>/sample_class_stats.json


@dataclass
class DataConfig:
    source: DatasetConfig = field(default_factory=DatasetConfig)
    target: DatasetConfig = field(default_factory=DatasetConfig)
    val: DatasetConfig = field(default_factory=DatasetConfig)
    batch_size: int = 2  # per process (per GPU); the global batch is batch_size × world size
    num_workers: int = 4
    rcs: RCSConfig = field(default_factory=RCSConfig)


@dataclass
class AccelConfig:
    """ACCEL (``model.segmentor: accel``): one shared base network
    on frames t and t−k, the t−k logits warped onto frame t with the flow, 1×1 fusion."""

    base: AccelBase = "hrda"  # the shared network (segmentor_kwargs are its)
    invalid_fill: AccelInvalidFill = "current"  # the warped half where the warp is invalid


@dataclass
class ModelConfig:
    segmentor: SegmentorName = "encoder_decoder"
    backbone: str = "mit_b5"
    head: str = "daformer"
    num_classes: int = 19
    pretrained: str | None = None  # path to an ImageNet backbone file the user supplies
    # a vidda checkpoint whose student weights start the run at iteration 0 (e.g. adapting a
    # source-only model); a single-frame model's weights also start ACCEL's shared network
    init_checkpoint: str = ""
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    segmentor_kwargs: dict[str, Any] = field(default_factory=dict)
    accel: AccelConfig = field(default_factory=AccelConfig)


@dataclass
class FDConfig:
    """ImageNet feature distance on source "thing" classes (DAFormer)."""

    enabled: bool = False
    weight: float = 0.005
    classes: list[int] = field(default_factory=lambda: list(FD_THING_CLASSES))
    min_ratio: float = 0.75


@dataclass
class MICConfig:
    """Masked image consistency on target images (MIC)."""

    enabled: bool = False
    weight: float = 1.0
    block_size: int = 64
    mask_ratio: float = 0.7


@dataclass
class RefineConfig:
    """Flow-based pseudo-label refinement (DACS only).

    The teacher labels frames t and t−k; frame t−k's pseudo-label is warped onto frame t, its holes
    are filled from frame t, the strategies combine the two, and from iteration ``begin`` on the
    refined label is trained (mixed like the ordinary target loss) with weight ``l_warp``.
    """

    enabled: bool = False
    # always applied in RefineStrategy's order. [] = the warped label as is (after filling).
    strategies: list[RefineStrategy] = field(default_factory=list)
    fill: RefineFill = "bottom"  # bottom: the original's bottom_pl_fill
    warp_frame_threshold: float = 0.0  # τ of warp_frame (paper: 0.0, which never fires)
    consis_conf_threshold: float = 0.0  # τ of consis_conf
    l_warp: float = 1.0  # weight of the loss on the refined pseudo-label
    l_mix: float = 0.0  # weight of the ordinary target loss on frame t's unrefined label
    begin: int = 1500  # first iteration (0-based) that trains the refined label


@dataclass
class DiscriminatorConfig:
    """Video discriminator (DACS only): least-squares GAN on the
    softmax of frames t and t−k, source = 0, target = 1, with its own Adam and poly decay."""

    enabled: bool = False
    weight: float = 0.1  # adv_scale s: scales the generator and the discriminator loss
    lambda_adv: float = 0.001  # generator-loss weight; effective s · λ = 1e-4
    lr: float = 1.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    power: float = 0.9  # lr = (lr − min_lr)(1 − i/iters)^power + min_lr
    min_lr: float = 0.0
    video: bool = True  # frame pairs (t, t−k); false: frame t alone (2C vs C input channels)
    feature_scale: float = 0.5  # predictions are resized to this × the crop before D
    width: int = 64  # channels of D's first convolution


@dataclass
class MethodConfig:
    """The training method and the image- and video-DA techniques it switches on."""

    name: MethodName = "source_only"
    ema_alpha: float = 0.999
    pseudo_threshold: float = 0.968
    # class: target losses train on ClassMix of source and target; none: on the target as is
    mix: MixMode = "class"
    consistent_mix: bool = True  # ACCEL: one ClassMix mask for both frames and the flow
    frame_distance: int = 1  # k: canonical offsets from frame t back to frame t−k
    color_jitter_p: float = 0.2  # jitter is applied when u > p (so with probability 1 - p)
    color_jitter_s: float = 0.2
    blur: bool = True
    fd: FDConfig = field(default_factory=FDConfig)
    mic: MICConfig = field(default_factory=MICConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


@dataclass
class OptimConfig:
    type: OptimizerType = "adamw"
    lr: float = 6e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.01
    head_lr_mult: float = 10.0


@dataclass
class ScheduleConfig:
    iters: int = 40000
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    power: float = 1.0


@dataclass
class TrainConfig:
    eval_every: int = 4000
    checkpoint_every: int = 4000
    log_every: int = 50
    image_every: int = 1000  # TensorBoard image panels (source, target, pseudo-label, mix, ...)
    amp: AmpMode = "off"
    device: DeviceName = "auto"  # auto: CUDA when available
    channels_last: bool = False


@dataclass
class EvalConfig:
    classes: ClassSubset = "all"  # the benchmark's class subset
    protocols: list[EvalProtocol] = field(default_factory=lambda: ["standard", "uvda"])
    mode: EvalMode = "whole"
    crop_size: list[int] = field(default_factory=list)  # sliding-window size [H, W]
    stride: list[int] = field(default_factory=list)
    best_by: BestBy = "auto"  # what selects `best.pt`; auto: standard, or label_free without labels
    # temporal consistency: agreement of the prediction of frame t with the flow-warped prediction
    # of frame t-k (needs data.val frames t-k and t and the flow of frame t)
    temporal: bool = False


@dataclass
class CompatConfig:
    """Switches that restore a quirk of the original code that changes reported numbers.

    Every switch defaults to the corrected behaviour and is documented in ``docs/compat.md``.
    Switches are added here together with the code they control.
    """

    flow_not_rescaled: bool = False  # resizing a clip leaves flow vectors unscaled (original)
    original_warp: bool = False  # integer floor warp with its heuristics (refinement, ACCEL)
    joint_softmax: bool = False  # video discriminator: one softmax over both frames' 2C channels
    accel_single_frame_eval: bool = False  # ACCEL evaluated on frame t alone, without fusion
    accel_unwarped_fusion: bool = False  # ACCEL teacher/test fusion of the *unwarped* t−k logits
    accel_invalid_255: bool = False  # ACCEL: invalid warped logits enter the fusion as 255
    accel_hr_fusion: bool = False  # ACCEL+HRDA: also fuse the misaligned HR-crop logits
    mixup_aug_per_frame: bool = False  # consistent mixup: colour jitter/blur drawn per frame
    bdd_prev_frame_t4: bool = False  # BDDVid target, no ACCEL: "frame t−k" is t−2k (imtk alias)
    # video discriminator's parameters also in the segmentor's AdamW (stepped twice per iteration)
    disc_in_main_optimizer: bool = False


@dataclass
class PaperConfig:
    """Where an experiment config sits in the paper (read by ``vidda experiments``/``table``)."""

    tables: list[int] = field(default_factory=list)  # the paper's tables that report this row
    row: str = ""  # the row's name there, e.g. "HRDA+MIC" or "TPS"
    notes: str = ""  # what the row switches on; where it departs from the original script


@dataclass
class Config:
    """A whole experiment; ``compat`` holds the switches that restore the original's quirks."""

    name: str = ""
    seed: int = 0
    deterministic: bool = False
    workdir: str = "work_dirs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    compat: CompatConfig = field(default_factory=CompatConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
