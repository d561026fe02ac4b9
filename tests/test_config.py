"""Config loading: inheritance, overrides, and every error a user can make."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidda.cli import main
from vidda.config import Config, ConfigError, load_config, merge_overrides, save_config, to_yaml
from vidda.config.load import config_from_dict


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "_base_/optim.yaml", "optim:\n  lr: 1.0e-4\n  weight_decay: 0.05\nseed: 1\n")
    write(tmp_path / "_base_/data.yaml", "data:\n  batch_size: 4\n  source:\n    root: src\n")
    write(tmp_path / "_base_/both.yaml", "_base_: [optim.yaml, data.yaml]\nseed: 2\n")
    write(tmp_path / "exp/run.yaml", "_base_: [../_base_/both.yaml]\noptim:\n  lr: 2.0e-4\n")
    return tmp_path


def test_defaults_without_a_file(tmp_path: Path):
    cfg = load_config(write(tmp_path / "empty.yaml", ""))
    assert cfg == Config()


def test_inheritance_is_depth_first_and_later_wins(tree: Path):
    cfg = load_config(tree / "exp/run.yaml")
    assert isinstance(cfg, Config)
    assert cfg.optim.lr == pytest.approx(2e-4)  # the file itself beats its bases
    assert cfg.optim.weight_decay == pytest.approx(0.05)  # from a base of a base
    assert cfg.seed == 2  # both.yaml overrides optim.yaml, which it inherits from
    assert cfg.data.batch_size == 4 and cfg.data.source.root == "src"
    assert cfg.optim.betas == [0.9, 0.999]  # untouched default


def test_base_as_a_single_string(tmp_path: Path):
    write(tmp_path / "a.yaml", "seed: 7\n")
    assert load_config(write(tmp_path / "b.yaml", "_base_: a.yaml\n")).seed == 7


def test_overrides_win_and_are_typed(tree: Path):
    cfg = load_config(
        tree / "exp/run.yaml",
        ["optim.lr=1e-3", "seed=9", "data.source.offsets=[-4, -2, 0]", "model.pretrained=null"],
    )
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.seed == 9
    assert cfg.data.source.offsets == [-4, -2, 0]
    assert cfg.model.pretrained is None


def test_resolved_config_round_trips(tree: Path, tmp_path: Path):
    cfg = load_config(tree / "exp/run.yaml", ["schedule.iters=123"])
    path = save_config(cfg, tmp_path / "run_dir" / "config.yaml")
    assert "_base_" not in path.read_text()
    assert load_config(path) == cfg
    assert merge_overrides(cfg, ["seed=5"]).seed == 5 and cfg.seed == 2
    assert config_from_dict({"seed": 4}).seed == 4
    assert "iters: 123" in to_yaml(cfg)


def test_unknown_key_names_key_file_and_closest(tree: Path):
    bad = write(
        tree / "exp/typo.yaml", "_base_: [../_base_/both.yaml]\noptim:\n  wieght_decay: 0\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert "'optim.wieght_decay'" in msg and str(bad.resolve()) in msg
    assert "did you mean 'optim.weight_decay'" in msg
    assert "\n" not in msg


def test_unknown_key_in_a_base_names_the_base(tree: Path):
    write(tree / "_base_/data.yaml", "data:\n  bach_size: 4\n")
    with pytest.raises(ConfigError, match=r"'data.bach_size' from .*_base_/data.yaml.*batch_size"):
        load_config(tree / "exp/run.yaml")


def test_unknown_top_level_key_and_override(tree: Path):
    with pytest.raises(
        ConfigError, match=r"unknown config key 'optm' from the command line.*'optim'"
    ):
        load_config(tree / "exp/run.yaml", ["optm.lr=1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'compat.foo'"):
        load_config(tree / "exp/run.yaml", ["compat.foo=true"])


def test_wrong_type_names_key_and_expected_type(tree: Path):
    bad = write(tree / "bad.yaml", "schedule:\n  iters: many\n")
    with pytest.raises(ConfigError, match=r"'schedule.iters' from .*bad.yaml expects int"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"'optim.lr' from the command line expects float"):
        load_config(tree / "exp/run.yaml", ["optim.lr=fast"])
    with pytest.raises(ConfigError, match=r"'optim.betas\[1\]'.* expects float"):
        load_config(tree / "exp/run.yaml", ["optim.betas=[0.9, x]"])
    with pytest.raises(ConfigError, match=r"'data.source' .*expects a mapping"):
        load_config(tree / "exp/run.yaml", ["data.source=3"])
    with pytest.raises(ConfigError, match=r"'seed' .*expects int"):
        load_config(tree / "exp/run.yaml", ["seed=null"])


def test_missing_base_names_the_path_and_the_includer(tmp_path: Path):
    cfg = write(tmp_path / "x.yaml", "_base_: [nothere.yaml]\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert str(tmp_path / "nothere.yaml") in str(err.value) and str(cfg) in str(err.value)


def test_missing_file_cycle_bad_yaml_and_bad_override(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found: .*none.yaml"):
        load_config(tmp_path / "none.yaml")
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d"):
        load_config(write(tmp_path / "broken.yaml", "seed: 1\noptim: [\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="key.subkey=value"):
        load_config(write(tmp_path / "ok.yaml", ""), ["seed"])


def test_cli_errors_are_one_line_with_exit_2(tree: Path, capsys: pytest.CaptureFixture):
    bad = write(tree / "bad.yaml", "optim:\n  lrr: 1\n")
    assert main(["train", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vidda: error: unknown config key 'optim.lrr'")
    assert "Traceback" not in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError):  # --debug shows the traceback instead
        main(["--debug", "train", str(bad), "--dry-run"])


def test_cli_dry_run_applies_flags_and_overrides(tree: Path, capsys: pytest.CaptureFixture):
    rc = main(["train", str(tree / "exp/run.yaml"), "--dry-run", "--iters", "77", "optim.lr=0.5"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "iters: 77" in out and "lr: 0.5" in out


def test_every_compat_switch_is_documented_and_off_by_default():
    import dataclasses

    from vidda.config.schema import CompatConfig

    doc = (Path(__file__).parents[1] / "docs" / "compat.md").read_text()
    for f in dataclasses.fields(CompatConfig):
        assert f"| `compat.{f.name}` |" in doc, f.name  # a row of the switch table
        assert f.default is False, f.name  # the corrected behaviour is the default
