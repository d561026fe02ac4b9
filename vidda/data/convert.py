"""Dataset label conversion to Cityscapes trainIds and rare-class-sampling statistics.

``convert_dataset(kind, root)`` prepares one dataset as downloaded (docs/datasets.md):

* ``viper``: ``{train,val}/cls/<seq>/<seq>_<frame5>.png`` (palette indices = VIPER ids)
  → ``<seq>_<frame5>_labelTrainIds.png``;
* ``synthia-seq``: ``GT/LABELS/Stereo_Left/Omni_F/<frame6>.png`` (8/16-bit, id in R)
  → ``<frame6>_labelTrainIds_updated.png``;
* ``cityscapes``: ``gtFine/{train,val}/<city>/*_gtFine_labelIds.png``
  → ``*_gtFine_labelTrainIds.png``;
* ``bdd``: ``{train,val,train_orig_10k,val_orig_10k}/labels/*.png`` are trainIds already: validated,
  never rewritten.

Which files: the entries of the split files (``ROOT/splits/…``, or ``split_files``) where a split
has one, otherwise every label file of the original converter's rule (VIPER: frames ending in 0;
SYNTHIA-Seq: every ``<digits>.png``). Outputs are 8-bit single-channel PNGs written atomically; a
file whose output is not older than its source is skipped (its output is still read for the
statistics and its value set checked).

Label values outside a dataset's class table are errors, not silently ignored: VIPER ids > 31 and
SYNTHIA-Seq ids > 15 (the original's placeholder ids 40–47 never occur in the data, so such a value
means a wrong or damaged file), BDD values outside 0..18, 255. Cityscapes labelIds outside the
official table map to 255, as cityscapesScripts does.

Statistics (the inputs of rare-class sampling) are written to ROOT for the training labels, by
default for the source datasets (VIPER, SYNTHIA-Seq) only: ``sample_class_stats.json``,
``sample_class_stats_dict.json`` and ``samples_with_class.json`` in the original's format, with
file paths relative to ROOT. With a training split file they cover exactly its entries (the
original also counted frames outside the split, which sampling then could not load).

The lookup table used for each kind is recorded in ``ROOT/.vidda_convert.json``; when it changes
(e.g. ``viper_van_as_train`` toggled) every output is rewritten even without ``overwrite``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vidda.classes import CLASSES, ID_TO_TRAIN_ID, NUM_CLASSES
from vidda.data.convert_labels import (
    SYNTHIA_SEQ_CLASSES,
    SYNTHIA_SEQ_TO_TRAIN_ID,
    TRAIN_IDS,
    VIPER_CLASSES,
    VIPER_TO_TRAIN_ID,
    ConvertError,
    LabelJob,
    LabelResult,
    known_mask,
    run_job,
    viper_lut,
)

__all__ = [
    "KINDS",
    "STATS_FILES",
    "SYNTHIA_SEQ_CLASSES",
    "SYNTHIA_SEQ_TO_TRAIN_ID",
    "VIPER_CLASSES",
    "VIPER_TO_TRAIN_ID",
    "ConvertError",
    "ConvertReport",
    "convert_dataset",
    "viper_lut",
    "write_class_stats",
]

KINDS: tuple[str, ...] = ("viper", "synthia-seq", "cityscapes", "bdd")
STATS_DEFAULT: dict[str, bool] = {
    "viper": True, "synthia-seq": True, "cityscapes": False, "bdd": False,
}  # fmt: skip
"""Whether statistics are written when ``stats`` is not given: for the source datasets."""

STATS_FILES: tuple[str, ...] = (
    "sample_class_stats.json", "sample_class_stats_dict.json", "samples_with_class.json",
)  # fmt: skip
STAMP_FILE = ".vidda_convert.json"

VIPER_SPLITS = ("train", "val")
CITYSCAPES_SPLITS = ("train", "val")
BDD_LABEL_DIRS = ("train", "val", "train_orig_10k", "val_orig_10k")
SYNTHIA_LABEL_DIR = Path("GT", "LABELS", "Stereo_Left", "Omni_F")

DEFAULT_SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "viper": ("splits/train.txt", "splits/val.txt"),
    "synthia-seq": ("splits/train.txt",),
    "cityscapes": ("splits/train.txt", "splits/val.txt"),
    "bdd": ("splits/valid_imgs_train.txt", "splits/valid_imgs_val.txt"),
}

_KIND_ALIASES = {
    "viper-seq": "viper", "synthia": "synthia-seq", "synthiaseq": "synthia-seq",
    "cityscapes-seq": "cityscapes", "bddvid": "bdd", "bdd-vid": "bdd",
}  # fmt: skip
_VIPER_FRAME = re.compile(r"[^_]+_\d*0\.png")  # the original's rule: frames whose number ends in 0
_SYNTHIA_FRAME = re.compile(r"\d+\.png")
_SPLIT_TOKEN = re.compile(r"(train|val)\d*")


# --------------------------------------------------------------------------- report


@dataclass
class ConvertReport:
    """What ``convert_dataset`` did.

    ``class_pixels`` counts pixels per trainId (0..18; 255 never counted) over every label file
    handled, converted, skipped or validated. ``stats_samples`` is the number of label files the
    statistics cover.
    """

    kind: str
    root: Path
    converted: int = 0
    skipped: int = 0
    validated: int = 0
    stats_files: list[Path] = field(default_factory=list)
    stats_samples: int = 0
    class_pixels: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few human-readable lines for the command line."""
        lines = [
            f"{self.kind} at {self.root}: {self.converted} converted, {self.skipped} up to date, "
            f"{self.validated} validated"
        ]
        if self.stats_files:
            names = ", ".join(p.name for p in self.stats_files)
            lines.append(f"class statistics of {self.stats_samples} training labels: {names}")
        total = sum(self.class_pixels.values())
        if total:
            lines.append("pixels per class (ignore excluded):")
            for c, n in sorted(self.class_pixels.items()):
                lines.append(f"  {c:2d} {CLASSES[c]:<14} {n:>14d}  {100.0 * n / total:6.2f}%")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def convert_dataset(
    kind: str,
    root: str | os.PathLike,
    *,
    workers: int = 0,
    split_files: Sequence[str | os.PathLike] | None = None,
    viper_van_as_train: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    stats: bool | None = None,
) -> ConvertReport:
    """Convert (or, for BDD, validate) a dataset's labels and write its class statistics.

    Args:
        kind: ``"viper"``, ``"synthia-seq"``, ``"cityscapes"`` or ``"bdd"``.
        root: the dataset root as laid out in docs/datasets.md (e.g. ``<viper_root>``).
        workers: worker processes (started with ``spawn``: a script calling this with workers > 0
            needs the ``if __name__ == "__main__":`` guard); 0 converts in this process.
        split_files: split files to use instead of the defaults under ``ROOT/splits/``. For VIPER,
            Cityscapes and BDD the name says the split (a ``train``/``val`` word, e.g.
            ``valid_imgs_train.txt``); SYNTHIA-Seq has one split.
        viper_van_as_train: VIPER van (25) → train (16) as the original; False → 255.
        overwrite: rewrite outputs even when they are up to date.
        progress: show a tqdm progress bar.
        stats: write the RCS statistics of the training labels; None: only for VIPER and
            SYNTHIA-Seq (the source datasets).

    Raises:
        ConvertError: unknown kind, missing root, no label files, a missing split entry, or bad
            label files (all of them are listed, up to ten).
    """
    kind = _normalise_kind(kind)
    root = _check_root(root)
    if not isinstance(workers, int) or workers < 0:
        raise ConvertError(f"workers must be an integer >= 0, got {workers!r}")
    want_stats = STATS_DEFAULT[kind] if stats is None else bool(stats)
    splits = _load_splits(kind, root, split_files)
    plan = _PLANNERS[kind](root, splits, _Options(viper_van_as_train, want_stats))

    report = ConvertReport(kind=kind, root=root)
    stamp = _lut_stamp(plan.jobs)
    force = overwrite
    if stamp and _stamp_changed(root, kind, stamp) and not overwrite:
        force = True
        report.warnings.append(
            f"the {kind} class mapping differs from the one recorded in {root / STAMP_FILE}; "
            "every output was rewritten"
        )
    results = _run_jobs(plan.jobs, workers, force, progress, desc=f"{kind} labels")
    _raise_failures(results)
    if stamp:
        _write_stamp(root, kind, stamp)
    _tally(report, results)
    if want_stats:
        _write_stats(report, plan, results)
    return report


