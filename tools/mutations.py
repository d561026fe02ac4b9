"""Hand-written mutations for ``tools/mutate.py`` (see ``docs/mutation.md``).

Each entry of :data:`MUTATIONS` is a plausible, result-changing bug a reviewer would worry about:

* ``id``: unique name (``<module>_<what>``);
* ``module``: the report's module tag (one of :data:`MODULES`);
* ``file``: the mutated file, relative to the repository root;
* ``old``: an exact source snippet that must occur exactly once in ``file``;
* ``new``: its replacement;
* ``desc``: one line, the bug as a reviewer would describe it (equivalence doubts are noted here);
* ``targets``: pytest paths or node ids that should kill it, run in this order with ``-x``.

Targets that do not exist yet are skipped with a warning (at least one must exist). Every module
under ``vidda/uda/`` and ``vidda/models/segmentors/`` also lists ``tests/test_step_reference.py``.
"""

from __future__ import annotations

MODULES = (
    "metrics", "flow_io", "warp", "transforms", "refine", "mix", "mic", "pseudo_label", "fd",
    "teacher", "hrda", "accel", "discriminator", "adversary", "dacs_step", "schedule",
    "optim_groups", "checkpoint", "label_convert", "sampling", "augment", "clip_view", "losses",
    "config", "label_free",
)  # fmt: skip

# --------------------------------------------------------------------------- target groups

STEP = "tests/test_step_reference.py"
VIDEO = "tests/test_video_method.py"
PROPS = "tests/test_properties.py"
PARTS = "tests/test_uda_parts.py"

T_METRICS = ["tests/test_metrics.py", "tests/test_table.py"]
T_FLOW_IO = ["tests/test_flow_io.py", "tests/test_clips.py"]
T_WARP = ["tests/test_warp.py", PROPS]
T_TRANSFORMS = ["tests/test_transforms.py", PROPS]
T_REFINE = ["tests/test_refine.py", STEP, VIDEO]
T_VIDEO_PL = [STEP, VIDEO]
T_MIX = [PARTS, PROPS, "tests/test_accel.py", STEP, VIDEO]
T_MIC = [PARTS, STEP]
T_PSEUDO = [PARTS, STEP]
T_FD = [PARTS, STEP]
T_TEACHER = [PARTS, "tests/test_pl_quality.py", STEP]
IFACE = "tests/test_segmentor_interface.py"
T_HRDA = ["tests/test_segmentors.py", IFACE, "tests/test_accel.py", STEP]
T_ACCEL = ["tests/test_accel.py", STEP, VIDEO]
T_DISC = ["tests/test_discriminator.py", PROPS, STEP]
T_ADV = ["tests/test_discriminator.py", STEP, VIDEO]
T_DACS = [STEP, VIDEO]
T_SUPERVISED = [STEP, "tests/test_engine.py::test_each_method_trains_a_few_iterations"]
T_CLIP_VIEW = [PROPS, IFACE, STEP, VIDEO]
T_SCHEDULE = ["tests/test_optim.py", "tests/test_discriminator.py"]
T_OPTIM = [
    "tests/test_optim.py",
    f"{VIDEO}::test_disc_in_main_optimizer_switch",
    f"{VIDEO}::test_discriminator_and_segmentor_optimizers_step_separately",
]
T_CHECKPOINT = ["tests/test_checkpoint_faults.py", "tests/test_engine.py"]
T_CONVERT = ["tests/test_convert.py"]
T_SAMPLING = ["tests/test_sampling.py"]
T_AUGMENT = [PARTS, STEP]
T_LOSSES = ["tests/test_segmentors.py", "tests/test_accel.py", STEP]

# Left out of every run (baseline and mutants) to keep a mutant's run short: the end-to-end
# training rows of test_video_method.py take ~2 of its ~3 minutes on this machine and only check
# that a few iterations run with finite losses; the method-level tests of the same file and
# test_step_reference.py check the composition itself.
DESELECT = [
    f"{VIDEO}::test_each_video_method_trains_a_few_iterations",
]

MUTATIONS: list[dict] = []


def _add(mid: str, module: str, file: str, old: str, new: str, desc: str, targets: list[str]):
    MUTATIONS.append(dict(id=mid, module=module, file=file, old=old, new=new, desc=desc,
                          targets=list(targets)))  # fmt: skip


# =========================================================================== composition
# vidda/uda/dacs.py -------------------------------------------------------------------------

F = "vidda/uda/mixed_target.py"
_add("dacs_mix_label_swapped", "dacs_step", F,
     "mixed_label = mix(masks, source_label, label)",
     "mixed_label = mix(masks, label, source_label)",
     "ClassMix label pastes the pseudo-label where the source label should be", T_DACS)
_add("dacs_mix_weight_keeps_pl_weight", "dacs_step", F,
     "mixed_weight = mix(masks, torch.ones_like(weight), weight)",
     "mixed_weight = mix(masks, weight, weight)",
     "pasted source pixels keep the pseudo-label weight instead of 1", T_DACS)
_add("dacs_mix_image_swapped", "dacs_step", F,
     "x = mix(masks, s.x, t.x)", "x = mix(masks, t.x, s.x)",
     "mixed image pastes the target onto the source (label still source-on-target)", T_DACS)
_add("dacs_mix_prev_swapped", "dacs_step", F,
     "prev = mix(masks, s.prev, t.prev)", "prev = mix(masks, t.prev, s.prev)",
     "consistent mixup: frame t-k mixed with the inverted mask", T_DACS)
_add("dacs_mix_flows_swapped", "dacs_step", F,
     "mix_flows(masks, (s.flow, s.valid), (t.flow, t.valid))",
     "mix_flows(masks, (t.flow, t.valid), (s.flow, s.valid))",
     "consistent mixup: flow taken from the target where the source was pasted", T_DACS)
_add("dacs_mix_flow_valid_from_target", "dacs_step", F,
     "(s.flow, s.valid), (t.flow, t.valid)", "(s.flow, t.valid), (t.flow, t.valid)",
     "consistent mixup: pasted source flow keeps the target's validity mask "
     "(all-valid test flows may hide it)", T_DACS)
_add("dacs_consistent_mix_inverted", "dacs_step", F,
     "if self.consistent:", "if not self.consistent:",
     "method.consistent_mix switch inverted", T_DACS)
_add("dacs_aug_per_frame_inverted", "dacs_step", F,
     "if self.aug_per_frame:", "if not self.aug_per_frame:",
     "compat.mixup_aug_per_frame inverted: one draw per frame by default", T_DACS)
_add("dacs_aug_not_per_image", "dacs_step", F,
     "return Pair(strong_augment(x, self.aug, generator, per_image=True))",
     "return Pair(strong_augment(x, self.aug, generator, per_image=False))",
     "mixed images share one blur sigma (MIC behaviour) instead of one draw per image", T_DACS)

F = "vidda/uda/dacs.py"
_add("dacs_target_loss_scale_not_in_backward", "dacs_step", F,
     "ctx.backward(scale * sum(losses.values()))", "ctx.backward(sum(losses.values()))",
     "l_warp / l_mix applied to the logged loss only, not to the gradient", T_DACS)
_add("dacs_target_loss_weight_dropped", "dacs_step", F,
     "losses = self.student.loss(out, label, weight)", "losses = self.student.loss(out, label)",
     "target loss ignores the pseudo-label weight (quality and margins)", T_DACS)
_add("dacs_refined_trained_with_cur_weight", "dacs_step", F,
     'self._target_loss("warp", label, weight, w_warp,',
     'self._target_loss("warp", label, cur.weight, w_warp,',
     "refined label trained with frame t's unrefined weight instead of the refined weight", T_DACS)
_add("dacs_refined_before_begin", "dacs_step", F,
     "if self.refiner is not None and w_warp > 0:", "if self.refiner is not None and w_warp >= 0:",
     "refined pseudo-label computed (and the target forward run) before refine.begin", T_DACS)
_add("dacs_refine_flow_one_step", "dacs_step", F,
     "flow, valid = views.target.flow(tgt, 0, self.k)",
     "flow, valid = views.target.flow(tgt, 0, 1)",
     "refinement warps with the one-step flow whatever frame_distance k is "
     "(equivalent for k = 1)", T_DACS)
_add("dacs_prev_pair_is_frame_t", "dacs_step", F,
     "return self.student.prepare(view.pair(clip, -self.k, self.k))",
     "return self.student.prepare(view.pair(clip, 0, self.k))",
     "two-frame 'frame t-k' input is frame t's own pair (t, t-k)", T_DACS)
_add("dacs_prev_ignores_alias", "dacs_step", F,
     "return self.student.prepare(Pair(view.frame(clip, prev)))",
     "return self.student.prepare(Pair(view.frame(clip, -self.k)))",
     "single-frame 'frame t-k' ignores the BDDVid t-2k alias (prev offset)", T_DACS)
_add("dacs_disc_target_pair_reversed", "dacs_step", F,
     "tgt_pairs.append(self._prev_inputs(tgt, views.target, views.target_prev))",
     "tgt_pairs.insert(0, self._prev_inputs(tgt, views.target, views.target_prev))",
     "discriminator target pair fed as (t-k, t) instead of (t, t-k)", T_DACS)
