"""The data commands of the CLI: encode, decode, corpus build / info / bach (through click's CliRunner)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pretty_midi
import pytest
from click.testing import CliRunner, Result

from composer.cli import main
from composer.corpus import Corpus
from composer.midi import read_midi
from tests.midi_factory import SCORES, chord_score, header, track, write_score
from tests.old_corpus import write_v1

HEADER = "# composer-tokens "


def run(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def pitches_of(path: Path) -> list[int]:
    s = read_midi(path)
    return sorted(n.pitch for inst in s.instruments for n in inst.notes)


def pretty_pitches(path: Path) -> list[int]:
    pm = pretty_midi.PrettyMIDI(str(path))
    return sorted(n.pitch for inst in pm.instruments for n in inst.notes)


def error_line(result: Result) -> str:
    """The one 'Error:' line of a failed command (stderr holds nothing else after it)."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def midi_dir(tmp_path: Path) -> Path:
    src = tmp_path / "midi"
    (src / "more").mkdir(parents=True)
    write_score(SCORES["single"](), src / "single.mid")
    write_score(SCORES["multitrack_drums"](), src / "more" / "band.MID")
    write_score(SCORES["tempo_timesig_changes"](), src / "changes.midi")
    return src


# ------------------------------------------------------------------------------------------ encode/decode


@pytest.mark.parametrize("encoding", ["beat", "performance"])
def test_encode_folder_then_decode_round_trips(tmp_path: Path, midi_dir: Path, encoding: str) -> None:
    tokens, back = tmp_path / "tokens", tmp_path / "back"
    r = run("encode", midi_dir, "-o", tokens, "--encoding", encoding)
    assert r.exit_code == 0, r.output
    sources = {
        "single.txt": midi_dir / "single.mid",
        "more/band.txt": midi_dir / "more" / "band.MID",
        "changes.txt": midi_dir / "changes.midi",
    }
    written = sorted(str(p.relative_to(tokens)) for p in tokens.rglob("*.txt"))
    assert written == sorted(sources)
    for name in sources:
        lines = (tokens / name).read_text().splitlines()
        assert lines[0].startswith(HEADER)
        config = json.loads(lines[0][len(HEADER) :])
        assert config["encoding"] == encoding
        body = lines[1:]
        assert body[0] == "BOS" and body[-1] == "EOS"
        assert all(ln and " " not in ln and not ln.startswith("#") for ln in body)  # one token per line
    assert "encoded 3 file(s)" in r.stdout

    r = run("decode", tokens, "-o", back)
    assert r.exit_code == 0, r.output
    for name, source in sources.items():
        out = back / Path(name).with_suffix(".mid")
        assert out.is_file(), out
        assert read_midi(out).note_count == read_midi(source).note_count
        assert pitches_of(out) == pitches_of(source)
        assert pretty_pitches(out) == pitches_of(source)
    assert "decoded 3 file(s)" in r.stdout


def test_encode_a_single_file(tmp_path: Path, midi_dir: Path) -> None:
    r = run("encode", midi_dir / "more" / "band.MID", "-o", tmp_path / "tok")
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "tok").iterdir()] == ["band.txt"]
    text = (tmp_path / "tok" / "band.txt").read_text()
    assert text.startswith(HEADER) and text.endswith("EOS\n")
    assert "56 notes" in r.stdout


def test_encode_force(tmp_path: Path, midi_dir: Path) -> None:
    out = tmp_path / "tok"
    assert run("encode", midi_dir / "single.mid", "-o", out).exit_code == 0
    target = out / "single.txt"
    target.write_text("my own edits\n")

    r = run("encode", midi_dir / "single.mid", "-o", out)
    assert target.read_text() == "my own edits\n"  # not overwritten
    assert "--force" in r.stderr and "single.txt" in r.stderr

    r = run("encode", midi_dir / "single.mid", "-o", out, "--force")
    assert r.exit_code == 0, r.output
    assert target.read_text().startswith(HEADER)


def test_decode_force(tmp_path: Path, midi_dir: Path) -> None:
    run("encode", midi_dir / "single.mid", "-o", tmp_path / "tok")
    target = tmp_path / "back" / "single.mid"
    target.parent.mkdir()
    target.write_bytes(b"precious")

    r = run("decode", tmp_path / "tok", "-o", tmp_path / "back")
    assert target.read_bytes() == b"precious"
    assert "--force" in r.stderr

    r = run("decode", tmp_path / "tok", "-o", tmp_path / "back", "--force")
    assert r.exit_code == 0, r.output
    assert pitches_of(target) == pitches_of(midi_dir / "single.mid")


