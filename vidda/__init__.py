"""vidda: unsupervised domain adaptation of semantic segmentation using video."""

__version__ = "0.1.0"