_add("dacs_disc_source_pair_from_target", "dacs_step", F,
     "src_pairs.append(self._prev_inputs(src, views.source, -self.k))",
     "src_pairs.append(self._prev_inputs(tgt, views.target, views.target_prev))",
     "discriminator source pair takes frame t-k from the target clip (copy-paste slip)", T_DACS)
_add("dacs_teacher_always_copies", "dacs_step", F,
     "self.teacher.update(self.student, step)", "self.teacher.update(self.student, 0)",
     "EMA teacher re-copied from the student every step (no averaging)", T_DACS)
_add("dacs_disc_lr_frozen", "dacs_step", F,
     "self.adversary.set_lr(step)", "self.adversary.set_lr(0)",
     "discriminator learning rate never decays", T_DACS)
_add("dacs_mic_weight_dropped", "mic", F,
     "ctx.backward(self.mic.weight * sum(losses.values()))",
     "ctx.backward(sum(losses.values()))",
     "MIC loss weight lambda_mic not applied to the gradient", T_DACS)
_add("dacs_mic_ignores_pl_weight", "mic", F,
     "losses = self.student.loss(out, cur.label, cur.weight)",
     "losses = self.student.loss(out, cur.label)",
     "MIC loss ignores the pseudo-label weight (quality and margins)", T_DACS)
_add("dacs_fd_weight_dropped", "fd", F,
     "fd = self.fd(out[\"features\"][-1], s_in.x, y_s)",
     "fd = self.fd(out[\"features\"][-1], s_in.x, y_s) / self.fd.weight",
     "FD loss loses its weight lambda_fd", T_DACS)

F = "vidda/uda/mic.py"
_add("dacs_mic_not_masked", "mic", F,
     "masked = mask_images(frames, m)", "masked = frames",
     "MIC trains on the unmasked (only colour-augmented) target", T_DACS)
_add("dacs_mic_no_colour_aug", "mic", F,
     "frames = strong_augment(frames, self.aug, generator)", "frames = frames",
     "MIC's colour augmentation / blur dropped", T_DACS)
_add("dacs_mic_blur_follows_dacs_flag", "mic", F,
     "aug.color_jitter_s, blur=True)", "aug.color_jitter_s, blur=aug.blur)",
     "MIC blur disabled whenever DACS's blur flag is off (MIC always blurs)", T_DACS)
_add("dacs_mic_prev_unmasked", "mic", F,
     "return Pair(masked[:, 0], masked[:, 1], inputs.flow, inputs.valid)",
     "return Pair(masked[:, 0], inputs.prev, inputs.flow, inputs.valid)",
     "ACCEL + MIC: only frame t is masked, frame t-k is fed clean", T_DACS)

F = "vidda/uda/fd.py"
_add("dacs_fd_reference_full_resolution", "fd", F,
     "ref = self.imnet(rescale(x, self.feature_scale))[-1]", "ref = self.imnet(x)[-1]",
     "FD reference features from the full-resolution image, not HRDA's context", T_DACS)
_add("dacs_fd_weight_not_applied", "fd", F,
     "return self.weight * feature_distance(", "return feature_distance(",
     "ImageNetFD returns the unweighted distance", T_DACS)

F = "vidda/models/segmentors/resize.py"
_add("dacs_fd_context_nearest", "fd", F,
     'return F.interpolate(x, size, mode="bilinear", align_corners=False)',
     'return F.interpolate(x, size, mode="nearest")',
     "images and logits resized nearest instead of bilinear (HRDA context, FD reference, "
     "ACCEL upsampling)", T_DACS + T_HRDA)
_add("resize_round_down", "hrda", F,
     "int(x.shape[-2] * scale + 0.5), int(x.shape[-1] * scale + 0.5)",
     "int(x.shape[-2] * scale), int(x.shape[-1] * scale)",
     "rescaled size rounded down instead of half up (equivalent for even sizes)", T_HRDA)

# vidda/uda/supervised.py -----------------------------------------------------------------

F = "vidda/uda/supervised.py"
_add("supervised_oldest_frame", "dacs_step", F,
     'x = self.student.preprocess(clip["frames"][:, -1])',
     'x = self.student.preprocess(clip["frames"][:, 0])',
     "supervised baselines train on the oldest frame of the clip, not the labelled key frame",
     T_SUPERVISED)
_add("supervised_always_source", "dacs_step", F,
     "clip = batch[self.domain]", 'clip = batch["source"]',
     "target_only trains on the source batch", T_SUPERVISED)
_add("supervised_uses_target_inverted", "dacs_step", F,
     'self.uses_target = domain == "target"', 'self.uses_target = domain == "source"',
     "target loader requested for source_only and not for target_only", T_SUPERVISED)

# vidda/uda/clip_view.py ------------------------------------------------------------------

F = "vidda/uda/clip_view.py"
_add("clip_view_chain_sign", "clip_view", F,
     "flow = flow + sampled[:, :2]", "flow = flow - sampled[:, :2]",
     "chained flow subtracts the next link instead of adding it", T_CLIP_VIEW)
_add("clip_view_chain_nearest", "clip_view", F,
     'sampled, inside = backward_warp(stack, flow, "bilinear", valid)',
     'sampled, inside = backward_warp(stack, flow, "nearest", valid)',
     "next flow link sampled nearest instead of bilinear (same for integer flows)", T_CLIP_VIEW)
_add("clip_view_chain_ignores_link_validity", "clip_view", F,
     "valid = inside & (sampled[:, 2] > 1.0 - 1e-4)", "valid = inside",
     "chained validity ignores the validity of the later links", T_CLIP_VIEW)
_add("clip_view_chain_end_not_checked", "clip_view", F,
     "    return flow, inside", "    return flow, valid",
     "chained flow's end point is not required to lie inside the frame", T_CLIP_VIEW)
_add("clip_view_links_off_by_one", "clip_view", F,
     "links = [self.index(offset - j) for j in range(k)]",
     "links = [self.index(offset - j) for j in range(1, k + 1)]",
     "flow chain starts at the previous frame's flow (off by one)", T_CLIP_VIEW)
_add("clip_view_pair_frames_swapped", "clip_view", F,
     "return Pair(self.frame(clip, offset), prev, flow, valid)",
     "return Pair(prev, self.frame(clip, offset), flow, valid)",
     "pair holds (t-k, t) instead of (t, t-k)", T_CLIP_VIEW)
_add("clip_view_bdd_alias_ignored", "clip_view", "vidda/config/derived.py",
     "return -2 * k if alias else -k", "return -k",
     "compat.bdd_prev_frame_t4 alias (frame t-2k) ignored", T_CLIP_VIEW)

F = "vidda/models/segmentors/base.py"
_add("preprocess_std_not_applied", "clip_view", F,
     "        return (x - mean) / std\n", "        return x - mean\n",
     "frames fed to the networks centred but not divided by the ImageNet std", T_CLIP_VIEW)
_add("prepare_prev_not_normalised", "clip_view", F,
     "return inputs.map_frames(self.preprocess)",
     "return Pair(self.preprocess(inputs.x), inputs.prev, inputs.flow, inputs.valid)",
     "two-frame inputs: frame t-k fed to the network unnormalised", T_CLIP_VIEW)

# vidda/uda/video_pl.py -------------------------------------------------------------------

F = "vidda/uda/video_pl.py"
_add("video_pl_warps_own_label", "refine", F,
     "warped = warp_pseudo_label(prev, flow,", "warped = warp_pseudo_label(cur, flow,",
     "refinement warps frame t's own pseudo-label instead of frame t-k's", T_VIDEO_PL)
_add("video_pl_never_fills", "refine", F,
     'fill=None if self.cfg.fill == "none" else self.cfg.fill,', "fill=None,",
     "the refiner never fills holes (refine.fill ignored)", T_VIDEO_PL)
_add("video_pl_softmax_batch_axis", "refine", F,
     "probs = logits.detach().float().softmax(dim=1) if with_probs else None",
     "probs = logits.detach().float().softmax(dim=0) if with_probs else None",
     "teacher probabilities for the refinement softmaxed over the batch axis", T_VIDEO_PL)
_add("video_pl_flow_validity_dropped", "refine", F,
     "warp_pseudo_label(prev, flow, flow_valid,", "warp_pseudo_label(prev, flow, None,",
     "warp of frame t-k's label ignores the flow validity mask", T_VIDEO_PL)
_add("video_pl_original_warp_ignored", "refine", F,
     "original=self.original_warp)", "original=False)",
     "compat.original_warp does not reach the refiner", T_VIDEO_PL)
_add("video_pl_thresholds_swapped", "refine", F,
     "warp_frame_threshold=self.cfg.warp_frame_threshold,\n"
     "            consis_conf_threshold=self.cfg.consis_conf_threshold,",
     "warp_frame_threshold=self.cfg.consis_conf_threshold,\n"
     "            consis_conf_threshold=self.cfg.warp_frame_threshold,",
     "warp_frame and consis_conf thresholds swapped", T_VIDEO_PL)
_add("video_pl_oracle_without_gt", "refine", F,
     "gt if self.needs_gt else None,", "None,",
     "oracle strategy never receives the ground truth", T_VIDEO_PL)
