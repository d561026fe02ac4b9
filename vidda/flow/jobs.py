"""Which flows a dataset config reads, as ``FlowJob`` s for ``vidda flow compute``.

For each entry and each offset o that has a flow root, the job is the backward flow of frame o
into frame o − 1 (canonical offsets; × the dataset's frame step), written where the loader will
look: ``<flow root>/<name at o><flow suffix>``.
"""

from __future__ import annotations

from vidda.config.schema import DatasetConfig
from vidda.data.build import dataset_layout, flow_roots
from vidda.data.clips import missing_summary, scan_index
from vidda.data.layout import DatasetError, shift_frame
from vidda.flow.compute import FlowJob


def flow_jobs(cfg: DatasetConfig, key: str = "dataset") -> list[FlowJob]:
    """Every flow file ``cfg`` reads, with the two frames it is computed from.

    Raises:
        DatasetError: frames of the split are missing (by path and count) or offsets are bad.
    """
    layout = dataset_layout(cfg, key)
    roots = flow_roots(cfg, layout, key)
    entries, missing, total = scan_index(layout, cfg.offsets, [None] * len(cfg.offsets), False)
    if len(entries) < total:
        raise DatasetError(f"{key}: frames are missing, so their flows cannot be computed: "
                           f"{missing_summary(missing)}")  # fmt: skip
    step = layout.frame_step
    jobs: dict = {}
    for entry in entries:
        for o, root in zip(cfg.offsets, roots, strict=True):
            if root is None:
                continue
            name = shift_frame(entry.name, o * step)
            prev = layout.image(shift_frame(entry.name, (o - 1) * step))
            out = layout.flow(root, name)
            jobs[out] = FlowJob(frame=layout.image(name), prev=prev, out=out)
    return list(jobs.values())  # an output shared by two entries is computed once