def _normalise_kind(kind: str) -> str:
    name = str(kind).strip().lower().replace("_", "-")
    name = _KIND_ALIASES.get(name, name)
    if name not in KINDS:
        raise ConvertError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    return name


def _check_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise ConvertError(f"dataset root not found: {path}")
    if not path.is_dir():
        raise ConvertError(f"dataset root is not a folder: {path}")
    return path


# --------------------------------------------------------------------------- split files


@dataclass(frozen=True)
class _Split:
    """One split's entries and the file(s) they came from (for messages)."""

    source: str
    entries: tuple[str, ...]


def _load_splits(
    kind: str, root: Path, split_files: Sequence[str | os.PathLike] | None
) -> dict[str, _Split]:
    """Split name → entries, from ``split_files`` or the kind's default files that exist."""
    if split_files is None:
        paths = [root / rel for rel in DEFAULT_SPLIT_FILES[kind] if (root / rel).is_file()]
    else:
        paths = [Path(p).expanduser() for p in split_files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ConvertError(f"split file(s) not found: {', '.join(missing)}")
    splits: dict[str, _Split] = {}
    for path in paths:
        name = "train" if kind == "synthia-seq" else _split_name(path)
        entries = _read_split(path)
        if name in splits:
            old = splits[name]
            entries = old.entries + entries
            path_desc = f"{old.source} + {path}"
        else:
            path_desc = str(path)
        splits[name] = _Split(path_desc, tuple(dict.fromkeys(entries)))
    return splits


def _split_name(path: Path) -> str:
    """``train`` or ``val`` from a split file's name (``val.txt``, ``valid_imgs_train.txt``)."""
    tokens = re.split(r"[^a-z0-9]+", path.stem.lower())
    found = {m.group(1) for t in tokens if (m := _SPLIT_TOKEN.fullmatch(t))}
    if len(found) != 1:
        raise ConvertError(
            f"{path}: cannot tell from its name whether this split file is 'train' or 'val'; "
            "name it e.g. train.txt or val.txt"
        )
    return found.pop()


def _read_split(path: Path) -> tuple[str, ...]:
    """Stripped non-empty lines; a trailing image extension (``000001.png``) is dropped."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        base, ext = os.path.splitext(entry)
        if ext.lower() in (".png", ".jpg", ".jpeg"):
            entry = base
        if Path(entry).is_absolute() or ".." in Path(entry).parts:
            raise ConvertError(f"{path}:{number}: split entry {entry!r} must be a relative name")
        entries.append(entry)
    if not entries:
        raise ConvertError(f"split file {path} holds no entries")
    return tuple(entries)


def _entry_files(split: _Split, to_path: Callable[[str], Path], what: str) -> list[Path]:
    """The label file of every split entry; raises listing the entries whose file is missing."""
    files = [to_path(e) for e in split.entries]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ConvertError(
            f"{len(missing)} of {len(files)} entries of split file {split.source} have no {what} "
            f"label file, e.g. {', '.join(missing[:3])}"
        )
    return files


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _Options:
    """The switches that change what a planner selects or how labels map."""

    viper_van_as_train: bool
    stats: bool


@dataclass
class _Plan:
    """The files of one run: jobs (sorted by source) and the sources the statistics cover."""

    jobs: list[LabelJob]
    stats_sources: list[Path]
    root: Path

    def stats_name(self, job: LabelJob) -> str:
        """The statistics' ``file``: the trainId label (output, or the source for BDD)."""
        return (job.dst or job.src).relative_to(self.root).as_posix()


def _no_files(kind: str, where: Iterable[Path | str]) -> ConvertError:
    looked = "; ".join(str(w) for w in where)
    return ConvertError(f"no {kind} label files found; looked for {looked}")


def _plan_viper(root: Path, splits: dict[str, _Split], opts: _Options) -> _Plan:
    lut, known = viper_lut(opts.viper_van_as_train), known_mask(range(len(VIPER_CLASSES)))
    by_split: dict[str, list[Path]] = {}
    for name in VIPER_SPLITS:
        cls_dir = root / name / "cls"
        if name in splits:
            by_split[name] = _entry_files(
                splits[name], lambda e, d=cls_dir: d / f"{e}.png", "VIPER"
            )
        elif cls_dir.is_dir():
            by_split[name] = [p for p in cls_dir.glob("*/*.png") if _VIPER_FRAME.fullmatch(p.name)]
    sources = sorted(set(itertools.chain.from_iterable(by_split.values())))
    if not sources:
        raise _no_files(
            "VIPER", [root / s / "cls" / "<seq>" / "<seq>_<frame>0.png" for s in VIPER_SPLITS]
        )
    jobs = [
        LabelJob(src, src.with_name(f"{src.stem}_labelTrainIds.png"), "index", lut, known,
                 f"VIPER class ids (0..{len(VIPER_CLASSES) - 1})")
        for src in sources
    ]  # fmt: skip
    return _Plan(jobs, sorted(by_split.get("train", [])), root)


def _plan_synthia(root: Path, splits: dict[str, _Split], opts: _Options) -> _Plan:
    label_dir = root / SYNTHIA_LABEL_DIR
    if "train" in splits:
        sources = _entry_files(splits["train"], lambda e: label_dir / f"{e}.png", "SYNTHIA-Seq")
    else:
        files = label_dir.glob("*.png") if label_dir.is_dir() else []
        sources = [p for p in files if _SYNTHIA_FRAME.fullmatch(p.name)]
    sources = sorted(set(sources))
    if not sources:
        raise _no_files("SYNTHIA-Seq", [label_dir / "<frame6>.png"])
    known = known_mask(range(len(SYNTHIA_SEQ_CLASSES)))
    jobs = [
        LabelJob(src, src.with_name(f"{src.stem}_labelTrainIds_updated.png"), "r_channel",
                 SYNTHIA_SEQ_TO_TRAIN_ID, known,
                 f"SYNTHIA-Seq class ids (0..{len(SYNTHIA_SEQ_CLASSES) - 1}, R channel)")
        for src in sources
    ]  # fmt: skip
    return _Plan(jobs, sources, root)


def _plan_cityscapes(root: Path, splits: dict[str, _Split], opts: _Options) -> _Plan:
    suffix = "_gtFine_labelIds.png"
    by_split = {
        name: sorted((root / "gtFine" / name).glob(f"*/*{suffix}")) for name in CITYSCAPES_SPLITS
    }
    sources = sorted(itertools.chain.from_iterable(by_split.values()))
    if not sources:
        raise _no_files(
            "Cityscapes", [root / "gtFine" / s / "<city>" / f"*{suffix}" for s in CITYSCAPES_SPLITS]
        )
    train = by_split["train"]
    if "train" in splits and opts.stats:  # the split only decides what the statistics cover
        train_dir = root / "gtFine" / "train"
        train = _entry_files(splits["train"], lambda e: train_dir / f"{e}{suffix}", "Cityscapes")
    jobs = [
        LabelJob(src, src.with_name(src.name[: -len(suffix)] + "_gtFine_labelTrainIds.png"),
                 "index", ID_TO_TRAIN_ID, known_mask(range(256)), "8-bit values")
        for src in sources
    ]  # fmt: skip
    return _Plan(jobs, sorted(train), root)


def _plan_bdd(root: Path, splits: dict[str, _Split], opts: _Options) -> _Plan:
    label_dirs = [root / name / "labels" for name in BDD_LABEL_DIRS]
    sources = sorted(
        itertools.chain.from_iterable(d.glob("*.png") for d in label_dirs if d.is_dir())
    )
    if not sources:
        raise _no_files("BDD", [d / "*.png" for d in label_dirs])
    # UDA training reads train/labels; supervised BDD reads the same masks from train_orig_10k.
    train_dir = root / "train" / "labels"
    if not train_dir.is_dir() and (root / "train_orig_10k" / "labels").is_dir():
        train_dir = root / "train_orig_10k" / "labels"
    if "train" in splits and opts.stats:  # the split only decides what the statistics cover
        train = _entry_files(splits["train"], lambda e: train_dir / f"{e}.png", "BDD")
    else:
        train = [p for p in sources if p.parent == train_dir]
    identity = np.arange(256, dtype=np.uint8)
    jobs = [
        LabelJob(src, None, "index", identity, known_mask(TRAIN_IDS), "trainIds (0..18, 255)")
        for src in sources
    ]
    return _Plan(jobs, sorted(train), root)


_PLANNERS: dict[str, Callable[[Path, dict[str, _Split], _Options], _Plan]] = {
    "viper": _plan_viper,
    "synthia-seq": _plan_synthia,
    "cityscapes": _plan_cityscapes,
    "bdd": _plan_bdd,
}


# --------------------------------------------------------------------------- running


def _run_jobs(
    jobs: list[LabelJob], workers: int, overwrite: bool, progress: bool, desc: str
) -> list[LabelResult]:
    """Run every job, in this process or in ``workers`` spawned processes; results in job order."""
    workers = min(workers, len(jobs))
    results: list[LabelResult] = []
    with tqdm(total=len(jobs), desc=desc, unit="file", disable=not progress) as bar:
        if workers == 0:
            for job in jobs:
                results.append(run_job(job, overwrite))
                bar.update()
            return results
        chunk = max(1, min(64, len(jobs) // (workers * 8)))
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            for result in pool.map(run_job, jobs, itertools.repeat(overwrite), chunksize=chunk):
                results.append(result)
                bar.update()
        except BrokenProcessPool as err:
            raise RuntimeError(
                "a label conversion worker died (out of memory, or a script that calls "
                "convert_dataset(workers>0) outside `if __name__ == '__main__':`); "
                "run with workers=0 to convert in this process"
            ) from err
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
    return results


def _raise_failures(results: list[LabelResult]) -> None:
    failed = [r.error for r in results if r.error]
    if len(failed) == 1:
        raise ConvertError(failed[0])
    if failed:
        shown = "\n  ".join(failed[:10])
        more = f"\n  ... and {len(failed) - 10} more" if len(failed) > 10 else ""
        raise ConvertError(f"{len(failed)} of {len(results)} label files failed:\n  {shown}{more}")


def _tally(report: ConvertReport, results: list[LabelResult]) -> None:
    totals = np.zeros(NUM_CLASSES, dtype=np.int64)
    for r in results:
        totals += np.asarray(r.counts, dtype=np.int64)
    report.converted = sum(r.status == "converted" for r in results)
    report.skipped = sum(r.status == "skipped" for r in results)
    report.validated = sum(r.status == "validated" for r in results)
    report.class_pixels = {c: int(n) for c, n in enumerate(totals) if n}


# --------------------------------------------------------------------------- statistics


def _write_stats(report: ConvertReport, plan: _Plan, results: list[LabelResult]) -> None:
    by_source = {
        job.src: (plan.stats_name(job), r.counts) for job, r in zip(plan.jobs, results, strict=True)
    }
    samples = [by_source[src] for src in plan.stats_sources if src in by_source]
    if not samples:
        report.warnings.append(f"no training labels under {plan.root}; statistics not written")
        return
    report.stats_files = write_class_stats(plan.root, samples)
    report.stats_samples = len(samples)


def write_class_stats(out_dir: Path, samples: Iterable[tuple[str, Sequence[int]]]) -> list[Path]:
    """Write the three RCS statistics files in the original (DAFormer/UVDA) format.

    Args:
        out_dir: where the files go (the dataset root).
        samples: ``(file, counts)`` per label file; ``counts[c]`` = pixels of trainId c (0..18).
            Written sorted by file; classes with no pixels are left out.
    Returns:
        The paths of ``sample_class_stats.json``, ``sample_class_stats_dict.json`` and
        ``samples_with_class.json``.
    """
    per_file: dict[str, dict[str, int]] = {}
    for file, counts in sorted(samples, key=lambda s: s[0]):
        per_file[file] = {str(c): int(n) for c, n in enumerate(counts) if n > 0}
    stats_list = [{**classes, "file": file} for file, classes in per_file.items()]
    with_class: dict[str, list[list]] = {}
    for c in range(NUM_CLASSES):
        files = [[file, classes[str(c)]] for file, classes in per_file.items() if str(c) in classes]
        if files:
            with_class[str(c)] = files
    paths = [out_dir / name for name in STATS_FILES]
    for path, content in zip(paths, (stats_list, per_file, with_class), strict=True):
        _write_json_atomic(path, content)
    return paths


def _write_json_atomic(path: Path, content: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(content, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        raise ConvertError(f"{path}: cannot write ({err})") from None
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- mapping stamp


def _lut_stamp(jobs: list[LabelJob]) -> str:
    """A digest of the lookup table of jobs that write outputs ('' when nothing is written)."""
    writing = [job for job in jobs if job.dst is not None]
    return hashlib.sha1(writing[0].lut.tobytes()).hexdigest() if writing else ""


def _read_stamps(root: Path) -> dict[str, str]:
    try:
        data = json.loads((root / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _stamp_changed(root: Path, kind: str, stamp: str) -> bool:
    """True when an earlier run recorded a different lookup table for this kind."""
    previous = _read_stamps(root).get(kind)
    return previous is not None and previous != stamp


def _write_stamp(root: Path, kind: str, stamp: str) -> None:
    stamps = _read_stamps(root)
    if stamps.get(kind) != stamp:
        _write_json_atomic(root / STAMP_FILE, {**stamps, kind: stamp})