_add("video_pl_margins_dropped", "pseudo_label", F,
     "label, weight, _ = pseudo_label(logits, threshold, mask)",
     "label, weight, _ = pseudo_label(logits, threshold, None)",
     "teacher pseudo-label ignores the crop's pseudo-label margins (pl_valid)", T_VIDEO_PL)
_add("video_pl_teacher_ignores_flow_valid", "accel", F,
     "return teacher.inference(inp)",
     "return teacher.inference(Pair(inp.x, inp.prev, inp.flow, None))",
     "two-frame teacher fuses warped t-k logits where the flow is invalid", T_VIDEO_PL)
_add("video_pl_accuracy_over_labelled", "refine", F,
     "return correct / n_kept, n_kept / labelled.sum().float()",
     "return correct / labelled.sum().float(), n_kept / labelled.sum().float()",
     "pl_acc divides by all labelled pixels instead of the kept ones", T_VIDEO_PL)

# vidda/uda/adversarial.py ----------------------------------------------------------------

F = "vidda/uda/adversarial.py"
_add("adv_disc_loss_domains_swapped", "adversary", F,
     "d_loss = self.disc.discriminator_loss(d_src, d_trg)",
     "d_loss = self.disc.discriminator_loss(d_trg, d_src)",
     "discriminator loss called with source and target swapped", T_ADV)
_add("adv_generator_on_source", "adversary", F,
     "g_loss = self.disc.generator_loss(d_trg)", "g_loss = self.disc.generator_loss(d_src)",
     "generator loss computed on the source pair", T_ADV)
_add("adv_generator_not_backpropagated", "adversary", F,
     "        backward(g_loss)\n", "",
     "generator loss logged but never back-propagated into the student", T_ADV)
_add("adv_scale_lambda_swapped", "adversary", F,
     "num_classes, cfg.weight, cfg.lambda_adv, cfg.lr,",
     "num_classes, cfg.lambda_adv, cfg.weight, cfg.lr,",
     "adv_scale and lambda_adv swapped (generator loss unchanged, D loss scaled wrong)", T_ADV)
_add("adv_video_flag_ignored", "adversary", F,
     "joint_softmax, cfg.video, cfg.width,", "joint_softmax, True, cfg.width,",
     "discriminator.video=false ignored: always a pair discriminator", T_ADV)
_add("adv_betas_swapped", "adversary", F,
     "(cfg.betas[0], cfg.betas[1])", "(cfg.betas[1], cfg.betas[0])",
     "discriminator Adam betas swapped (visible after D's optimizer step only)", T_ADV)
_add("adv_size_uses_height_twice", "adversary", F,
     "int(width * self.feature_scale))", "int(height * self.feature_scale))",
     "discriminator input width computed from the crop height (square crops hide it)", T_ADV)
_add("adv_lr_off_by_one", "adversary", F,
     "return self.disc.set_lr(step, self.total_iters)",
     "return self.disc.set_lr(step + 1, self.total_iters)",
     "discriminator lr schedule one iteration ahead", T_ADV)
_add("adv_min_size_check", "adversary", F,
     "if min(size) < MIN_DISCRIMINATOR_INPUT:", "if min(size) < 16:",
     "discriminator inputs below 32 pixels (D's output 0x0) accepted", T_ADV)

# vidda/uda/discriminator.py --------------------------------------------------------------

F = "vidda/uda/discriminator.py"
_add("disc_domain_labels_swapped", "discriminator", F,
     "SOURCE_LABEL = 0.0\nTARGET_LABEL = 1.0", "SOURCE_LABEL = 1.0\nTARGET_LABEL = 0.0",
     "discriminator domain labels swapped (source 1, target 0)", T_DISC)
_add("disc_generator_target_label", "discriminator", F,
     "loss = F.mse_loss(out, torch.full_like(out, SOURCE_LABEL))",
     "loss = F.mse_loss(out, torch.full_like(out, TARGET_LABEL))",
     "generator loss pushes target pairs towards the target label", T_DISC)
_add("disc_softmax_batch_axis", "discriminator", F,
     "(z_t.softmax(dim=1), z_tk.softmax(dim=1))", "(z_t.softmax(dim=0), z_tk.softmax(dim=1))",
     "frame t's class probabilities softmaxed over the batch axis", T_DISC)
_add("disc_joint_flag_inverted", "discriminator", F,
     "    if joint_softmax:\n", "    if not joint_softmax:\n",
     "compat.joint_softmax inverted", T_DISC)
_add("disc_resize_nearest", "discriminator", F,
     'return F.interpolate(z, size, mode="bilinear", align_corners=False)',
     'return F.interpolate(z, size, mode="nearest")',
     "logits resized nearest instead of bilinear before the softmax", T_DISC)
_add("disc_default_size_hw_swapped", "discriminator", F,
     "size = (int(logits_t.shape[-2] * 0.5), int(logits_t.shape[-1] * 0.5))",
     "size = (int(logits_t.shape[-1] * 0.5), int(logits_t.shape[-2] * 0.5))",
     "default input size has h and w swapped (square maps hide it)", T_DISC)
_add("disc_loss_halves_dropped", "discriminator", F,
     "return self.adv_scale * (0.5 * loss_s + 0.5 * loss_t)",
     "return self.adv_scale * (loss_s + loss_t)",
     "discriminator loss misses the 0.5 factors", T_DISC)
_add("disc_generator_lambda_dropped", "discriminator", F,
     "return self.adv_scale * self.lambda_adv * loss", "return self.adv_scale * loss",
     "generator loss loses lambda_adv (1000x too strong)", T_DISC)
_add("disc_generator_not_frozen", "discriminator", F,
     "out = self._frozen(d_in_target)", "out = self.net(d_in_target)",
     "generator loss accumulates gradients in D", T_DISC)
_add("disc_target_not_detached", "discriminator", F,
     "out_t = self.net(d_in_target.detach())", "out_t = self.net(d_in_target)",
     "discriminator loss leaks gradients into the segmentor through the target pair", T_DISC)
_add("disc_min_lr_not_subtracted", "discriminator", F,
     "return (self.lr - self.min_lr) * lr_factor(", "return self.lr * lr_factor(",
     "poly decay ignores min_lr in the amplitude (equivalent for min_lr = 0)", T_DISC)
_add("disc_leaky_slope", "discriminator", F,
     "self.act = nn.LeakyReLU(0.2)", "self.act = nn.LeakyReLU(0.01)",
     "LeakyReLU slope 0.01 (PyTorch default) instead of AdaptSegNet's 0.2", T_DISC)

# vidda/uda/teacher.py --------------------------------------------------------------------

F = "vidda/uda/teacher.py"
_add("teacher_ema_weights_swapped", "teacher", F,
     "            torch._foreach_mul_(teacher_params, a)\n"
     "            torch._foreach_add_(teacher_params, student_params, alpha=1.0 - a)",
     "            torch._foreach_mul_(teacher_params, 1.0 - a)\n"
     "            torch._foreach_add_(teacher_params, student_params, alpha=a)",
     "EMA: momentum applied to the student instead of the teacher", T_TEACHER)
_add("teacher_momentum_max", "teacher", F,
     "return min(1.0 - 1.0 / (step + 1), alpha)", "return max(1.0 - 1.0 / (step + 1), alpha)",
     "warm-start momentum uses max instead of min", T_TEACHER)
_add("teacher_momentum_off_by_one", "teacher", F,
     "return min(1.0 - 1.0 / (step + 1), alpha)", "return min(1.0 - 1.0 / (step + 2), alpha)",
     "warm-start momentum one step ahead", T_TEACHER)
_add("teacher_pseudo_mode_eval", "teacher", F,
     "    try:\n        model.train()", "    try:\n        model.eval()",
     "teacher predicts with BatchNorm running statistics (eval mode) instead of batch stats",
     T_TEACHER)
_add("teacher_dropout_stays_on", "teacher", F,
     "            if is_dropout(m):\n                m.eval()",
     "            if is_dropout(m):\n                m.train()",
     "teacher predicts with dropout on", T_TEACHER)
_add("teacher_droppath_not_recognised", "teacher", F,
     'type(module).__name__ == "DropPath"', 'type(module).__name__ == "Droppath"',
     "DropPath modules not switched off in the teacher (name typo)", T_TEACHER)
_add("teacher_params_require_grad", "teacher", F,
     "p.requires_grad_(False)", "p.requires_grad_(True)",
     "teacher parameters require grad", T_TEACHER)

# vidda/uda/mix.py ------------------------------------------------------------------------

F = "vidda/uda/mix.py"
_add("mix_classes_floor", "mix", F,
     "k = (n + n % 2) // 2", "k = n // 2",
     "ClassMix draws floor(n/2) classes instead of ceil(n/2)", T_MIX)
_add("mix_where_swapped", "mix", F,
     "return torch.where(m, source, target)", "return torch.where(m, target, source)",
     "mix takes target where the mask is 1", T_MIX)
_add("mix_with_replacement", "mix", F,
     "rng.choice(classes, k, replace=False)", "rng.choice(classes, k, replace=True)",
     "classes drawn with replacement (fewer distinct classes pasted)", T_MIX)
_add("mix_complement_mask", "mix", F,
     "torch.isin(lab.long(), cls)", "~torch.isin(lab.long(), cls)",
     "mask pastes the classes that were not drawn", T_MIX)