def test_encode_bad_file_among_good_ones(tmp_path: Path, midi_dir: Path) -> None:
    (midi_dir / "broken.mid").write_text("this is not MIDI")
    (midi_dir / "silent.mid").write_bytes(header(0, 1) + track(b"\x00\xff\x2f\x00"))
    r = run("encode", midi_dir, "-o", tmp_path / "tok")
    assert r.exit_code == 0, r.output
    assert "broken.mid" in r.stderr and "not a MIDI file" in r.stderr
    assert "silent.mid" in r.stderr and "no notes" in r.stderr
    assert sorted(p.name for p in (tmp_path / "tok").rglob("*.txt")) == [
        "band.txt",
        "changes.txt",
        "single.txt",
    ]
    assert "encoded 3 file(s), skipped 2" in r.stdout


def test_encode_only_bad_files_fails_with_one_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mid").write_text("nope")
    (src / "b.mid").write_bytes(b"")
    r = run("encode", src, "-o", tmp_path / "tok")
    assert r.exit_code == 1
    assert "no file could be encoded" in error_line(r)
    assert "a.mid" in r.stderr and "b.mid" in r.stderr


def test_encode_folder_without_midi(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("x")
    r = run("encode", tmp_path / "src", "-o", tmp_path / "tok")
    assert r.exit_code == 1
    assert "no MIDI files" in error_line(r)


def test_decode_unknown_token_names_file_and_line(tmp_path: Path, midi_dir: Path) -> None:
    tok = tmp_path / "tok"
    run("encode", midi_dir / "single.mid", midi_dir / "changes.midi", "-o", tok)
    lines = (tok / "single.txt").read_text().splitlines()
    lines[4] = "PITCH_BANANA"
    (tok / "single.txt").write_text("\n".join(lines) + "\n")

    r = run("decode", tok, "-o", tmp_path / "back")
    assert r.exit_code == 0, r.output  # the good file is still decoded
    assert f"{tok / 'single.txt'}:5" in r.stderr
    assert "PITCH_BANANA" in r.stderr
    assert (tmp_path / "back" / "changes.mid").is_file()
    assert not (tmp_path / "back" / "single.mid").exists()

    r = run("decode", tok / "single.txt", "-o", tmp_path / "back2")
    assert r.exit_code == 1
    error_line(r)


def test_decode_without_header_needs_encoding(tmp_path: Path, midi_dir: Path) -> None:
    tok = tmp_path / "tok"
    run("encode", midi_dir / "single.mid", "-o", tok)
    text = (tok / "single.txt").read_text()
    (tok / "single.txt").write_text(text.split("\n", 1)[1])  # drop the header line

    r = run("decode", tok, "-o", tmp_path / "back")
    assert r.exit_code == 1
    assert "--encoding" in r.stderr
    r = run("decode", tok, "-o", tmp_path / "back", "--encoding", "beat")
    assert r.exit_code == 0, r.output
    assert pitches_of(tmp_path / "back" / "single.mid") == pitches_of(midi_dir / "single.mid")


# ------------------------------------------------------------------------------------------------ corpus


def test_corpus_build_and_info(tmp_path: Path, midi_dir: Path) -> None:
    (midi_dir / "broken.mid").write_text("not midi")
    out = tmp_path / "corpus"
    r = run("corpus", "build", midi_dir, "-o", out, "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "3 pieces" in r.stdout and "1 skipped" in r.stdout
    assert "broken.mid" in r.stderr

    r = run("corpus", "build", midi_dir, "-o", out, "--workers", "1")  # again: everything reused
    assert r.exit_code == 0, r.output
    assert "0 encoded, 3 reused" in r.stdout

    r = run("corpus", "info", out)
    assert r.exit_code == 0, r.output
    assert "encoding" in r.stdout and "beat" in r.stdout
    assert "Drums" in r.stdout  # the multitrack file's drum kit
    notes = sum(
        read_midi(p).note_count
        for p in midi_dir.rglob("*")
        if p.suffix.lower() in (".mid", ".midi") and p.name != "broken.mid"
    )
    assert f"{notes:,}" in r.stdout

    r = run("corpus", "info", out, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["files"] == 3 and info["skipped"] == 1 and info["notes"] == notes
    assert info["tokens"] == len(Corpus.open(out).tokens)
    assert info["encoding"] == "beat"


def test_corpus_build_performance_encoding(tmp_path: Path, midi_dir: Path) -> None:
    r = run("corpus", "build", midi_dir, "-o", tmp_path / "c", "--workers", "2", "--encoding", "performance")
    assert r.exit_code == 0, r.output
    assert Corpus.open(tmp_path / "c").encoding == "performance"


def test_corpus_build_rejects_bad_options(tmp_path: Path, midi_dir: Path) -> None:
    r = run("corpus", "build", midi_dir, "-o", tmp_path / "c", "--val-fraction", "2")
    assert r.exit_code == 2
    assert "--val-fraction" in r.stderr
    r = run("corpus", "build", midi_dir, "-o", tmp_path / "c", "--val-fraction", "1")
    assert r.exit_code == 2
    r = run("corpus", "build", midi_dir, "-o", tmp_path / "c", "--workers", "0")
    assert r.exit_code == 2
    assert not (tmp_path / "c").exists()


def test_corpus_build_nonexistent_source(tmp_path: Path) -> None:
    r = run("corpus", "build", tmp_path / "nowhere", "-o", tmp_path / "c")
    assert r.exit_code != 0
    assert "nowhere" in r.stderr
    assert "Error" in r.stderr


def test_corpus_build_only_bad_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.mid").write_text("nope")
    r = run("corpus", "build", src, "-o", tmp_path / "c", "--workers", "1")
    assert r.exit_code == 1
    assert "no usable MIDI file" in error_line(r)


def test_corpus_build_strict(tmp_path: Path, midi_dir: Path) -> None:
    (midi_dir / "broken.mid").write_text("not midi")
    r = run("corpus", "build", midi_dir, "-o", tmp_path / "c", "--workers", "1", "--strict")
    assert r.exit_code == 1
    assert "broken.mid" in error_line(r)


@pytest.mark.parametrize("setup", ["missing", "no_manifest", "garbled"])
def test_corpus_info_errors_are_one_line(tmp_path: Path, midi_dir: Path, setup: str) -> None:
    path = tmp_path / "c"
    if setup != "missing":
        path.mkdir()
    if setup == "garbled":
        run("corpus", "build", midi_dir, "-o", path, "--workers", "1")
        (path / "manifest.json").write_text('{"format_version": 1, "fi')
    r = run("corpus", "info", path)
    assert r.exit_code == 1
    assert str(path) in error_line(r)


def test_debug_flag_shows_the_exception(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--debug", "corpus", "info", str(tmp_path / "nope")])
    assert r.exit_code == 1
    assert type(r.exception).__name__ == "CorpusError"


# -------------------------------------------------------------------------------------------------- bach


def test_corpus_bach_small(tmp_path: Path) -> None:
    if importlib.util.find_spec("composer.bach") is None:
        pytest.skip("composer.bach does not exist yet")
    pytest.importorskip("music21")
    from composer.cli.data import corpus_bach

    if not any(p.name == "limit" for p in corpus_bach.params):
        pytest.skip("'composer corpus bach' has no --limit option yet; a full run converts ~400 chorales")
    out = tmp_path / "bach"
    r = run("corpus", "bach", "-o", out, "--limit", "3", "--workers", "1")
    assert r.exit_code == 0, r.output
    midi = sorted((out / "midi").glob("*.mid"))
    assert 1 <= len(midi) <= 3
    c = Corpus.open(out)
    assert 1 <= c.summary()["files"] <= 3
    for piece in c.pieces():
        assert piece.notes == read_midi(piece.path).note_count > 0


def test_version_and_help() -> None:
    r = run("--version")
    assert r.exit_code == 0 and "composer" in r.stdout
    for cmd in (["encode"], ["decode"], ["corpus", "build"], ["corpus", "info"], ["corpus", "bach"]):
        r = run(*cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.stdout, cmd


def test_chord_fixture_notes_survive_cli(tmp_path: Path) -> None:
    """A longer single-track piece through encode -> decode keeps note timing order."""
    src = write_score(chord_score(bars=8, program=24), tmp_path / "guitar.mid")
    run("encode", src, "-o", tmp_path / "t")
    run("decode", tmp_path / "t", "-o", tmp_path / "b")
    a, b = read_midi(src), read_midi(tmp_path / "b" / "guitar.mid")
    assert [i.program for i in b.instruments] == [24]
    onsets_a = [n.start * 1.0 / a.ticks_per_beat for n in a.instruments[0].notes]
    onsets_b = [n.start * 1.0 / b.ticks_per_beat for n in b.instruments[0].notes]
    assert onsets_a == pytest.approx(onsets_b)


def test_ctrl_c_during_build_is_one_line_and_keeps_the_corpus(
    tmp_path: Path, midi_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import composer.corpus as corpus_mod

    out = tmp_path / "c"
    assert run("corpus", "build", midi_dir, "-o", out, "--workers", "1").exit_code == 0
    write_score(chord_score(bars=2), midi_dir / "new.mid")

    def interrupted(path, tokenizer):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus_mod, "encode_file", interrupted)
    r = run("corpus", "build", midi_dir, "-o", out, "--workers", "1")
    assert r.exit_code == 1
    assert "interrupted" in error_line(r)
    monkeypatch.undo()
    assert Corpus.open(out).summary()["files"] == 3


# ---------------------------------------------------------------------------------- labels and attributes


@pytest.fixture
def styled_dir(tmp_path: Path) -> Path:
    src = tmp_path / "styled"
    for k, (folder, name) in enumerate(
        [("folk", "a.mid"), ("folk", "b.mid"), ("jazz", "c.mid"), ("", "d.mid")]
    ):
        (src / folder).mkdir(parents=True, exist_ok=True)
        write_score(chord_score(bars=1 + k, program=k), src / folder / name)
    return src


def test_corpus_build_labels_from_folders_and_info(tmp_path: Path, styled_dir: Path) -> None:
    out = tmp_path / "c"
    r = run("corpus", "build", styled_dir, "-o", out, "--workers", "1", "--labels-from-folders")
    assert r.exit_code == 0, r.output
    assert "labels (folder): 3 of 4 pieces labelled, 1 unlabelled" in r.stdout
    r = run("corpus", "info", out)
    assert r.exit_code == 0, r.output
    lines = {ln.strip().split("  ", 1)[0]: ln.strip() for ln in r.stdout.splitlines() if ln.strip()}
    assert "folk (2), jazz (1); 1 unlabelled" in lines["label folder"]
    assert "C major (4)" in lines["keys"]  # the fixture's arpeggios, on four programs
    assert "low" in lines["density levels"] and "terciles" in lines["density levels"]
    assert "mid 4" in lines["tempo levels"]  # all at 120 qpm: all mid
    assert "Acoustic Grand Piano (1)" in lines["instrument sets"]
    info = json.loads(run("corpus", "info", out, "--json").stdout)
    assert info["labels"]["folder"]["counts"] == {"folk": 2, "jazz": 1}
    assert info["attributes"]["keys"] == {"C major": 4}
    assert info["attributes"]["tempo_levels"] == {"low": 0, "mid": 4, "high": 0}


def test_corpus_build_labels_csv(tmp_path: Path, styled_dir: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("file,valence,arousal\nfolk/a.mid,1,-1\njazz/c.mid,-1,1\nfolk/missing.mid,1,1\n")
    out = tmp_path / "c"
    r = run("corpus", "build", styled_dir, "-o", out, "--workers", "1", "--labels", csv)
    assert r.exit_code == 0, r.output
    assert (
        f"warning: {csv}: 1 file(s) listed are not among the MIDI files found: folk/missing.mid" in r.stderr
    )
    assert "labels (valence, arousal): 2 of 4 pieces labelled" in r.stdout
    r = run("corpus", "info", out)
    assert "label valence  -1 (1), 1 (1); 2 unlabelled" in r.stdout

    r = run(
        "corpus", "build", styled_dir, "-o", tmp_path / "s", "--workers", "1", "--labels", csv, "--strict"
    )
    assert r.exit_code == 1 and "folk/missing.mid" in error_line(r)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,mood\na.mid,x\n", "no 'file' column"),
        ("file,mood\nfolk/a.mid,happy,what\n", "3 cells, but the header names 2 columns"),
        ("file,mood\nnowhere.mid,x\n", "none of its 1 files"),
    ],
    ids=["no_file_column", "unknown_column", "no_file_found"],
)
def test_corpus_build_bad_labels_csv_is_one_line(
    tmp_path: Path, styled_dir: Path, text: str, match: str
) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    r = run("corpus", "build", styled_dir, "-o", tmp_path / "c", "--labels", csv)
    assert r.exit_code == 1
    line = error_line(r)
    assert str(csv) in line and match in line
    assert not (tmp_path / "c").exists()


def test_corpus_build_labels_csv_not_utf8_or_missing(tmp_path: Path, styled_dir: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_bytes("file,mood\nfolk/a.mid,gai\xe9\n".encode("latin-1"))
    r = run("corpus", "build", styled_dir, "-o", tmp_path / "c", "--labels", csv)
    assert r.exit_code == 1 and "not UTF-8" in error_line(r)
    r = run("corpus", "build", styled_dir, "-o", tmp_path / "c", "--labels", tmp_path / "none.csv")
    assert r.exit_code == 2 and "--labels" in r.stderr  # click's check, like SOURCES


def test_corpus_info_on_a_corpus_from_before_attributes(tmp_path: Path, midi_dir: Path) -> None:
    out = tmp_path / "c"
    run("corpus", "build", midi_dir, "-o", out, "--workers", "1")
    m = write_v1(out)
    for entry in m["files"]:
        del entry["attributes"], entry["labels"]
    (out / "manifest.json").write_text(json.dumps(m))
    r = run("corpus", "info", out)
    assert r.exit_code == 0, r.output
    assert "none for 3 pieces" in r.stdout and "build it again" in r.stdout
