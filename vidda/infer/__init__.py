"""``vidda infer``: segment your own video with a trained (or imported) checkpoint.

* :mod:`~vidda.infer.sources`: frames from a video file, a frame folder, a glob or an image;
* :mod:`~vidda.infer.model`: the network from a checkpoint, wrapped for uint8 frames
  (:class:`Segmenter`: single-frame, HRDA or two-frame ACCEL, AMP on CUDA);
* :mod:`~vidda.infer.geometry`: the model's input size and resizing of frames and flows;
* :mod:`~vidda.infer.run`: the resumable, batched loop and ``summary.json``;
* :mod:`~vidda.infer.outputs` and :mod:`~vidda.infer.overlay`: what is written;
* :mod:`~vidda.infer.command`: the command-line glue.

From Python::

    from pathlib import Path
    from vidda.infer import InferOptions, Segmenter, load_model, open_source, run_infer

    loaded = load_model("vidda_demo/adapted/latest.pt")
    seg = Segmenter(loaded.model, loaded.cfg.eval, "cpu")
    run_infer(seg, open_source("my_video.mp4"), InferOptions(out_dir=Path("preds")))
"""

from vidda.infer.model import LoadedModel, Segmenter, load_model
from vidda.infer.run import InferOptions, run_infer
from vidda.infer.sources import FrameSource, InputError, open_source

__all__ = [
    "FrameSource",
    "InferOptions",
    "InputError",
    "LoadedModel",
    "Segmenter",
    "load_model",
    "open_source",
    "run_infer",
]
