"""A walk through every command with the mistakes users make: each answer is one line on stderr and a
non-zero exit, never a traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner

from composer.cli import main
from composer.train import train
from tests.helpers_train import build_tiny_corpus, tiny_config
from tests.midi_factory import SCORES, write_score


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("errors")
    corpus = build_tiny_corpus(tmp)
    perf_corpus = build_tiny_corpus(tmp, encoding="performance")
    run = tmp / "run"
    train(corpus, run, tiny_config(max_steps=4, eval_every=4), progress=False)
    song = write_score(SCORES["single"](), tmp / "song.mid")
    text = tmp / "notes.txt"
    text.write_text("just some text\n")
    truncated = tmp / "truncated-run"
    (truncated / "last").mkdir(parents=True)
    for f in (run / "last").iterdir():
        (truncated / "last" / f.name).write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 3)])
    file_not_dir = tmp / "a-file"
    file_not_dir.write_text("x")
    return {
        "tmp": tmp, "corpus": corpus, "perf_corpus": perf_corpus, "run": run, "song": song, "text": text,
        "truncated": truncated, "file": file_not_dir, "missing": tmp / "does-not-exist",
    }  # fmt: skip


MISTAKES = [
    # (command line with {placeholders}, a fragment the one-line error must contain)
    ("corpus build {missing} -o {tmp}/c1", "does not exist"),
    ("corpus build {text} -o {tmp}/c2", "no usable MIDI file"),
    ("corpus build {song} -o {tmp}/c3 --workers 0", "--workers"),
    ("corpus build {song} -o {tmp}/c4 --val-fraction 1.5", "--val-fraction"),
    ("corpus build {song} -o {file}", "file"),
    ("corpus info {missing}", "no such corpus folder"),
    ("corpus info {tmp}", "not a corpus"),
    ("encode {text} -o {tmp}/e1", "no file could be encoded"),
    ("encode {song} -o {tmp}/e2 --encoding remi", "--encoding"),
    ("decode {song} -o {tmp}/d1", "no file could be decoded"),
    ("train {missing} -o {tmp}/t1", "no such corpus folder"),
    ("train {corpus} -o {run}", "already holds a training run"),
    ("train {perf_corpus} -o {run} --resume", "vocabulary"),
    ("train {corpus} -o {tmp}/t2 --batch-size 0", "--batch-size"),
    ("train {corpus} -o {tmp}/t3 --preset huge", "--preset"),
    ("info {missing}", "does-not-exist"),
    ("info {truncated}", "truncated-run"),
    ("generate {missing} -o {tmp}/g1", "does-not-exist"),
    ("generate {truncated} -o {tmp}/g2", "truncated-run"),
    ("generate {run} -o {tmp}/g3 --temperature 0", "temperature"),
    ("generate {run} -o {tmp}/g4 --top-p 1.5", "top-p"),
    ("generate {run} -o {tmp}/g5 --bars 0", "bars"),
    ("generate {run} -o {tmp}/g6 --primer {text}", "notes.txt"),
    ("generate {run} -o {file}", "a-file"),
    ("evaluate {missing}", "does-not-exist"),
    ("evaluate {run} {perf_corpus} --samples 0", "tokenizer"),
    ("render {text} -o {tmp}/x.wav", "notes.txt: not a MIDI file"),
]


@pytest.mark.parametrize(
    ("cmd", "fragment"), MISTAKES, ids=[m[0].split(" {")[0] + f"#{i}" for i, m in enumerate(MISTAKES)]
)
def test_each_mistake_is_one_clean_line(world, cmd, fragment):
    args = cmd.format(**{k: str(v) for k, v in world.items()}).split()
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0], lines[0]


def test_debug_shows_the_traceback(world):
    result = CliRunner().invoke(main, ["--debug", "corpus", "info", str(world["missing"])])
    assert result.exit_code != 0
    assert result.exception is not None and "no such corpus folder" in str(result.exception)


def test_a_pickle_payload_in_a_checkpoint_never_runs(world, tmp_path):
    """A checkpoint downloaded from anywhere: a weights file carrying a pickle that would create a file."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil"
    (evil / "last").mkdir(parents=True)
    for f in (world["run"] / "last").iterdir():
        (evil / "last" / f.name).write_bytes(f.read_bytes())
    (evil / "last" / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    for cmd in (["info", str(evil)], ["generate", str(evil), "-o", str(tmp_path / "songs")]):
        result = CliRunner().invoke(main, cmd)
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert "model.safetensors" in result.stderr
    assert not marker.exists()


def test_hostile_primers_continue_or_fail_in_one_line(world, tmp_path):
    from tests.test_hostile import EXPECT, HOSTILE

    for name, data in HOSTILE.items():
        primer = tmp_path / f"{name}.mid"
        primer.write_bytes(data)
        out = tmp_path / f"songs-{name}"
        args = ["generate", str(world["run"]), "-o", str(out), "-n", "1", "--tokens", "40", "--seed", "1"]
        result = CliRunner().invoke(main, [*args, "--primer", str(primer)])
        assert "Traceback" not in result.output + result.stderr, name
        if result.exit_code == 0:
            assert EXPECT[name] is not None, f"{name} should have been refused"
            assert (out / "song_001.mid").is_file()
        else:
            errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error")]
            assert len(errors) == 1 and name in errors[0], (name, result.stderr)
