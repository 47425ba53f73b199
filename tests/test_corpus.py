"""composer.corpus: building a corpus from a folder of MIDI files, rebuilding it, and opening it."""

from __future__ import annotations

import json
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import composer.corpus as corpus_mod
import composer.corpus_file as corpus_file
from composer.corpus import Corpus, build_corpus, encode_file, split_of
from composer.errors import CorpusError
from composer.midi import TempoChange, read_midi
from composer.tokenizer import DRUMS
from tests.midi_factory import (
    SCORES,
    chord_score,
    header,
    note_track_body,
    simple_midi_bytes,
    track,
    write_score,
)
from tests.old_corpus import write_v1

# ------------------------------------------------------------------------------------------------ helpers


def make_folder(root: Path) -> list[Path]:
    """Five distinct good files in a nested folder, with mixed-case MIDI suffixes."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub" / "deeper").mkdir(parents=True)
    names = {
        "single": root / "single.mid",
        "multitrack_drums": root / "sub" / "multitrack.MIDI",
        "tempo_timesig_changes": root / "sub" / "deeper" / "changes.kar",
        "overlapping_same_pitch": root / "Overlap.MID",
        "edge_values": root / "sub" / "edge.Mid",
    }
    for key, path in names.items():
        write_score(SCORES[key](), path)
    (root / "notes.txt").write_text("not a MIDI file, and not named like one\n")
    return sorted(names.values())


def pitches(score) -> list[int]:
    return sorted(n.pitch for inst in score.instruments for n in inst.notes)


def by_path(corpus: Corpus) -> dict[str, corpus_mod.Piece]:
    return {Path(p.path).name: p for p in corpus.pieces()}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def bad_files(root: Path) -> dict[str, Path]:
    """Unusable files, each for a different reason; written beside the good ones."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "not_midi": root / "readme.mid",
        "empty": root / "empty.mid",
        "truncated_header": root / "cut.mid",
        "no_notes": root / "silent.mid",
    }
    files["not_midi"].write_text("hello, I am a text file with a .mid suffix\n")
    files["empty"].write_bytes(b"")
    files["truncated_header"].write_bytes(header(0, 1)[:9])
    files["no_notes"].write_bytes(header(0, 1) + track(b"\x00\xff\x2f\x00"))
    return files


# ---------------------------------------------------------------------------------------------- building


def test_build_encodes_every_midi_file_recursively_and_round_trips(tmp_path: Path) -> None:
    sources = make_folder(tmp_path / "src")
    result = build_corpus([tmp_path / "src"], tmp_path / "corpus", workers=1)
    assert result.files_seen == len(sources)
    assert result.pieces == len(sources) and result.encoded == len(sources) and result.reused == 0
    assert result.skipped == []

    c = Corpus.open(tmp_path / "corpus")
    assert sorted(p.path for p in c.pieces()) == sorted(str(s) for s in sources)
    tok = c.tokenizer
    total_notes = 0
    for piece in c.pieces():
        ids = c.piece_tokens(piece)
        assert len(ids) == piece.length
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        source = read_midi(piece.path)
        back = tok.decode(ids)
        assert back.note_count == source.note_count == piece.notes, piece.path
        assert pitches(back) == pitches(source), piece.path
        total_notes += source.note_count

    s = c.summary()
    assert s["files"] == len(sources)
    assert s["train_files"] + s["val_files"] == len(sources)
    assert s["notes"] == total_notes == result.notes
    assert s["tokens"] == sum(p.length for p in c.pieces()) == result.tokens == len(c.tokens)
    assert s["skipped"] == 0
    assert s["encoding"] == "beat"
    assert DRUMS in s["instruments"]  # the drum kit of the multitrack file
    stats = c.statistics()  # what a checkpoint keeps for generation
    assert stats["pieces"] == len(sources) and stats["notes"] == total_notes
    assert stats["programs"] == sorted(s["instruments"])
    seconds = sum(p.seconds for p in c.pieces("train") + c.pieces("val"))
    assert stats["notes_per_second"] == pytest.approx(total_notes / seconds)


