"""The plain form of a resolved config (what checkpoints store)."""

from __future__ import annotations

from vidda.config import Config, load_config, plain_config
from vidda.config.load import config_from_dict


def test_plain_config_is_plain_data_and_round_trips(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 2.0e-4\nseed: 3\n")
    cfg = load_config(path, ["model.num_classes=7"])
    plain = plain_config(cfg)
    assert isinstance(plain, dict) and plain["seed"] == 3 and plain["model"]["num_classes"] == 7
    assert isinstance(plain["optim"], dict) and plain["optim"]["lr"] == 2e-4
    assert config_from_dict(plain) == cfg
    assert plain_config(Config()) == plain_config(config_from_dict(plain_config(Config())))