_add("mix_ignore_not_candidate", "mix", F,
     "classes = torch.unique(source_labels).cpu().numpy()",
     "classes = torch.unique(source_labels[source_labels != 255]).cpu().numpy()",
     "255 no longer a ClassMix candidate (DACS quirk dropped)", T_MIX)
_add("mix_flow_validity_from_target", "mix", F,
     "mix(mask, source[1], target[1])", "target[1]",
     "mixed flow keeps the target's validity everywhere", T_MIX)
_add("mix_expand_clip_wrong", "mix", F,
     "(1,) * (ndim - 3) + mask.shape[1:]", "(1,) * (ndim - 4) + mask.shape[1:]",
     "mask broadcast one axis short for images and clips", T_MIX)

# vidda/uda/pseudo.py ---------------------------------------------------------------------

F = "vidda/uda/pseudo.py"
_add("pseudo_softmax_batch_axis", "pseudo_label", F,
     "probs = logits.detach().float().softmax(dim=1)",
     "probs = logits.detach().float().softmax(dim=0)",
     "teacher probabilities softmaxed over the batch axis", T_PSEUDO)
_add("pseudo_quality_strict", "pseudo_label", F,
     "return (confidence >= threshold).float().mean()",
     "return (confidence > threshold).float().mean()",
     "quality counts confidence > tau instead of >= tau", T_PSEUDO)
_add("pseudo_weight_per_pixel", "pseudo_label", F,
     "weight = quality(confidence, threshold).expand_as(confidence).clone()",
     "weight = (confidence >= threshold).float()",
     "per-pixel hard threshold instead of one quality scalar per batch", T_PSEUDO)
_add("pseudo_valid_mask_dropped", "pseudo_label", F,
     "weight = weight * valid_mask.to(weight.dtype)", "weight = weight",
     "valid_mask (v2 margins) not applied to the weight", T_PSEUDO)
_add("pseudo_top_rows_off_by_one", "pseudo_label", F,
     "weight[:, :ignore_top] = 0.0", "weight[:, : ignore_top + 1] = 0.0",
     "v1 margins zero one row too many at the top", T_PSEUDO)
_add("pseudo_bottom_columns", "pseudo_label", F,
     "weight[:, weight.shape[1] - min(ignore_bottom, weight.shape[1]) :] = 0.0",
     "weight[:, :, weight.shape[2] - min(ignore_bottom, weight.shape[2]) :] = 0.0",
     "v1 bottom margin zeroes columns instead of rows", T_PSEUDO)
_add("pseudo_confidence_from_logits", "pseudo_label", F,
     "confidence, label = probs.max(dim=1)",
     "confidence, label = logits.detach().float().max(dim=1)",
     "confidence is the max logit, not the max probability", T_PSEUDO)
_add("pseudo_default_threshold", "pseudo_label", F,
     "PSEUDO_THRESHOLD = 0.968", "PSEUDO_THRESHOLD = 0.9",
     "default tau 0.9 instead of 0.968", T_PSEUDO)

# =========================================================================== parts
# vidda/uda/refine.py ---------------------------------------------------------------------

F = "vidda/uda/refine.py"
_add("refine_consis_inverted", "refine", F,
     "return _drop(label, weight, label != cur_label)",
     "return _drop(label, weight, label == cur_label)",
     "consistency filter drops the agreeing pixels", T_REFINE)
_add("refine_max_conf_ties_to_current", "refine", F,
     "cur = (c_t > c_w) | ~ok", "cur = (c_t >= c_w) | ~ok",
     "max_conf ties go to frame t instead of the warped label", T_REFINE)
_add("refine_max_conf_invalid_kept", "refine", F,
     "cur = (c_t > c_w) | ~ok", "cur = c_t > c_w",
     "max_conf does not fall back to frame t where the warped probabilities are invalid",
     T_REFINE)
_add("refine_warp_frame_drops_invalid", "refine", F,
     "return _drop(label, weight, (c_w < threshold) & ok)",
     "return _drop(label, weight, c_w < threshold)",
     "warp_frame also drops pixels with invalid warped probabilities (e.g. filled ones)",
     T_REFINE)
_add("refine_consis_conf_or", "refine", F,
     "keep = (label == cur_label) & (c_t > threshold)",
     "keep = (label == cur_label) | (c_t > threshold)",
     "consis_conf keeps pixels that agree OR are confident", T_REFINE)
_add("refine_rare_vs_rare", "refine", F,
     "take_warp = differ & rare_warp & ~rare_cur", "take_warp = differ & rare_warp",
     "rare_class takes the warped label even when frame t's is rare too", T_REFINE)
_add("refine_num_rare", "refine", F,
     "NUM_RARE = 11", "NUM_RARE = 10",
     "person (the 11th rarest class) no longer rare", T_REFINE)
_add("refine_fill_row_ratio", "refine", F,
     "else int(height * 0.7)", "else int(height * 0.8)",
     "bottom fill band starts at 80 % of the height instead of 70 %", T_REFINE)
_add("refine_fill_no_right_band", "refine", F,
     "return (rows >= limit) | (cols < side) | (cols >= width - side)",
     "return (rows >= limit) | (cols < side)",
     "bottom fill band misses the right-hand side band", T_REFINE)
_add("refine_fill_by_label", "refine", F,
     "take = region & (warped_weight == 0)", "take = region & (warped_label == IGN)",
     "bottom fill only where the warp is invalid, not wherever the warped weight is 0",
     T_REFINE)
_add("refine_fill_all_inverted", "refine", F,
     "take = ~valid.bool() if valid is not None", "take = valid.bool() if valid is not None",
     "fill 'all' replaces the valid pixels instead of the holes", T_REFINE)
_add("refine_fill_keeps_zero_weight", "refine", F,
     "torch.where(take, cur_weight, warped_weight)",
     "torch.where(take, warped_weight, warped_weight)",
     "filled pixels take frame t's label but keep the hole's weight 0", T_REFINE)
_add("refine_weight_warp_bilinear", "refine", F,
     'weight, _ = backward_warp(prev.weight[:, None].float(), flow, "nearest", flow_valid, *fb)',
     'weight, _ = backward_warp(prev.weight[:, None].float(), flow, "bilinear", flow_valid, *fb)',
     "warped weight interpolated bilinearly (blurs margin edges)", T_REFINE)
_add("refine_probs_warp_nearest", "refine", F,
     'probs, _ = backward_warp(prev.probs, flow, "bilinear", flow_valid, *fb)',
     'probs, _ = backward_warp(prev.probs, flow, "nearest", flow_valid, *fb)',
     "warped probabilities sampled nearest instead of bilinear", T_REFINE)
_add("refine_original_weight_not_zeroed", "refine", F,
     "weight = out[:, 1].masked_fill(~ok, 0.0).to(prev.weight.dtype)",
     "weight = out[:, 1].to(prev.weight.dtype)",
     "original warp: invalid pixels keep the 255 marker as their weight", T_REFINE)
_add("refine_class_restrict_inverted", "refine", F,
     'drop = (~is_thing if which == "thing" else is_thing)',
     'drop = (is_thing if which == "thing" else ~is_thing)',
     "class_thing keeps stuff and class_stuff keeps things", T_REFINE)
_add("refine_schedule_begin_strict", "refine", F,
     "return self.l_warp_lambda > 0 and step >= self.begin",
     "return self.l_warp_lambda > 0 and step > self.begin",
     "refined loss starts one iteration after refine.begin", T_REFINE)

# vidda/uda/fd.py -------------------------------------------------------------------------

F = "vidda/uda/fd.py"
_add("fd_ties_to_higher_class", "fd", F,
     "better = ratio > best_ratio", "better = ratio >= best_ratio",
     "majority-vote ties go to the higher class id", T_FD)
_add("fd_ignore_wins", "fd", F,
     "drop = (best_class == n_classes) | (best_ratio < min_ratio)",
     "drop = best_ratio < min_ratio",
     "cells won by the ignore label keep the extra class id", T_FD)
_add("fd_min_ratio_inclusive", "fd", F,
     "(best_ratio < min_ratio)", "(best_ratio <= min_ratio)",
     "cells with exactly min_ratio share dropped", T_FD)
_add("fd_scale_from_height", "fd", F,
     "scale = label.shape[-1] // w", "scale = label.shape[-1] // h",
     "down-scale factor divides the label width by the feature height", T_FD)
_add("fd_l1_norm", "fd", F,
     "vector_norm(diff, ord=2, dim=1)", "vector_norm(diff, ord=1, dim=1)",
     "L1 instead of L2 feature distance", T_FD)
_add("fd_mean_over_all", "fd", F,
     "return total / mask.sum().clamp_min(1).to(total.dtype)", "return total / mask.numel()",
     "FD averaged over all locations instead of the selected ones", T_FD)
_add("fd_default_without_rider", "fd", "vidda/config/schema.py",
     "(6, 7, 11, 12, 13, 14, 15, 16, 17, 18)", "(6, 7, 11, 13, 14, 15, 16, 17, 18)",
     "default FD classes (GTA/SYNTHIA sources) miss rider", T_FD)

# vidda/uda/mic.py ------------------------------------------------------------------------

F = "vidda/uda/mic.py"
_add("mic_keep_inverted", "mic", F,
     "keep = (u > ratio).float()", "keep = (u < ratio).float()",
     "block mask keeps 70 % instead of 30 %", T_MIC)
