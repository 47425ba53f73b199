"""Hostile and broken MIDI: every file is encoded for what it holds or skipped with one line; none
crashes, hangs, or costs the good files beside it."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from composer.corpus import Corpus, build_corpus, encode_file
from composer.errors import MidiReadError
from composer.midi import parse_midi_bytes
from composer.tokenizer import TokenizerConfig, tokenizer_from_config
from tests.midi_factory import header, note_track_body, simple_midi_bytes, track

FUZZ_FIXTURES = Path(__file__).parent / "fixtures" / "fuzz"


def varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def many_notes(n: int) -> bytes:
    body = bytearray()
    for i in range(n):
        body += bytes([0x00, 0x90, 36 + i % 60, 90, 0x10, 0x80, 36 + i % 60, 0])
    return header(0, 1) + track(bytes(body) + b"\x00\xff\x2f\x00")


def sixteen_channels() -> bytes:
    body = bytearray()
    for ch in range(16):
        body += bytes([0x00, 0xC0 | ch, ch * 7, 0x00, 0x90 | ch, 40 + ch, 100])
    body += bytes([0x83, 0x60])  # 480 ticks later every note stops
    for ch in range(16):
        body += bytes([0x80 | ch, 40 + ch, 0, 0x00])
    return header(0, 1) + track(bytes(body[:-1]) + b"\x00\xff\x2f\x00")


GOOD = simple_midi_bytes()
HOSTILE: dict[str, bytes] = {
    "not_midi": b"%PDF-1.4 this is not a MIDI file at all",
    "empty": b"",
    "truncated_header": GOOD[:9],
    "truncated_in_track": GOOD[:30],
    "truncated_in_running_status": GOOD[: len(GOOD) - 9],
    "chunk_longer_than_file": header(0, 1) + b"MTrk" + struct.pack(">I", 0x7FFFFFFF) + note_track_body(),
    "header_claims_65535_tracks": header(1, 65535) + track(note_track_body()),
    "division_zero": header(0, 1, 0) + track(note_track_body()),
    "smpte_division": header(0, 1, ((256 - 30) << 8) | 80) + track(note_track_body()),
    "format_2": header(2, 2) + track(note_track_body()) + track(note_track_body()),
    "unknown_chunks": header(1, 1) + b"JUNK" + struct.pack(">I", 5) + b"hello" + track(note_track_body()),
    "tempo_zero": header(0, 1) + track(b"\x00\xff\x51\x03\x00\x00\x00" + note_track_body()),
    "absurd_tempo": header(0, 1) + track(b"\x00\xff\x51\x03\xff\xff\xff" + note_track_body()),
    "delta_near_28_bits": header(0, 1)
    + track(bytes([0, 0x90, 60, 90]) + varlen(0x0FFFFFFF) + bytes([0x80, 60, 0]) + b"\x00\xff\x2f\x00"),
    "note_on_never_ends": header(0, 1)
    + track(bytes([0, 0x90, 60, 90, 0x83, 0x60, 0x90, 64, 90]) + b"\x00\xff\x2f\x00"),
    "note_off_without_on": header(0, 1) + track(bytes([0, 0x80, 60, 0, 0, 0x80, 61, 0]) + note_track_body(1)),
    "sysex_lyrics_unknown_meta": header(0, 1)
    + track(
        b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7"  # sysex
        + b"\x00\xff\x05\x04la-la"[:8]  # lyric
        + b"\x00\xff\x7f\x03abc"  # sequencer-specific meta
        + b"\x00\xff\x60\x02zz"  # unknown meta type
        + note_track_body()
    ),
    "sixteen_channels": sixteen_channels(),
    "no_notes": header(0, 1) + track(b"\x00\xff\x2f\x00"),
    "data_byte_without_status": header(0, 1) + track(b"\x00\x3c\x40" + note_track_body()),
    "riff_without_midi": b"RIFF\x10\x00\x00\x00RMIDdata\x00\x00\x00\x00",
}
# what each may legitimately hold: None = must be refused with a reason; an int = at least that many notes
EXPECT: dict[str, int | None] = {
    "not_midi": None,
    "empty": None,
    "truncated_header": None,
    "truncated_in_track": 1,
    "truncated_in_running_status": 3,
    "chunk_longer_than_file": 4,
    "header_claims_65535_tracks": 4,
    "division_zero": None,
    "smpte_division": 4,
    "format_2": 8,
    "unknown_chunks": 4,
    "tempo_zero": 4,
    "absurd_tempo": 4,
    "delta_near_28_bits": None,  # a note lasting years: refused as too long, not encoded for hours
    "note_on_never_ends": 2,
    "note_off_without_on": 1,
    "sysex_lyrics_unknown_meta": 4,
    "sixteen_channels": 16,
    "no_notes": None,
    "data_byte_without_status": 0,
    "riff_without_midi": None,
}


@pytest.mark.parametrize("encoding", ["beat", "performance"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_file_is_encoded_or_refused_with_one_line(tmp_path, name, encoding):
    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding))
    path = tmp_path / f"{name}.mid"
    path.write_bytes(HOSTILE[name])
    t0 = time.perf_counter()
    enc = encode_file(path, tok)
    assert time.perf_counter() - t0 < 10, "a hostile file must not hang the encoder"
    want = EXPECT[name]
    if want is None:
        assert enc.error is not None and "\n" not in enc.error, enc.error
        assert not enc.error.startswith("unexpected"), enc.error  # a reason, not a caught bug
    elif enc.error is None:
        assert enc.notes >= want
        tok.decode(enc.ids)
    else:
        assert want == 0, f"{name} should have been encoded: {enc.error}"


def test_a_file_of_200k_notes_is_encoded(tmp_path):
    path = tmp_path / "big.mid"
    path.write_bytes(many_notes(200_000))
    for encoding in ("beat", "performance"):
        enc = encode_file(path, tokenizer_from_config(TokenizerConfig(encoding=encoding)))
        assert enc.error is None and enc.notes == 200_000


def test_hostile_folder_never_costs_the_good_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):  # three good files, distinct content
        (src / f"good{i}.mid").write_bytes(header(0, 1) + track(note_track_body(2 + i)))
    for name, data in HOSTILE.items():
        (src / f"{name}.mid").write_bytes(data)
    result = build_corpus([src], tmp_path / "corpus", workers=2)
    corpus = Corpus.open(tmp_path / "corpus")
    names = {Path(p.path).name for p in corpus.pieces()}
    assert {"good0.mid", "good1.mid", "good2.mid"} <= names
    refused = {Path(p).stem for p, _ in result.skipped}
    assert {n for n, w in EXPECT.items() if w is None} <= refused
    assert all("\n" not in reason for _, reason in result.skipped)
    assert (tmp_path / "corpus" / "skipped.txt").read_text().count("\n") == len(result.skipped)


def test_refusal_reasons_are_specific():
    with pytest.raises(MidiReadError, match="not a MIDI file"):
        parse_midi_bytes(HOSTILE["not_midi"])
    with pytest.raises(MidiReadError, match="division"):
        parse_midi_bytes(HOSTILE["division_zero"])


@pytest.mark.parametrize("path", sorted(FUZZ_FIXTURES.glob("*.mid")) if FUZZ_FIXTURES.is_dir() else [])
def test_fuzz_regressions(path, tmp_path):
    """Inputs that once crashed the round trip (saved by benchmarks/fuzz.py) stay fixed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fuzz", Path(__file__).parent.parent / "benchmarks" / "fuzz.py"
    )
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)  # type: ignore[union-attr]
    assert fuzz.run_one(path.read_bytes(), tmp_path) is None