def test_tokens_are_memory_mapped_not_loaded(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    write_score(chord_score(), tmp_path / "src" / "a.mid")
    build_corpus([tmp_path / "src"], tmp_path / "corpus", workers=1)
    c = Corpus.open(tmp_path / "corpus")
    assert isinstance(c.tokens, np.memmap)
    assert c.tokens.dtype == np.uint16
    assert not c.tokens.flags.writeable


def test_bad_files_are_skipped_with_a_reason_and_good_ones_encoded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    good = make_folder(src)
    bad = bad_files(src)
    dup = src / "zz_duplicate.mid"
    shutil.copy(src / "single.mid", dup)

    result = build_corpus([src], tmp_path / "corpus", workers=1)
    assert result.pieces == len(good)
    skipped = dict(result.skipped)
    for kind, path in [*bad.items(), ("duplicate", dup)]:
        assert str(path) in skipped, kind
        assert skipped[str(path)].strip(), kind
    assert len(skipped) == len(bad) + 1
    assert "empty" in skipped[str(bad["empty"])]
    assert "not a MIDI file" in skipped[str(bad["not_midi"])]
    assert "no notes" in skipped[str(bad["no_notes"])]
    assert "duplicate" in skipped[str(dup)] and "single.mid" in skipped[str(dup)]

    lines = (tmp_path / "corpus" / "skipped.txt").read_text().splitlines()
    assert len(lines) == len(skipped)
    for path, reason in skipped.items():
        assert f"{path}: {reason}" in lines

    c = Corpus.open(tmp_path / "corpus")
    assert sorted(p.path for p in c.pieces()) == sorted(map(str, good))
    assert sorted(c.skipped) == sorted(result.skipped)
    assert c.summary()["skipped"] == len(skipped)


@pytest.mark.parametrize("kind", ["not_midi", "empty", "truncated_header", "no_notes"])
def test_strict_raises_naming_the_bad_file(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    make_folder(src)
    bad = bad_files(tmp_path / "bad")[kind]
    moved = src / bad.name
    shutil.move(bad, moved)
    with pytest.raises(CorpusError, match=re.escape(str(moved))):
        build_corpus([src], tmp_path / "corpus", workers=1, strict=True)
    assert not (tmp_path / "corpus" / "manifest.json").exists()


def test_truncated_track_is_kept_with_the_notes_read(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    whole = header(0, 1) + track(note_track_body(8))
    (src / "cut.mid").write_bytes(whole[: len(whole) - 12])  # the track claims more bytes than remain
    result = build_corpus([src], tmp_path / "corpus", workers=1)
    assert result.pieces == 1, result.skipped
    piece = Corpus.open(tmp_path / "corpus").pieces()[0]
    assert 0 < piece.notes <= 8
    assert piece.lost.get("truncated_tracks") == 1


def test_two_workers_build_the_same_corpus_as_one(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_folder(src)
    bad_files(src)
    for k in range(6):  # enough files that each worker gets several
        write_score(chord_score(bars=k + 1, program=k), src / f"chords{k}.mid")
    r1 = build_corpus([src], tmp_path / "one", workers=1)
    r2 = build_corpus([src], tmp_path / "two", workers=2)
    assert (r2.pieces, r2.tokens, r2.notes) == (r1.pieces, r1.tokens, r1.notes)
    assert sorted(r2.skipped) == sorted(r1.skipped)
    c1, c2 = Corpus.open(tmp_path / "one"), Corpus.open(tmp_path / "two")
    assert c1.fingerprint == c2.fingerprint
    assert c1.pieces() == c2.pieces()
    assert np.array_equal(c1.tokens, c2.tokens)


# ------------------------------------------------------------------------------------------- incremental


def test_rebuild_reuses_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    n = len(make_folder(src))
    bad_files(src)
    first = build_corpus([src], out, workers=1)
    before = Corpus.open(out)
    fingerprint, tokens = before.fingerprint, np.array(before.tokens)

    calls: list[str] = []
    real = corpus_file.parse_midi_bytes

    def counting(data: bytes):  # type: ignore[no-untyped-def]
        calls.append("parse")
        return real(data)

    monkeypatch.setattr(corpus_file, "parse_midi_bytes", counting)
    second = build_corpus([src], out, workers=1)
    monkeypatch.undo()
    assert second.reused == n and second.encoded == 0
    assert calls == []  # nothing was parsed again, not even the bad files
    assert sorted(second.skipped) == sorted(first.skipped)
    after = Corpus.open(out)
    assert after.fingerprint == fingerprint
    assert np.array_equal(after.tokens, tokens)


def test_added_changed_and_deleted_files(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    sources = make_folder(src)
    n = len(sources)
    build_corpus([src], out, workers=1)
    first_bin = Corpus.open(out).manifest["tokens_file"]

    # add one file: only it is encoded
    added = write_score(chord_score(bars=3, program=40), src / "added.mid")
    r = build_corpus([src], out, workers=1)
    assert (r.encoded, r.reused, r.pieces) == (1, n, n + 1)
    c = Corpus.open(out)
    assert str(added) in {p.path for p in c.pieces()}
    assert sorted(f.name for f in out.glob("tokens-*.bin")) == [c.manifest["tokens_file"]]
    assert c.manifest["tokens_file"] != first_bin  # the old token file was replaced and removed

    # change a file's content: it is encoded again, and the manifest holds its new notes
    write_score(chord_score(bars=6, program=40), added)
    r = build_corpus([src], out, workers=1)
    assert (r.encoded, r.reused, r.pieces) == (1, n, n + 1)
    c = Corpus.open(out)
    piece = by_path(c)["added.mid"]
    assert piece.notes == read_midi(added).note_count == 6 * 5
    assert c.tokenizer.decode(c.piece_tokens(piece)).note_count == 30

    # delete a file: it is gone from the manifest
    sources[0].unlink()
    r = build_corpus([src], out, workers=1)
    assert (r.encoded, r.reused, r.pieces) == (0, n, n)
    c = Corpus.open(out)
    assert str(sources[0]) not in {p.path for p in c.pieces()}
    assert len(list(out.glob("tokens-*.bin"))) == 1
    assert not list(out.glob(".*tmp"))  # no temporary files left behind
    assert c.summary()["files"] == n


def test_interrupted_build_leaves_the_previous_corpus_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    make_folder(src)
    build_corpus([src], out, workers=1)
    before = snapshot(out)
    for k in range(4):
        write_score(chord_score(bars=2 + k, program=k), src / f"new{k}.mid")

    real = corpus_mod.encode_file
    calls = 0

    def flaky(path, tokenizer):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return real(path, tokenizer)

    monkeypatch.setattr(corpus_mod, "encode_file", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_corpus([src], out, workers=1)
    assert calls == 3
    monkeypatch.undo()

    assert snapshot(out) == before  # not a byte changed, no temporary file left
    c = Corpus.open(out)
    assert c.summary()["files"] == 5
    # and the next build picks up where the corpus was
    r = build_corpus([src], out, workers=1)
    assert (r.encoded, r.reused, r.pieces) == (4, 5, 9)


def test_rebuild_over_a_damaged_corpus_starts_afresh(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    n = len(make_folder(src))
    build_corpus([src], out, workers=1)
    (tfile,) = out.glob("tokens-*.bin")
    tfile.write_bytes(tfile.read_bytes()[:10])
    r = build_corpus([src], out, workers=1)
    assert (r.encoded, r.reused, r.pieces) == (n, 0, n)
    assert Corpus.open(out).summary()["files"] == n


def test_a_corpus_with_a_duplicate_keeps_the_original_on_rebuild(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    n = len(make_folder(src))
    shutil.copy(src / "single.mid", src / "zz_duplicate.mid")
    first = build_corpus([src], out, workers=1)
    assert first.pieces == n
    second = build_corpus([src], out, workers=1)
    assert second.pieces == n, second.skipped
    assert str(src / "single.mid") in {p.path for p in Corpus.open(out).pieces()}
    assert [p for p, _ in second.skipped] == [str(src / "zz_duplicate.mid")]


def test_encoded_count_excludes_skipped_duplicates(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    n = len(make_folder(src))
    shutil.copy(src / "single.mid", src / "zz_duplicate.mid")
    r = build_corpus([src], out, workers=1)
    assert r.encoded + r.reused == r.pieces == n


# ------------------------------------------------------------------------------------------------- split


def test_split_is_by_content_hash_stable_and_independent_of_location(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for k in range(24):
        write_score(chord_score(bars=1 + k % 6, program=k), src / f"p{k:02d}.mid")
    r = build_corpus([src], tmp_path / "a", workers=1, val_fraction=0.3)
    a = Corpus.open(tmp_path / "a")
    split_by_sha = {p.sha256: p.split for p in a.pieces()}
    assert set(split_by_sha.values()) == {"train", "val"}  # 24 files at 0.3: both splits occur
    for p in a.pieces():
        assert p.split == split_of(p.sha256, 0.3)
    assert r.pieces == 24

    # rebuild: same splits
    build_corpus([src], tmp_path / "a", workers=1, val_fraction=0.3)
    assert {p.sha256: p.split for p in Corpus.open(tmp_path / "a").pieces()} == split_by_sha

    # the same files renamed, reordered and moved into subfolders of another folder: same splits
    other = tmp_path / "elsewhere"
    for k, f in enumerate(sorted(src.iterdir(), reverse=True)):
        target = other / f"dir{k % 3}" / f"renamed_{k:02d}_{f.stem[::-1]}.mid"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, target)
    build_corpus([other], tmp_path / "b", workers=1, val_fraction=0.3)
    assert {p.sha256: p.split for p in Corpus.open(tmp_path / "b").pieces()} == split_by_sha

    # a file renamed in place keeps its split
    victim = sorted(src.iterdir())[5]
    sha_split = {p.path: (p.sha256, p.split) for p in a.pieces()}[str(victim)]
    renamed = victim.with_name("zzz_renamed.mid")
    victim.rename(renamed)
    build_corpus([src], tmp_path / "a", workers=1, val_fraction=0.3)
    now = {p.path: (p.sha256, p.split) for p in Corpus.open(tmp_path / "a").pieces()}
    assert now[str(renamed)] == sha_split
    assert str(victim) not in now


def test_fingerprint_covers_the_train_validation_split(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    src.mkdir()
    for k in range(24):
        write_score(chord_score(bars=1 + k % 6, program=k), src / f"p{k:02d}.mid")
    build_corpus([src], out, workers=1, val_fraction=0.2)
    first = Corpus.open(out)
    build_corpus([src], out, workers=1, val_fraction=0.5)
    other = Corpus.open(out)
    assert len(other.pieces("val")) > len(first.pieces("val"))  # the same pieces, split otherwise
    assert other.fingerprint != first.fingerprint
    assert other.content_fingerprint == first.content_fingerprint and other.val_fraction == 0.5
    build_corpus([src], out, workers=1, val_fraction=0.2)
    assert Corpus.open(out).fingerprint == first.fingerprint  # the same split again: the same fingerprint
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] == first.fingerprint


def test_a_manifest_from_before_split_fingerprints_gets_one_on_open(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    make_folder(src)
    build_corpus([src], out, workers=1, val_fraction=0.4)
    new = Corpus.open(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["fingerprint"] = manifest.pop("content_fingerprint")  # what older builds wrote
    (out / "manifest.json").write_text(json.dumps(manifest))
    old = Corpus.open(out)
    assert (old.content_fingerprint, old.fingerprint) == (new.content_fingerprint, new.fingerprint)


def test_small_corpus_still_has_a_validation_piece(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for k in range(3):
        write_score(chord_score(bars=1 + k), src / f"p{k}.mid")
    build_corpus([src], tmp_path / "c", workers=1, val_fraction=0.01)
    c = Corpus.open(tmp_path / "c")
    assert len(c.pieces("val")) >= 1
    assert len(c.pieces("train")) >= 1
    assert len(c.pieces("train")) + len(c.pieces("val")) == 3
    with pytest.raises(CorpusError):
        c.pieces("test")


# ---------------------------------------------------------------------------------------------- encoding


def test_switching_encoding_reencodes_and_rebuild_keeps_it(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    n = len(make_folder(src))
    build_corpus([src], out, workers=1)
    assert Corpus.open(out).encoding == "beat"

    r = build_corpus([src], out, workers=1, encoding="performance")
    assert (r.encoded, r.reused) == (n, 0)
    c = Corpus.open(out)
    assert c.encoding == "performance"
    assert json.loads((out / "tokenizer.json").read_text())["encoding"] == "performance"
    for piece in c.pieces():  # the tokens really are performance tokens
        assert c.tokenizer.decode(c.piece_tokens(piece)).note_count == piece.notes

    r = build_corpus([src], out, workers=1)  # no encoding given: the corpus keeps its own
    assert (r.encoded, r.reused) == (0, n)
    assert Corpus.open(out).encoding == "performance"

    r = build_corpus([src], out, workers=1, encoding="beat")
    assert (r.encoded, r.reused) == (n, 0)
    assert Corpus.open(out).encoding == "beat"


# ------------------------------------------------------------------------------------------ open errors


@pytest.fixture
def built(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mid").write_bytes(simple_midi_bytes())
    write_score(chord_score(), src / "b.mid")
    build_corpus([src], tmp_path / "corpus", workers=1)
    return tmp_path / "corpus"


def _one_line_error(path: Path, match: str) -> str:
    with pytest.raises(CorpusError) as info:
        Corpus.open(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert match in msg, msg
    return msg


def test_open_missing_folder(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nope", "no such corpus folder")


def test_open_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _one_line_error(tmp_path / "empty", "manifest.json")


def test_open_truncated_token_file(built: Path) -> None:
    (tfile,) = built.glob("tokens-*.bin")
    data = tfile.read_bytes()
    tfile.write_bytes(data[: len(data) // 2])
    _one_line_error(built, tfile.name)


def test_open_missing_token_file(built: Path) -> None:
    (tfile,) = built.glob("tokens-*.bin")
    tfile.unlink()
    _one_line_error(built, "missing")


@pytest.mark.parametrize(
    "text",
    [
        '{"format_version": 1, "files": [',
        "",
        "[1, 2, 3]",
        '{"format_version": 1}',
        "\x00\xff garbage",
    ],
    ids=["cut_json", "empty", "not_an_object", "no_keys", "binary"],
)
def test_open_garbled_manifest(built: Path, text: str) -> None:
    (built / "manifest.json").write_text(text, encoding="latin-1")
    _one_line_error(built, "manifest")


def test_open_manifest_with_bad_piece_entry(built: Path) -> None:
    m = write_v1(built)
    m["files"][0]["offset"] = m["total_tokens"]  # outside the token file
    (built / "manifest.json").write_text(json.dumps(m))
    _one_line_error(built, m["files"][0]["path"])


def test_build_errors_are_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file or folder"):
        build_corpus([tmp_path / "missing"], tmp_path / "corpus", workers=1)
    (tmp_path / "src").mkdir()
    with pytest.raises(CorpusError, match="val fraction"):
        build_corpus([tmp_path / "src"], tmp_path / "corpus", val_fraction=1.0)
    with pytest.raises(CorpusError, match="workers"):
        build_corpus([tmp_path / "src"], tmp_path / "corpus", workers=0)


# ------------------------------------------------------------------------------------------- time limit


@pytest.fixture
def slow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One good file whose parse takes 3 s, under a per-file limit of 0.2 s."""
    path = tmp_path / "src" / "slow.mid"
    path.parent.mkdir()
    write_score(SCORES["single"](), path)
    real = corpus_file.parse_midi_bytes

    def slow(data: bytes):  # type: ignore[no-untyped-def]
        end = time.monotonic() + 3.0
        while time.monotonic() < end:  # pure Python, like a pathological file in the reader
            time.sleep(0.005)
        return real(data)

    monkeypatch.setattr(corpus_file, "parse_midi_bytes", slow)
    monkeypatch.setattr(corpus_file, "FILE_TIME_LIMIT_S", 0.2)
    return path


TOO_SLOW = "took longer than 0.2 s to read"


def test_the_time_limit_holds_in_process_and_puts_back_any_timer(slow_file: Path) -> None:
    from composer.tokenizer import TokenizerConfig, tokenizer_from_config

    tok = tokenizer_from_config(TokenizerConfig())
    fired: list[int] = []
    before = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 100.0)  # someone else's pending timer
    try:
        t0 = time.monotonic()
        enc = encode_file(slow_file, tok)
        assert enc.error == TOO_SLOW and enc.ids is None and time.monotonic() - t0 < 2.0
        assert 90.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100.0 and not fired  # theirs, still pending
        assert signal.getsignal(signal.SIGALRM) is not corpus_file._on_alarm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    # a build in one process (--workers 1, or a single file) skips the file with that reason
    t0 = time.monotonic()
    result = build_corpus([slow_file.parent], slow_file.parent.parent / "corpus", workers=1)
    assert result.skipped == [(str(slow_file), TOO_SLOW)] and time.monotonic() - t0 < 2.0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_the_time_limit_holds_in_worker_processes(slow_file: Path) -> None:
    shutil.copy(slow_file, slow_file.with_name("slow2.mid"))  # two files, for two worker processes
    t0 = time.monotonic()
    result = build_corpus([slow_file.parent], slow_file.parent.parent / "corpus", workers=2)
    assert result.skipped == [(str(slow_file), TOO_SLOW), (str(slow_file.with_name("slow2.mid")), TOO_SLOW)]
    assert time.monotonic() - t0 < 2.5


def test_the_time_limit_holds_off_the_main_thread(slow_file: Path) -> None:
    """SIGALRM reaches only the main thread: elsewhere (and on Windows) the file is given up at the limit."""
    from composer.tokenizer import TokenizerConfig, tokenizer_from_config

    tok = tokenizer_from_config(TokenizerConfig())
    got: list[object] = []
    t0 = time.monotonic()
    caller = threading.Thread(target=lambda: got.append(encode_file(slow_file, tok)))
    caller.start()
    caller.join(10)
    assert time.monotonic() - t0 < 2.0 and getattr(got[0], "error", None) == TOO_SLOW


def test_composer_encode_gives_up_on_a_file_over_the_time_limit(slow_file: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from composer.cli import main

    t0 = time.monotonic()
    res = CliRunner().invoke(main, ["encode", str(slow_file), "-o", str(tmp_path / "tokens")])
    assert res.exit_code == 1 and f"skipped {slow_file}: {TOO_SLOW}" in res.output
    assert time.monotonic() - t0 < 2.0


# ------------------------------------------------------------------------------------------- attributes


def test_pieces_carry_their_attributes_through_the_manifest(tmp_path: Path) -> None:
    from composer.attributes import attributes_of, instrument_set

    src = tmp_path / "src"
    sources = make_folder(src)
    build_corpus([src], tmp_path / "corpus", workers=1)
    c = Corpus.open(tmp_path / "corpus")
    for piece in c.pieces():
        score = read_midi(piece.path)
        assert piece.attributes == attributes_of(score), piece.path
        assert piece.attributes is not None
        if piece.attributes.key is not None:
            assert piece.attributes.key.correlation == attributes_of(score).key.correlation  # type: ignore[union-attr]
        assert piece.programs == instrument_set(score)
        assert piece.density_level in ("low", "mid", "high") and piece.tempo_level in ("low", "mid", "high")
    assert str(by_path(c)["single.mid"].attributes.key) == "C major"  # type: ignore[union-attr]
    levels = [p.density_level for p in c.pieces()]
    assert levels.count("low") == levels.count("high") >= 1  # five distinct densities: terciles
    assert set(c.level_bounds) == {"density", "tempo"}
    s = c.summary()["attributes"]
    assert s["missing"] == 0 and sum(s["keys"].values()) + s["no_key"] == len(sources)
    assert sum(s["density_levels"].values()) == len(sources)
    assert sum(e["pieces"] for e in s["instrument_sets"]) == len(sources)
    assert [DRUMS in e["programs"] for e in s["instrument_sets"]].count(True) == 1
    m = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert m["attributes_version"] == corpus_mod.ATTRIBUTES_VERSION
    assert m["attribute_levels"] == {k: list(v) for k, v in c.level_bounds.items()}


def test_a_rebuild_reuses_the_attributes_and_levels_follow_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import composer.attributes

    src, out = tmp_path / "src", tmp_path / "corpus"
    src.mkdir()
    # the same density in each, tempos of their own
    for k, qpm in enumerate((60.0, 90.0, 120.0)):
        score = chord_score(bars=1 + k)
        score.tempos[0] = TempoChange(0, qpm)
        write_score(score, src / f"t{k}.mid")
    build_corpus([src], out, workers=1)
    first = Corpus.open(out)
    assert [p.tempo_level for p in first.pieces()] == ["low", "mid", "high"]
    before = first.pieces()

    calls: list[int] = []
    real = corpus_file.attributes_of

    def counting(score):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(score)

    monkeypatch.setattr(corpus_file, "attributes_of", counting)
    build_corpus([src], out, workers=1)
    assert calls == []  # reused with the tokens
    assert Corpus.open(out).pieces() == before

    # two faster pieces join: the levels are those of the new corpus
    for k, qpm in enumerate((200.0, 240.0)):
        score = chord_score(bars=4 + k)
        score.tempos[0] = TempoChange(0, qpm)
        write_score(score, src / f"u{k}.mid")
    r = build_corpus([src], out, workers=1)
    assert (r.encoded, r.reused) == (2, 3) and len(calls) == 2
    levels = {Path(p.path).stem: p.tempo_level for p in Corpus.open(out).pieces()}
    assert levels == {"t0": "low", "t1": "low", "t2": "mid", "u0": "high", "u1": "high"}
    assert composer.attributes.level_of(120.0, Corpus.open(out).level_bounds["tempo"]) == "mid"


def test_a_manifest_from_before_attributes_and_labels_still_opens(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    n = len(make_folder(src))
    build_corpus([src], out, workers=1, labels_from_folders=True)
    new = Corpus.open(out)
    manifest = write_v1(out)
    assert Corpus.open(out).pieces() == new.pieces()  # a version 1 manifest opens as it was
    for key in ("attributes_version", "attribute_levels", "label_columns"):
        del manifest[key]
    for entry in manifest["files"]:
        del entry["attributes"], entry["labels"]
    (out / "manifest.json").write_text(json.dumps(manifest))

    old = Corpus.open(out)
    assert old.fingerprint == new.fingerprint
    assert all(p.attributes is None and p.labels == {} and p.density_level is None for p in old.pieces())
    assert (old.label_columns, old.level_bounds) == ((), {})
    s = old.summary()
    assert s["attributes"]["missing"] == n and s["labels"] == {}
    # the next build encodes the files again to compute their attributes
    r = build_corpus([src], out, workers=1)
    assert (r.encoded, r.reused) == (n, 0)
    assert all(p.attributes is not None for p in Corpus.open(out).pieces())
    assert Corpus.open(out).fingerprint == new.fingerprint


def test_attributes_of_other_definitions_are_computed_again(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "corpus"
    n = len(make_folder(src))
    build_corpus([src], out, workers=1)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["attributes_version"] = 0
    (out / "manifest.json").write_text(json.dumps(manifest))
    r = build_corpus([src], out, workers=1)
    assert (r.encoded, r.reused) == (n, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attributes", {"key": "H major", "density": 1.0, "tempo": 120.0}),
        ("attributes", {"key": None, "density": 1.0}),
        ("attributes", {"key": None, "density": 1.0, "tempo": 120.0, "density_level": "huge"}),
        ("attributes", "C major"),
        ("labels", {"mood": ["a", "list"]}),
        ("labels", {"mood": True}),
        ("labels", "happy"),
    ],
)
def test_open_manifest_with_bad_attributes_or_labels(built: Path, field: str, value: object) -> None:
    m = write_v1(built)
    m["files"][0][field] = value
    (built / "manifest.json").write_text(json.dumps(m))
    _one_line_error(built, "malformed manifest entry")