_add("mic_grid_floor", "mic", F,
     "max(1, round(h / block)), max(1, round(w / block))",
     "max(1, h // block), max(1, w // block)",
     "block grid rounded down instead of to nearest", T_MIC)
_add("mic_grid_hw_swapped", "mic", F,
     "max(1, round(h / block)), max(1, round(w / block))",
     "max(1, round(w / block)), max(1, round(h / block))",
     "block grid has h and w swapped (square images hide it)", T_MIC)
_add("mic_mask_bilinear", "mic", F,
     'keep = F.interpolate(keep, size=(h, w), mode="nearest")',
     'keep = F.interpolate(keep, size=(h, w), mode="bilinear")',
     "block mask upsampled bilinearly (soft block edges)", T_MIC)

# vidda/uda/augment.py --------------------------------------------------------------------

F = "vidda/uda/augment.py"
_add("augment_brightness_multiplicative", "augment", F,
     "return (x + (_per_sample(factor, x) - 1.0)).clamp(0.0, 1.0)",
     "return (x * _per_sample(factor, x)).clamp(0.0, 1.0)",
     "brightness multiplicative instead of additive", T_AUGMENT)
_add("augment_jitter_gate_inverted", "augment", F,
     "jitter = bool(gates[0] > params.color_jitter_p)",
     "jitter = bool(gates[0] < params.color_jitter_p)",
     "colour jitter applied with probability p instead of 1 - p", T_AUGMENT)
_add("augment_blur_shares_gate", "augment", F,
     "blur = params.blur and bool(gates[1] > 0.5)",
     "blur = params.blur and bool(gates[0] > 0.5)",
     "blur gated by the jitter's draw (one gate for both)", T_AUGMENT)
_add("augment_sigma_range", "augment", F,
     "BLUR_SIGMA_RANGE = (0.15, 1.15)", "BLUR_SIGMA_RANGE = (0.1, 2.0)",
     "blur sigma range (0.1, 2.0) instead of (0.15, 1.15)", T_AUGMENT)
_add("augment_kernel_round", "augment", F,
     "c = math.ceil(0.1 * length)", "c = round(0.1 * length)",
     "blur kernel size from round() instead of ceil()", T_AUGMENT)
_add("augment_pad_replicate", "augment", F,
     'x = F.pad(x, (0, 0, pad, pad), mode="reflect")',
     'x = F.pad(x, (0, 0, pad, pad), mode="replicate")',
     "vertical blur pads by replication instead of reflect-101", T_AUGMENT)
_add("augment_hue_turns", "augment", F,
     "hue = torch.fmod(hue + TWO_PI * _per_sample(factor, x)[:, 0], TWO_PI)",
     "hue = torch.fmod(hue + _per_sample(factor, x)[:, 0], TWO_PI)",
     "hue shift added in turns to an angle in radians", T_AUGMENT)
_add("augment_hsv_green_sign", "augment", F,
     "h_g = 2.0 + (b - r) / safe", "h_g = 2.0 + (r - b) / safe",
     "HSV hue of green-max pixels mirrored", T_AUGMENT)
_add("augment_repeat_clip_order", "augment", F,
     "f.repeat_interleave(t)", "f.repeat(t)",
     "clip factors repeated sample-major instead of clip-major (same for one clip)",
     T_AUGMENT)

# =========================================================================== models
# vidda/models/segmentors/hrda.py ---------------------------------------------------------

F = "vidda/models/segmentors/hrda.py"
_add("hrda_attention_inverted", "hrda", F,
     "return resize(att, size) * s_hr_canvas + resize((1 - att) * s_lr, size)",
     "return resize(1 - att, size) * s_hr_canvas + resize(att * s_lr, size)",
     "scale attention weights the context instead of the detail", T_HRDA)
_add("hrda_fuse_after_upsampling", "hrda", F,
     "return resize(att, size) * s_hr_canvas + resize((1 - att) * s_lr, size)",
     "return resize(att, size) * s_hr_canvas + (1 - resize(att, size)) * resize(s_lr, size)",
     "(1 - A) * S_lr formed after upsampling instead of before", T_HRDA)
_add("hrda_attention_not_masked", "hrda", F,
     "        att = att * mask\n", "",
     "training attention not masked to the detail crop", T_HRDA)
_add("hrda_canvas_xy_swapped", "hrda", F,
     "canvas[:, :, y1 // os_ : y2 // os_, x1 // os_ : x2 // os_] = s_hr",
     "canvas[:, :, x1 // os_ : x2 // os_, y1 // os_ : y2 // os_] = s_hr",
     "detail logits placed with x and y swapped (square crops only)", T_HRDA)
_add("hrda_fused_weight_one", "hrda", F,
     "fused_w = 1.0 - self.hr_loss_weight - self.lr_loss_weight", "fused_w = 1.0",
     "fused loss weight 1 instead of 1 - lambda_hr - lambda_lr", T_HRDA)
_add("hrda_hr_loss_unweighted", "hrda", F,
     "outputs[\"hr\"], crop_label, crop_weight", "outputs[\"hr\"], crop_label, None",
     "HR crop loss ignores the pseudo-label weight", T_HRDA)
_add("hrda_crop_width_from_height", "hrda", F,
     "return y, y + ch, x, x + cw", "return y, y + ch, x, x + ch",
     "detail crop width uses the crop height (square crops hide it)", T_HRDA)
_add("hrda_inference_no_overlap", "hrda", F,
     "stride = (crop[0] // 2, crop[1] // 2) if self.hr_slide_overlap else crop",
     "stride = crop",
     "inference detail windows never overlap (hr_slide_overlap ignored)", T_HRDA)
_add("hrda_mask_scale_inverted", "hrda", F,
     "f = os_ * self.hr_scale / self.lr_scale", "f = os_ * self.lr_scale / self.hr_scale",
     "crop footprint on the context grid scaled by the inverse factor", T_HRDA)

# vidda/models/segmentors/accel.py --------------------------------------------------------

F = "vidda/models/segmentors/accel.py"
_add("accel_inference_negated_flow", "accel", F,
     "            return self.fuse(z_t, z_tk)\n"
     "        return self.fuse(z_t, self.warp(z_tk, z_t, flow, inputs.valid))",
     "            return self.fuse(z_t, z_tk)\n"
     "        return self.fuse(z_t, self.warp(z_tk, z_t, -flow, inputs.valid))",
     "ACCEL inference warps frame t-k's logits with the negated flow", T_ACCEL)
_add("accel_fuse_order", "accel", F,
     "return self.fusion(torch.cat((current, warped), dim=1))",
     "return self.fusion(torch.cat((warped, current), dim=1))",
     "fusion input order [warped; current]: identity init selects the warped frame", T_ACCEL)
_add("accel_invalid_fill_swapped", "accel", F,
     "return torch.where(invalid, current, warped)", "return torch.where(invalid, warped, current)",
     "current-frame fill used where the warp is valid", T_ACCEL)
_add("accel_identity_on_warped", "accel", F,
     "self.fusion.weight[:, :k, 0, 0] = torch.eye(", "self.fusion.weight[:, k:, 0, 0] = torch.eye(",
     "fusion initialised to the identity on the warped half", T_ACCEL)
_add("accel_prev_with_grad", "accel", F,
     "        with torch.no_grad():\n            prev = self.segmentor.forward_train(",
     "        if True:\n            prev = self.segmentor.forward_train(",
     "frame t-k's branch keeps its graph (gradients through frame t-k)", T_ACCEL)
_add("accel_inference_chunks_swapped", "accel", F,
     "z_t, z_tk = self.segmentor.inference(", "z_tk, z_t = self.segmentor.inference(",
     "stacked inference batch split in the wrong order", T_ACCEL)
_add("accel_train_warp_nearest", "accel", F,
     'warped, valid = backward_warp(logits_tk, flow, "bilinear", flow_valid)',
     'warped, valid = backward_warp(logits_tk, flow, "nearest", flow_valid)',
     "logits warped nearest instead of bilinear", T_ACCEL)
_add("accel_slide_drops_validity", "accel", F,
     "valid = s[:, 2 * c + 2] > 0.5 if flow_valid is not None else None", "valid = None",
     "sliding-window prediction loses the flow validity", T_ACCEL)
_add("accel_hr_fusion_inverted", "accel", F,
     'if self.hr_fusion == "original" and', 'if self.hr_fusion == "none" and',
     "hr_fusion switch inverted", T_ACCEL)
_add("accel_train_ignores_flow_valid", "accel", F,
     'out["logits"] = self._fuse_pair(out["logits"], prev["logits"], flow, flow_valid, size)',
     'out["logits"] = self._fuse_pair(out["logits"], prev["logits"], flow, None, size)',
     "training fusion ignores the flow validity", T_ACCEL)

# vidda/models/losses.py ------------------------------------------------------------------

F = "vidda/models/losses.py"
_add("losses_mean_over_valid", "losses", F,
     "    return loss.mean()",
     "    return loss.sum() / (label != IGNORE_INDEX).sum().clamp_min(1)",
     "loss averaged over valid pixels instead of all pixels (mmseg's reduction)", T_LOSSES)
