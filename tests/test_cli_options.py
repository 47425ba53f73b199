"""The CLI takes its choices and defaults from the library, and loads only the command it runs."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from composer.cli import COMMANDS, main
from composer.device import DEVICE_CHOICES
from composer.model import PRESETS
from composer.tokenizer import ENCODINGS
from composer.train_config import PRESET_LR, TrainConfig


def command(*path: str) -> click.Command:
    ctx = click.Context(main)
    cmd: click.Command = main
    for name in path:
        assert isinstance(cmd, click.Group)
        sub = cmd.get_command(ctx, name)
        assert sub is not None, name
        cmd = sub
    return cmd


def option(cmd: click.Command, name: str) -> click.Option:
    (opt,) = [p for p in cmd.params if isinstance(p, click.Option) and name in p.opts]
    return opt


def test_every_command_is_listed_and_loads() -> None:
    assert main.list_commands(click.Context(main)) == sorted(COMMANDS)
    for name in COMMANDS:
        assert command(name).name == name


def test_train_options_are_trainconfig_fields_with_its_defaults() -> None:
    defaults = TrainConfig()
    fields = set(defaults.to_dict())
    train = command("train")
    config_params = [p for p in train.params if p.name in fields]
    assert {p.name for p in train.params} - fields == {"corpus_dir", "out", "resume", "overwrite"}
    assert len(config_params) == 24
    for p in config_params:
        assert p.default == getattr(defaults, str(p.name)), p.name
    assert option(train, "--threads").name == "num_threads"
    assert option(train, "--music-stats").name == "music_samples"
    lr_help = option(train, "--lr").help or ""
    assert all(f"{preset} {lr:.0e}".replace("e-0", "e-") in lr_help for preset, lr in PRESET_LR.items())


@pytest.mark.parametrize(
    ("path", "name", "choices"),
    [
        (("train",), "--device", DEVICE_CHOICES),
        (("generate",), "--device", DEVICE_CHOICES),
        (("evaluate",), "--device", DEVICE_CHOICES),
        (("train",), "--preset", tuple(PRESETS)),
        (("encode",), "--encoding", ENCODINGS),
        (("decode",), "--encoding", ENCODINGS),
        (("corpus", "build"), "--encoding", ENCODINGS),
        (("corpus", "bach"), "--encoding", ENCODINGS),
    ],
)
def test_choices_come_from_the_library(path: tuple[str, ...], name: str, choices: tuple[str, ...]) -> None:
    opt_type = option(command(*path), name).type
    assert isinstance(opt_type, click.Choice)
    assert tuple(opt_type.choices) == tuple(choices)


def test_a_bad_train_option_is_refused_by_click_with_its_range() -> None:
    r = CliRunner().invoke(main, ["train", "corpus", "-o", "out", "--batch-size", "0"])
    assert r.exit_code == 2
    assert "Invalid value for '--batch-size': 0 is not in the range x>=1." in r.stderr


def test_data_commands_do_not_load_torch() -> None:
    code = (
        "import sys\n"
        "from composer.cli import main\n"
        "for args in (['corpus', 'info', '--help'], ['encode', '--help'], ['decode', '--help'],"
        " ['render', '--help']):\n"
        "    main(args, standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
