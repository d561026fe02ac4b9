"""Segmentors: a backbone and head(s) that turn images into class logits."""