_add("losses_weight_dropped", "losses", F,
     "loss = loss * weight", "loss = loss",
     "pixel weight ignored", T_LOSSES)
_add("losses_resize_nearest", "losses", F,
     'mode="bilinear", align_corners=False)', 'mode="nearest")',
     "logits resized nearest to the label size", T_LOSSES)
_add("losses_align_corners", "losses", F,
     'mode="bilinear", align_corners=False)', 'mode="bilinear", align_corners=True)',
     "logits resized with align_corners=True", T_LOSSES)

# =========================================================================== data, flow, metrics
# vidda/metrics.py ------------------------------------------------------------------------

F = "vidda/metrics.py"
_add("metrics_union_no_minus", "metrics", F,
     "union = gt_px + pred_px - inter", "union = gt_px + pred_px",
     "union counts the intersection twice", T_METRICS)
_add("metrics_uvda_gt_only", "metrics", F,
     "keep = keep & in_subset[None, :]", "keep = keep & in_subset[:, None]",
     "uvda protocol filters on the GT twice instead of GT and prediction", T_METRICS)
_add("metrics_axes_swapped", "metrics", F,
     "gt_px = kept.sum(axis=1)\n    pred_px = kept.sum(axis=0)",
     "gt_px = kept.sum(axis=0)\n    pred_px = kept.sum(axis=1)",
     "GT and prediction counts summed over the wrong axes", T_METRICS)
_add("metrics_numpy_key_transposed", "metrics", F,
     "key = gt.reshape(-1).astype(np.uint16)\n        key <<= 8\n        key |= pred.reshape(-1)",
     "key = pred.reshape(-1).astype(np.uint16)\n        key <<= 8\n        key |= gt.reshape(-1)",
     "numpy histogram key (pred, gt) instead of (gt, pred): transposed matrix", T_METRICS)
_add("metrics_torch_key_transposed", "metrics", F,
     "key = torch.where(ignored, c * c, g * c) + p",
     "key = torch.where(ignored, c * c, p * c) + g",
     "torch (GPU) histogram key transposed", T_METRICS)
_add("metrics_ignore_row_kept", "metrics", F,
     "            counts[self.ignore_index] = 0\n", "",
     "an ignore index inside the class range is counted", T_METRICS)
_add("metrics_nan_as_zero", "metrics", F,
     "return float(finite.mean()) if finite.size else math.nan",
     "return float(np.nan_to_num(values).mean())",
     "mIoU counts undefined classes as 0", T_METRICS)
_add("metrics_macc_from_iou", "metrics", F,
     '"macc": 100.0 * _nanmean(acc),', '"macc": 100.0 * _nanmean(iou),',
     "mAcc reports the mIoU", T_METRICS)
_add("metrics_excluded_iou_kept", "metrics", F,
     "    iou[excluded] = np.nan\n", "",
     "classes outside the subset keep their IoU (and enter mIoU)", T_METRICS)
_add("metrics_generic_pred_off_by_one", "metrics", F,
     "if p.size and (p.min() < 0 or p.max() >= c):",
     "if p.size and (p.min() < 0 or p.max() > c):",
     "generic path accepts prediction id C", T_METRICS)
_add("metrics_merge_overwrites", "metrics", F,
     "self._mat += other._mat.to(self._mat.device)", "self._mat = other._mat.to(self._mat.device)",
     "merge replaces the counts instead of adding", T_METRICS)
_add("metrics_pct_fraction", "metrics", F,
     'return f"{100.0 * value:.2f}"', 'return f"{value:.2f}"',
     "table prints fractions instead of percent", T_METRICS)

# vidda/flow/io.py ------------------------------------------------------------------------

F = "vidda/flow/io.py"
_add("flow_io_kitti_read_uv_swapped", "flow_io", F,
     "raw[:, :, 2:0:-1]", "raw[:, :, 1:3]",
     "KITTI reader swaps u and v", T_FLOW_IO)
_add("flow_io_kitti_write_uv_swapped", "flow_io", F,
     "out = np.stack([valid.astype(np.uint16), enc[:, :, 1], enc[:, :, 0]], axis=2)",
     "out = np.stack([valid.astype(np.uint16), enc[:, :, 0], enc[:, :, 1]], axis=2)",
     "KITTI writer swaps u and v", T_FLOW_IO)
_add("flow_io_kitti_scale", "flow_io", F,
     "KITTI_SCALE = 64.0", "KITTI_SCALE = 32.0",
     "KITTI scale 1/32 px (round trip consistent; only fixed encodings catch it)", T_FLOW_IO)
_add("flow_io_kitti_all_valid", "flow_io", F,
     "valid = raw[:, :, 0] > 0", "valid = raw[:, :, 0] >= 0",
     "KITTI reader marks every pixel valid", T_FLOW_IO)
_add("flow_io_flo_wh_swapped", "flow_io", F,
     'w, h = (int(x) for x in np.frombuffer(data, "<i4", 2, offset=4))',
     'h, w = (int(x) for x in np.frombuffer(data, "<i4", 2, offset=4))',
     ".flo header read as (h, w)", T_FLOW_IO)
_add("flow_io_flo_unknown_valid", "flow_io", F,
     "valid = np.isfinite(flow).all(axis=2) & (np.abs(flow) <= FLO_UNKNOWN).all(axis=2)",
     "valid = np.isfinite(flow).all(axis=2)",
     ".flo 'unknown' values (> 1e9) read as valid flow", T_FLOW_IO)
_add("flow_io_npy_invalid_written", "flow_io", F,
     "np.save(tmp, np.where(ok[..., None], flow, np.nan).astype(np.float32))",
     "np.save(tmp, flow.astype(np.float32))",
     ".npy writer stores invalid vectors as valid values", T_FLOW_IO)
_add("flow_io_kitti_range_check", "flow_io", F,
     "(np.abs(flow) > KITTI_MAX + 0.5 / KITTI_SCALE)", "(np.abs(flow) > 2 * KITTI_MAX)",
     "KITTI writer silently clips vectors beyond +-512 px", T_FLOW_IO)
_add("flow_io_flo_invalid_zero", "flow_io", F,
     "body = np.where(valid[..., None], flow, np.float32(1e10))",
     "body = np.where(valid[..., None], flow, np.float32(0.0))",
     ".flo writer stores invalid vectors as zero motion", T_FLOW_IO)

# vidda/flow/warp.py ----------------------------------------------------------------------

F = "vidda/flow/warp.py"
_add("warp_grid_xy_swapped", "warp", F,
     "grid = torch.stack((xn, yn), dim=-1)", "grid = torch.stack((yn, xn), dim=-1)",
     "grid_sample grid holds (y, x) instead of (x, y)", T_WARP)
_add("warp_sample_minus_flow", "warp", F,
     "view(1, 1, w) + flow[:, 0]", "view(1, 1, w) - flow[:, 0]",
     "sample point p - u instead of p + u (horizontal)", T_WARP)
_add("warp_v_from_u", "warp", F,
     "view(1, h, 1) + flow[:, 1]", "view(1, h, 1) + flow[:, 0]",
     "vertical sample coordinate uses u", T_WARP)
_add("warp_inside_x_off_by_one", "warp", F,
     "(xs <= w - 1 + tol)", "(xs <= w + tol)",
     "points up to x = W count as inside (padding blended in)", T_WARP)
_add("warp_inside_y_uses_w", "warp", F,
     "(ys <= h - 1 + tol)", "(ys <= w - 1 + tol)",
     "vertical inside rule uses the width", T_WARP)
_add("warp_align_corners_false", "warp", F,
     'padding_mode="border", align_corners=True', 'padding_mode="border", align_corners=False',
     "grid_sample with align_corners=False for a grid built for True", T_WARP)
_add("warp_flow_valid_ignored", "warp", F,
     "    if valid is not None:\n        ok &= valid\n", "",
     "backward_warp ignores the flow validity mask", T_WARP)
_add("warp_invalid_not_zeroed", "warp", F,
     "warped = warped.masked_fill(~ok[:, None], 0.0).to(x.dtype)", "warped = warped.to(x.dtype)",
     "invalid warped pixels keep border-padded values instead of 0", T_WARP)
_add("warp_labels_bilinear", "warp", F,
     'labels[:, None].float(), flow, "nearest", valid',
     'labels[:, None].float(), flow, "bilinear", valid',
     "labels interpolated bilinearly then rounded (mixed classes at edges)", T_WARP)
_add("warp_fb_sign", "warp", F,
     "err = (f + back).square().sum(dim=1)", "err = (f - back).square().sum(dim=1)",
     "forward-backward check uses f - f' instead of f + f'", T_WARP)
_add("warp_original_rounds", "warp", F,
     "index = ys.long() * w + xs.long()", "index = ys.round().long() * w + xs.round().long()",
     "original warp rounds instead of truncating", T_WARP)
_add("warp_original_bottom_round", "warp", F,
     "return 840 if height == 1024 else int(height * 0.7)",
     "return 840 if height == 1024 else round(height * 0.7)",
     "original bottom limit rounded (720 -> 504) instead of truncated (503)", T_WARP)
_add("warp_original_zero_flow_kept", "warp", F,
     "out = out.masked_fill((duplicated | zero)[:, None], IGNORE_INDEX)",
     "out = out.masked_fill(duplicated[:, None], IGNORE_INDEX)",
     "original warp no longer invalidates zero-flow pixels", T_WARP)

