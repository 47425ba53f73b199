"""The piece table: per-piece metadata as columns beside the token file (``composer.piecetable``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.attributes import MODES, Attributes, Key
from composer.corpus import Corpus, build_corpus
from composer.errors import CorpusError
from composer.piecetable import Piece, PieceTable, table_of
from tests.midi_factory import SCORES, chord_score, simple_midi_bytes, write_score
from tests.old_corpus import write_v1

# --------------------------------------------------------------------------------------- round trips

keys = st.none() | st.builds(
    Key,
    st.integers(0, 11),
    st.sampled_from(MODES),
    st.none() | st.floats(-1, 1, allow_nan=False),
)
attributes = st.none() | st.builds(
    Attributes,
    keys,
    st.floats(0, 50, allow_nan=False),
    st.floats(1, 400, allow_nan=False),
)
labels = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.text(max_size=8) | st.integers(-5, 5) | st.floats(-1, 1, allow_nan=False),
    max_size=3,
)


@st.composite
def pieces(draw: st.DrawFn) -> list[Piece]:
    out, offset = [], 0
    for _ in range(draw(st.integers(0, 6))):
        attrs = draw(attributes)
        length = draw(st.integers(2, 50))
        pitch = draw(st.none() | st.integers(0, 127))
        level = st.none() if attrs is None else st.sampled_from(["low", "mid", "high"])
        out.append(
            Piece(
                path=draw(st.text(min_size=1, max_size=20)),
                sha256=draw(st.binary(min_size=32, max_size=32)).hex(),
                offset=offset,
                length=length,
                notes=draw(st.integers(0, 10_000)),
                seconds=draw(st.floats(0, 1e5, allow_nan=False)),
                split=draw(st.sampled_from(["train", "val"])),
                pitch_min=pitch,
                pitch_max=pitch,
                programs=tuple(draw(st.lists(st.integers(0, 128), max_size=4))),
                lost=draw(st.dictionaries(st.sampled_from(["overlaps", "sub_step"]), st.integers(1, 9))),
                attributes=attrs,
                density_level=draw(level),
                tempo_level=draw(level),
                labels=draw(labels),
            )
        )
        offset += length
    return out


def same(a: list[Piece], b: list[Piece]) -> None:
    """Equal, key correlations included (Key leaves them out of ==)."""
    assert a == b
    corr = [
        None if p.attributes is None or p.attributes.key is None else p.attributes.key.correlation for p in a
    ]
    assert corr == [
        None if p.attributes is None or p.attributes.key is None else p.attributes.key.correlation for p in b
    ]


@settings(max_examples=60, deadline=None)
@given(pieces())
def test_any_pieces_come_back_from_the_table_file_as_they_went_in(
    tmp_path_factory, listed: list[Piece]
) -> None:
    path = tmp_path_factory.mktemp("t") / "pieces.npz"
    table = table_of(listed)
    same(table.pieces(), listed)
    table.save(path)
    back = PieceTable.load(path, sum(p.length for p in listed))
    same(back.pieces(), listed)
    assert [back.piece(i) for i in range(len(back))] == listed
    assert [back.path(i) for i in range(len(back))] == [p.path for p in listed]
    assert [back.sha256(i) for i in range(len(back))] == [p.sha256 for p in listed]


@pytest.fixture
def built(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mid").write_bytes(simple_midi_bytes())
    write_score(chord_score(), src / "b.mid")
    write_score(SCORES["multitrack_drums"](), src / "c.mid")
    build_corpus([src], tmp_path / "corpus", workers=1, labels_from_folders=True)
    return tmp_path / "corpus"


def test_a_new_corpus_keeps_its_pieces_in_the_table_not_the_manifest(built: Path) -> None:
    m = json.loads((built / "manifest.json").read_text())
    assert m["format_version"] == 2 and "files" not in m and m["pieces"] == 3
    assert sorted(p.name for p in built.glob("pieces-*.npz")) == [m["pieces_file"]]
    c = Corpus.open(built)
    assert [Path(p.path).name for p in c.pieces()] == ["a.mid", "b.mid", "c.mid"]
    assert sum(p.length for p in c.pieces()) == m["total_tokens"]


def test_a_version_1_corpus_opens_with_the_same_pieces_and_fingerprint(built: Path) -> None:
    new = Corpus.open(built)
    write_v1(built)
    old = Corpus.open(built)
    same(old.pieces(), new.pieces())
    assert old.fingerprint == new.fingerprint and old.summary() == new.summary()
    # the next build writes a piece table again, reusing every piece
    r = build_corpus([built.parent / "src"], built, workers=1, labels_from_folders=True)
    assert (r.encoded, r.reused) == (0, 3)
    again = Corpus.open(built)
    assert again.manifest["format_version"] == 2
    same(again.pieces(), new.pieces())


def test_a_rebuild_replaces_the_table_and_removes_the_old_one(built: Path) -> None:
    write_score(chord_score(bars=3), built.parent / "src" / "d.mid")
    build_corpus([built.parent / "src"], built, workers=1)
    m = json.loads((built / "manifest.json").read_text())
    assert [p.name for p in built.glob("pieces-*.npz")] == [m["pieces_file"]] and m["pieces"] == 4


def _one_line(path: Path, match: str) -> None:
    with pytest.raises(CorpusError) as info:
        Corpus.open(path)
    msg = str(info.value)
    assert "\n" not in msg and match in msg, msg


def _rewrite(built: Path, **changes: np.ndarray) -> None:
    path = built / json.loads((built / "manifest.json").read_text())["pieces_file"]
    with np.load(path) as npz:
        cols = {k: npz[k] for k in npz.files}
    cols.update(changes)
    with open(path, "wb") as fh:
        np.savez(fh, **cols)


def test_a_missing_table_is_one_line(built: Path) -> None:
    next(built.glob("pieces-*.npz")).unlink()
    _one_line(built, "piece table is missing")


@pytest.mark.parametrize("data", [b"", b"hello\n", b"PK\x03\x04 not really", b"\x93NUMPY garbage"])
def test_an_unreadable_table_is_one_line(built: Path, data: bytes) -> None:
    next(built.glob("pieces-*.npz")).write_bytes(data)
    _one_line(built, "unreadable piece table")
    _one_line(built, "rebuild the corpus")


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("offset", np.array([0, 10, 10**9], np.int64), "lies outside the token file"),
        ("length", np.array([1, 2, 2], np.int64), "lies outside the token file"),
        ("offset", np.array([0, 1], np.int64), "shape"),
        ("notes", np.array([1.0, 2.0, 3.0]), "expected int64"),
        ("split", np.array([0, 1, 2], np.uint8), "out of range"),
        ("key", np.array([0, 24, -1], np.int8), "out of range"),
        ("tempo", np.array([120.0, 0.0, 90.0]), "out of range"),
        ("path_end", np.array([3, 2, 1], np.int64), "does not divide"),
        ("version", np.array([9]), "version must be"),
        ("extras", np.frombuffer(b'{"lost": {"7": {"x": 1}}, "labels": {}}', np.uint8), "not there"),
        ("extras", np.frombuffer(b'{"lost": {}, "labels": {"0": {"mood": [1]}}}', np.uint8), "a label is"),
    ],
)
def test_a_malformed_table_is_one_line(built: Path, column: str, value: np.ndarray, match: str) -> None:
    _rewrite(built, **{column: value})
    _one_line(built, match)


def test_a_table_without_a_column_is_one_line(built: Path) -> None:
    path = built / json.loads((built / "manifest.json").read_text())["pieces_file"]
    with np.load(path) as npz:
        cols = {k: npz[k] for k in npz.files if k != "tempo"}
    with open(path, "wb") as fh:
        np.savez(fh, **cols)
    _one_line(built, "no column tempo")


def test_a_manifest_of_an_unknown_version_says_rebuild(built: Path) -> None:
    m = json.loads((built / "manifest.json").read_text())
    m["format_version"] = 7
    (built / "manifest.json").write_text(json.dumps(m))
    _one_line(built, "rebuild the corpus")