# vidda/data/transforms.py ----------------------------------------------------------------

F = "vidda/data/transforms.py"
_add("transforms_flow_scale_uv_swapped", "transforms", F,
     "out *= np.array([self.dst[1] / self.src[1], self.dst[0] / self.src[0]], np.float32)",
     "out *= np.array([self.dst[0] / self.src[0], self.dst[1] / self.src[1]], np.float32)",
     "flow rescaling on resize with the u and v scale factors swapped", T_TRANSFORMS)
_add("transforms_flip_negates_v", "transforms", F,
     'out["flows"][:, 0] *= -1', 'out["flows"][:, 1] *= -1',
     "flip negates v instead of u", T_TRANSFORMS)
_add("transforms_flip_keeps_flow_valid", "transforms", F,
     '("frames", "label", "flows", "flow_valid", "pl_valid")',
     '("frames", "label", "flows", "pl_valid")',
     "flip does not mirror the flow validity mask", T_TRANSFORMS)
_add("transforms_label_linear", "transforms", F,
     "label = cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST)",
     "label = cv2.resize(label, size[::-1], interpolation=cv2.INTER_LINEAR)",
     "label resized bilinearly (invented class ids at edges)", T_TRANSFORMS)
_add("transforms_keep_ratio_max", "transforms", F,
     "scale = min(long_edge / max(h, w), short_edge / min(h, w))",
     "scale = max(long_edge / max(h, w), short_edge / min(h, w))",
     "keep-ratio resize uses the non-limiting edge", T_TRANSFORMS)
_add("transforms_flow_hole_valid", "transforms", F,
     "            ok &= den > 0\n", "",
     "resampled flow with no valid neighbour reported valid (zero motion)", T_TRANSFORMS)
_add("transforms_pad_label_zero", "transforms", F,
     '"label": pad(sample["label"], IGNORE_INDEX),', '"label": pad(sample["label"], 0),',
     "padding labelled road (0) instead of ignore", T_TRANSFORMS)
_add("transforms_pad_flow_valid", "transforms", F,
     "pad(f[1], False)", "pad(f[1], True)",
     "padded flow marked valid", T_TRANSFORMS)
_add("transforms_crop_last_offset", "transforms", F,
     "y = int(rng.integers(0, h - ch + 1))", "y = int(rng.integers(0, h - ch))",
     "random crop never reaches the last row offset (fails when crop height = height)",
     T_TRANSFORMS)
_add("transforms_cat_max_counts_ignore", "transforms", F,
     "            counts[IGNORE_INDEX] = 0\n", "",
     "category-max-ratio rule counts ignore pixels as a class", T_TRANSFORMS)
_add("transforms_margin_right_uses_left", "transforms", F,
     "mask[:, w - right :] = False", "mask[:, w - left :] = False",
     "right pseudo-label margin uses the left margin's width", T_TRANSFORMS)
_add("transforms_affine_no_half_pixel", "transforms", F,
     "[[rx, 0.0, (x0 + 0.5) * rx - 0.5], [0.0, ry, (y0 + 0.5) * ry - 0.5]]",
     "[[rx, 0.0, x0 * rx], [0.0, ry, y0 * ry]]",
     "fused resize-crop drops OpenCV's half-pixel centre mapping", T_TRANSFORMS)
_add("transforms_region_ratio_swapped", "transforms", F,
     "ry, rx = src[0] / dst[0], src[1] / dst[1]", "rx, ry = src[0] / dst[0], src[1] / dst[1]",
     "resize ratios of rows and columns swapped (uniform scale hides it)", T_TRANSFORMS)

# vidda/data/convert*.py ------------------------------------------------------------------

F = "vidda/data/convert_labels.py"
_add("convert_van_flag_ignored", "label_convert", F,
     "lut[VIPER_VAN_ID] = VIPER_TRAIN_TRAIN_ID", "lut[VIPER_VAN_ID] = 255",
     "viper_van_as_train ignored: van always ignored", T_CONVERT)
_add("convert_viper_light_sign_swapped", "label_convert", F,
     '(13, "trafficlight", 6), (14, "trafficsign", 7),',
     '(13, "trafficlight", 7), (14, "trafficsign", 6),',
     "VIPER traffic light and traffic sign trainIds swapped", T_CONVERT)
_add("convert_synthia_bicycle", "label_convert", F,
     '(11, "bicycle", 12)', '(11, "bicycle", 18)',
     "SYNTHIA-Seq bicycle (cyclist) mapped to bicycle instead of rider", T_CONVERT)
_add("convert_r_channel_is_b", "label_convert", F,
     "return raw[..., 2]  # OpenCV order is B, G, R[, A]",
     "return raw[..., 0]  # OpenCV order is B, G, R[, A]",
     "SYNTHIA class id read from the B channel", T_CONVERT)
_add("convert_equal_mtime_stale", "label_convert", F,
     "return dst.stat().st_mtime_ns >= src.stat().st_mtime_ns",
     "return dst.stat().st_mtime_ns > src.stat().st_mtime_ns",
     "outputs with the source's mtime rewritten", T_CONVERT)
_add("convert_unknown_values_accepted", "label_convert", F,
     "if v >= 256 or not job.known[v]]", "if v >= 256]",
     "label values outside the class table silently mapped to 255", T_CONVERT)
F = "vidda/data/convert.py"
_add("convert_viper_every_frame", "label_convert", F,
     r'_VIPER_FRAME = re.compile(r"[^_]+_\d*0\.png")',
     r'_VIPER_FRAME = re.compile(r"[^_]+_\d*\.png")',
     "VIPER converts every frame, not only those ending in 0", T_CONVERT)
_add("convert_stats_zero_classes", "label_convert", F,
     "for c, n in enumerate(counts) if n > 0}", "for c, n in enumerate(counts) if n >= 0}",
     "statistics list classes with 0 pixels", T_CONVERT)

# vidda/data/sampling.py ------------------------------------------------------------------

F = "vidda/data/sampling.py"
_add("sampling_temperature_multiplies", "sampling", F,
     "logits = (1.0 - freq) / cfg.class_temp", "logits = (1.0 - freq) * cfg.class_temp",
     "RCS temperature multiplies instead of divides", T_SAMPLING)
_add("sampling_favours_frequent", "sampling", F,
     "logits = (1.0 - freq) / cfg.class_temp", "logits = freq / cfg.class_temp",
     "RCS favours frequent classes", T_SAMPLING)
_add("sampling_min_pixels_inclusive", "sampling", F,
     "if counts.get(c, 0) > cfg.min_pixels)", "if counts.get(c, 0) >= cfg.min_pixels)",
     "clips with exactly min_pixels of a class are candidates", T_SAMPLING)
_add("sampling_crop_ratio_ignored", "sampling", F,
     "> self.cfg.min_pixels * self.cfg.min_crop_ratio", "> self.cfg.min_pixels",
     "re-crop rule ignores min_crop_ratio", T_SAMPLING)
_add("sampling_seed_collision", "sampling", F,
     "rng = np.random.default_rng([self.seed, k])", "rng = np.random.default_rng(self.seed + k)",
     "sample seeds collide across runs (seed s, k+1 == seed s+1, k); still deterministic",
     T_SAMPLING)
_add("sampling_rank_layout", "sampling", F,
     "base = (step * self.world + self.rank) * self.batch_size",
     "base = (step + self.rank * self.world) * self.batch_size",
     "ranks read overlapping sample numbers", T_SAMPLING)
_add("sampling_len_without_batch", "sampling", F,
     "return max(self.stop - self.start, 0) * self.batch_size",
     "return max(self.stop - self.start, 0)",
     "sampler length counts steps, not samples", T_SAMPLING)
_add("sampling_recrop_never_stops", "sampling", F,
     "            if self.rcs.enough(sample[\"label\"], c):\n                break\n",
     "",
     "RCS always re-crops ten times and keeps the last crop", T_SAMPLING)

# =========================================================================== engine
# vidda/schedule.py ----------------------------------------------------------------------------

F = "vidda/schedule.py"
_add("schedule_poly_off_by_one", "schedule", F,
     "factor = max(1.0 - step / total, 0.0) ** power",
     "factor = max(1.0 - (step + 1) / total, 0.0) ** power",
     "poly decay one iteration ahead", T_SCHEDULE)
_add("schedule_warmup_replaces", "schedule", F,
     "factor *= 1.0 - (1.0 - step / warmup) * (1.0 - ratio)",
     "factor = 1.0 - (1.0 - step / warmup) * (1.0 - ratio)",
     "warm-up replaces the decayed factor instead of scaling it", T_SCHEDULE)
_add("schedule_set_lr_compounds", "schedule", F,
     'group["lr"] = group["initial_lr"] * factor', 'group["lr"] = group["lr"] * factor',
     "set_lr compounds on the current lr instead of the initial one", T_SCHEDULE)

# vidda/engine/optim.py -------------------------------------------------------------------

F = "vidda/engine/optim.py"
_add("optim_head_mult_dropped", "optim_groups", F,
     '"lr": cfg.lr * cfg.head_lr_mult,', '"lr": cfg.lr,',
     "decoder trains at the base lr (x10 missing)", T_OPTIM)
_add("optim_norm_decay_kept", "optim_groups", F,
     '{"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0,',
     '{"params": no_decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay,',
     "MiT norms keep weight decay", T_OPTIM)
_add("optim_accel_prefix_not_removed", "optim_groups", F,
     'if name.removeprefix("segmentor.").split(".")[0] in DECODER_MODULES:',
     'if name.split(".")[0] in DECODER_MODULES:',
     "ACCEL's decoder (segmentor.decode_head) trains at the base lr", T_OPTIM)
_add("optim_norm_before_decoder", "optim_groups", F,
     '        if name.removeprefix("segmentor.").split(".")[0] in DECODER_MODULES:\n'
     "            decoder.append(p)\n"
     '        elif "norm" in name:\n'
     "            no_decay.append(p)\n",
     '        if "norm" in name:\n'
     "            no_decay.append(p)\n"
     '        elif name.removeprefix("segmentor.").split(".")[0] in DECODER_MODULES:\n'
     "            decoder.append(p)\n",
     "decoder norm parameters matched as backbone norms (base lr, no decay)", T_OPTIM)
_add("optim_disc_group_no_decay", "optim_groups", F,
     '"weight_decay": cfg.weight_decay, "name": name,',
     '"weight_decay": 0.0, "name": name,',
     "disc_in_main_optimizer group without weight decay", T_OPTIM)
_add("optim_betas_reversed", "optim_groups", F,
     "betas=tuple(cfg.betas)", "betas=tuple(reversed(cfg.betas))",
     "AdamW betas reversed", T_OPTIM)

# vidda/engine/checkpoint.py --------------------------------------------------------------

F = "vidda/engine/checkpoint.py"
_add("checkpoint_written_in_place", "checkpoint", F,
     "        with open(tmp, \"wb\") as f:\n"
     "            torch.save(state, f)\n"
     "            f.flush()\n"
     "            os.fsync(f.fileno())\n"
     "        os.replace(tmp, path)\n",
     "        with open(path, \"wb\") as f:\n"
     "            torch.save(state, f)\n"
     "            f.flush()\n"
     "            os.fsync(f.fileno())\n",
     "save_checkpoint writes in place (directly to path) instead of atomically", T_CHECKPOINT)
_add("checkpoint_no_fsync", "checkpoint", F,
     "            os.fsync(f.fileno())\n", "",
     "checkpoint renamed before its bytes reach the disk (no fsync)", T_CHECKPOINT)
_add("checkpoint_tmp_left_behind", "checkpoint", F,
     "        tmp.unlink(missing_ok=True)\n", "        pass\n",
     "a failed save leaves its temporary file behind", T_CHECKPOINT)
_add("checkpoint_unsafe_load", "checkpoint", F,
     'torch.load(path, map_location="cpu", weights_only=True)',
     'torch.load(path, map_location="cpu", weights_only=False)',
     "checkpoints unpickled with weights_only=False (arbitrary objects)", T_CHECKPOINT)
_add("checkpoint_torch_rng_not_restored", "checkpoint", F,
     '    torch.set_rng_state(state["torch"])\n', "",
     "resume does not restore torch's CPU RNG", T_CHECKPOINT)
_add("checkpoint_clean_live_writers", "checkpoint", F,
     "if pid != me and not _writer_gone(pid):", "if pid != me and _writer_gone(pid):",
     "stale-temporary cleaner deletes live writers' files and keeps dead ones", T_CHECKPOINT)

# =========================================================================== config layer

T_CONFIG = ["tests/test_validate.py", "tests/test_registry.py", "tests/test_config.py"]

F = "vidda/config/load.py"
_add("config_literal_not_checked", "config", F,
     "if not (isinstance(item, str) and item in allowed):", "if not isinstance(item, str):",
     "a Literal field accepts any string", T_CONFIG)
_add("config_literal_list_first_item_only", "config", F,
     "items = value if is_list else [value]", "items = value[:1] if is_list else [value]",
     "only the first item of a list-of-Literal field is checked", T_CONFIG)
_add("config_interpolation_not_skipped", "config", F,
     'if isinstance(item, str) and "${" in item:\n            continue\n', "",
     "an unresolved ${...} interpolation is refused as a bad choice", T_CONFIG)

F = "vidda/config/validate.py"
_add("validate_no_target_loss_either", "config", F,
     "if r.enabled and r.l_warp == 0 and r.l_mix == 0:",
     "if r.enabled and (r.l_warp == 0 or r.l_mix == 0):",
     "refinement refused when only one of l_warp / l_mix is 0 (the paper runs use l_mix = 0)",
     T_CONFIG)
_add("validate_slide_needs_both", "config", F,
     "(len(e.crop_size) != 2 or len(e.stride) != 2)",
     "(len(e.crop_size) != 2 and len(e.stride) != 2)",
     "eval.mode=slide accepted with a crop size but no stride (or the reverse)", T_CONFIG)
_add("validate_fp16_rule_on_bf16", "config", F,
     'if disc_in_main and cfg.train.amp == "fp16":', 'if disc_in_main and cfg.train.amp == "bf16":',
     "the double-unscale rule refuses bf16 instead of fp16", T_CONFIG)
_add("validate_video_without_dacs", "config", F,
     'if m.name != "dacs":', 'if m.name == "target_only":',
     "video techniques accepted with source_only", T_CONFIG)

F = "vidda/config/schema.py"
_add("schema_exclusive_any", "config", F,
     "if set(EXCLUSIVE_STRATEGIES) <= set(strategies):",
     "if set(EXCLUSIVE_STRATEGIES) & set(strategies):",
     "class_thing (or class_stuff) alone refused as if both were given",
     ["tests/test_validate.py", "tests/test_refine.py"])

F = "vidda/config/registry.py"
_add("registry_known_unsorted", "config", F,
     "known: {', '.join(sorted(table))}", "known: {', '.join(table)}",
     "the known names listed in table order, not sorted", T_CONFIG)
_add("registry_key_prefix_always", "config", F,
     'where = f"{key}: " if key else ""', 'where = f"{key}: "',
     "an empty key still prints ': ' before the message", T_CONFIG)

F = "vidda/models/segmentors/accel.py"
_add("accel_predict_two_frame_always", "accel", F,
     "return not self.compat_single_frame_eval", "return True",
     "compat.accel_single_frame_eval still asks callers for frame t-k and the flow",
     [IFACE, "tests/test_infer.py", STEP])

F = "vidda/models/segmentors/inputs.py"
_add("inputs_map_frames_skips_prev", "clip_view", F,
     "prev=None if self.prev is None else fn(self.prev)", "prev=self.prev",
     "Pair.map_frames leaves frame t-k untouched", T_CLIP_VIEW)


F = "vidda/engine/distributed.py"
_add("distributed_destroys_callers_group", "checkpoint", F,
     "        if owned:\n            cleanup(info)", "        cleanup(info)",
     "distributed_run destroys a process group its caller had joined", ["tests/test_ddp.py"])


LF = ["tests/test_label_free.py"]
F = "vidda/label_free.py"
_add("label_free_threshold_strict", "label_free", F,
     "((top >= self.threshold) * w).sum()", "((top > self.threshold) * w).sum()",
     "a pixel exactly at the threshold is not counted as confident", LF)
_add("label_free_entropy_sign", "label_free", F,
     "ent = -(p * logp).sum(dim=1)", "ent = (p * logp).sum(dim=1)",
     "entropy with the wrong sign", LF)
_add("label_free_mask_ignored", "label_free", F,
     "w = torch.ones_like(top) if valid is None else valid.to(top.dtype)",
     "w = torch.ones_like(top)",
     "the valid mask is ignored", LF)
_add("label_free_im_no_marginal", "label_free", F,
     '"im": 100.0 * (marginal - ent / n) / log_c,', '"im": 100.0 * (1.0 - ent / n / log_c),',
     "information maximisation without the class-marginal term", LF)

F = "vidda/engine/selection.py"
_add("selection_entropy_not_negated", "label_free", F,
     'scores["entropy"] = -_number(free["entropy"])',
     'scores["entropy"] = _number(free["entropy"])',
     "selecting by entropy picks the least certain checkpoint", LF)

F = "vidda/config/derived.py"
_add("best_by_auto_ignores_labels", "label_free", F,
     "    if not has_labels(cfg.data.val):\n        return LABEL_FREE_DEFAULT\n", "",
     "best_by auto selects by mIoU on an unlabelled val set", LF)

F = "vidda/config/validate.py"
_add("validate_oracle_without_labels", "label_free", F,
     "if oracle and m.name == \"dacs\" and not has_labels(data.target):",
     "if oracle and m.name == \"dacs\" and False:",
     "oracle refinement accepted on a video target", LF)

F = "vidda/engine/init_weights.py"
_add("init_accel_shared_skipped", "label_free", F,
     'targets.append(("ACCEL\'s shared network", shared))', "pass",
     "a single-frame checkpoint cannot start ACCEL's shared network",
     ["tests/test_init_weights.py"])
_add("init_shapes_unchecked", "label_free", F,
     'for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):',
     'for what, items in (("missing", missing), ("unexpected", unexpected)):',
     "shape differences are not reported (nor refused)", ["tests/test_init_weights.py"])
