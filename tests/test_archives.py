"""Corpora built straight from archives (.zip, .tar, .tar.gz, ...), without unpacking them."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import composer.archives as archives
import composer.corpus as corpus_mod
from composer.archives import is_archive, list_midi_members, read_midi_members
from composer.cli import main
from composer.corpus import Corpus, build_corpus
from composer.corpus_file import find_sources
from tests.midi_factory import SCORES, chord_score, write_score

FORMATS = {
    "zip": ".zip",
    "tar": ".tar",
    "tar.gz": ".tar.gz",
    "tgz": ".tgz",
    "tar.bz2": ".tar.bz2",
    "tar.xz": ".tar.xz",
}


def midi_folder(root: Path) -> dict[str, Path]:
    """Distinct good files under nested folders, keyed by their path relative to ``root``."""
    files = {
        "folk/a.mid": SCORES["single"](),
        "folk/deeper/b.MIDI": SCORES["multitrack_drums"](),
        "jazz/c.kar": SCORES["tempo_timesig_changes"](),
        "d.mid": chord_score(bars=3, program=5),
    }
    out = {}
    for rel, score in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        out[rel] = write_score(score, path)
    (root / "notes.txt").write_text("not MIDI\n")
    return out


def pack(folder: Path, archive: Path, top: str = "") -> Path:
    """Every file under ``folder`` into ``archive`` (its format by suffix), under ``top`` if given."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    name = archive.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, top + f.relative_to(folder).as_posix())
        return archive
    mode = {".tar": "w", ".gz": "w:gz", ".tgz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}[archive.suffix]
    with tarfile.open(archive, mode) as tar:
        for f in files:
            tar.add(f, top + f.relative_to(folder).as_posix())
    return archive


def tokens_by_name(corpus: Corpus, prefix: Path) -> dict[str, np.ndarray]:
    return {
        Path(p.path).relative_to(prefix).as_posix(): np.asarray(corpus.piece_tokens(p))
        for p in corpus.pieces()
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_archive_builds_the_same_corpus_as_its_folder(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src"
    files = midi_folder(src)
    archive = pack(src, tmp_path / f"midi{FORMATS[fmt]}")
    assert is_archive(archive)
    plain = build_corpus([src], tmp_path / "plain", workers=1)
    packed = build_corpus([archive], tmp_path / "packed", workers=2)
    assert plain.pieces == len(files)
    assert (packed.pieces, packed.tokens, packed.notes) == (plain.pieces, plain.tokens, plain.notes)
    a = tokens_by_name(Corpus.open(tmp_path / "packed"), archive)
    b = tokens_by_name(Corpus.open(tmp_path / "plain"), src)
    assert sorted(a) == sorted(files)
    assert all(np.array_equal(a[k], b[k]) for k in files)
    assert packed.skipped == []  # notes.txt is not MIDI by name: not even looked at


def test_rebuilding_from_the_archive_reuses_every_piece(tmp_path: Path) -> None:
    src = tmp_path / "src"
    midi_folder(src)
    archive = pack(src, tmp_path / "midi.tar.gz")
    build_corpus([archive], tmp_path / "c", workers=1)
    again = build_corpus([archive], tmp_path / "c", workers=1)
    assert (again.encoded, again.reused) == (0, 4)


def test_labels_from_folders_inside_an_archive(tmp_path: Path) -> None:
    src = tmp_path / "src"
    midi_folder(src)
    archive = pack(src, tmp_path / "midi.zip")
    build_corpus([archive], tmp_path / "c", workers=1, labels_from_folders=True)
    labels = {Path(p.path).name: p.labels.get("folder") for p in Corpus.open(tmp_path / "c").pieces()}
    assert labels == {"a.mid": "folk", "b.MIDI": "folk", "c.kar": "jazz", "d.mid": None}


def test_duplicates_across_archive_and_folder_are_kept_once_and_counted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    midi_folder(src)
    archive = pack(src, tmp_path / "copy.tar")
    r = build_corpus([src, archive], tmp_path / "c", workers=1)
    assert r.pieces == 4 and r.duplicates == 4
    assert all(reason.startswith("duplicate of ") and str(src) in reason for _p, reason in r.skipped)
    assert all(str(archive) in path for path, _r in r.skipped)


def test_a_truncated_archive_keeps_the_members_before_the_damage(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for k in range(6):
        write_score(chord_score(bars=8 + k, program=k), src / f"p{k}.mid")
    whole = pack(src, tmp_path / "whole.tar")
    data = whole.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2 + 700])  # ends inside a member
    listing = list_midi_members(cut)
    assert listing.damage is not None and 0 < len(listing.names) < 6
    r = build_corpus([cut], tmp_path / "c", workers=1)
    assert 0 < r.pieces < 6
    reasons = dict(r.skipped)
    assert any(p.endswith("cut.tar") or "cut.tar/" in p for p in reasons)
    assert all(reason.startswith("archive ") for reason in reasons.values()), reasons


def test_an_unreadable_archive_is_one_skipped_line_and_the_rest_builds(tmp_path: Path) -> None:
    src = tmp_path / "src"
    midi_folder(src)
    bogus = src / "broken.zip"
    bogus.write_bytes(b"PK\x03\x04 this is not really a zip file")
    r = build_corpus([src], tmp_path / "c", workers=1)
    assert r.pieces == 4
    assert r.skipped == [(str(bogus), r.skipped[0][1])]
    assert r.skipped[0][1].startswith("archive not a readable archive")


def test_an_oversized_member_is_skipped_by_its_header_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    files = midi_folder(src)
    small = min(files.values(), key=lambda p: p.stat().st_size)
    monkeypatch.setattr(archives, "MAX_FILE_BYTES", small.stat().st_size)
    for suffix in (".zip", ".tar.gz"):
        got = list(read_midi_members(list_midi_members(pack(src, tmp_path / f"m{suffix}"))))
        too_big = {Path(m.path).name for m in got if m.error}
        assert too_big == {p.name for p in files.values() if p.stat().st_size > small.stat().st_size}
        assert all("more than the" in str(m.error) for m in got if m.error)


def test_member_names_are_relative_and_listed_once(tmp_path: Path) -> None:
    buf = _midi_bytes(tmp_path)
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("/abs/x.mid", buf)
        zf.writestr("./abs/x.mid", buf)  # the same name once cleaned: the first one is read
        zf.writestr("dir/", b"")
        zf.writestr("y.txt", b"text")
    listing = list_midi_members(archive)
    assert listing.names == ["abs/x.mid"] and listing.damage is None
    assert [str(m.path) for m in read_midi_members(listing)] == [str(archive / "abs" / "x.mid")]


def _midi_bytes(tmp_path: Path) -> bytes:
    return write_score(chord_score(bars=2), tmp_path / "one.mid").read_bytes()


def test_members_are_read_as_the_workers_need_them(tmp_path: Path) -> None:
    """An archive's members are not all read (held in memory) before the first piece is encoded."""
    data = _midi_bytes(tmp_path)
    consumed = 0

    def items():  # noqa: ANN202
        nonlocal consumed
        for k in range(2000):
            consumed += 1
            yield archives.MemberData(Path(f"a.zip/{k}.mid"), data=data)

    config = corpus_mod.TokenizerConfig()
    results = corpus_mod._encode_all(items(), 2000, config, frozenset(), workers=2)
    first = next(results)
    assert first.error is None and first.ids is not None
    assert consumed <= 4 * 2 * 32 + 32, consumed  # in flight: 4 chunks per worker of at most 32 files
    results.close()


def test_find_sources_orders_files_then_archives(tmp_path: Path) -> None:
    src = tmp_path / "src"
    midi_folder(src)
    inner = pack(src, tmp_path / "inner.tgz")
    (src / "inner.tgz").write_bytes(inner.read_bytes())
    found = find_sources([src])
    paths = [str(p) for p in found.paths]
    assert paths[:4] == sorted(
        str(p) for p in src.rglob("*") if p.suffix.lower() in {".mid", ".midi", ".kar"}
    )
    assert all(p.startswith(str(src / "inner.tgz") + "/") for p in paths[4:]) and len(paths) == 8
    assert len(found) == 8


def test_cli_builds_from_an_archive_and_reports_duplicates(tmp_path: Path) -> None:
    src = tmp_path / "src"
    midi_folder(src)
    archive = pack(src, tmp_path / "lmd.tar.gz", top="lmd/")
    twice = tmp_path / "twice.zip"
    pack(src, twice)
    r = CliRunner().invoke(main, ["corpus", "build", str(archive), str(twice), "-o", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "4 pieces (4 encoded, 0 reused), 4 skipped (4 of them duplicates)" in r.output
    pieces = Corpus.open(tmp_path / "c").pieces()
    assert sorted(Path(p.path).relative_to(archive).as_posix() for p in pieces) == [
        "lmd/d.mid",
        "lmd/folk/a.mid",
        "lmd/folk/deeper/b.MIDI",
        "lmd/jazz/c.kar",
    ]


def test_a_zip_member_with_a_bad_checksum_is_skipped_alone(tmp_path: Path) -> None:
    data = _midi_bytes(tmp_path)
    other = write_score(chord_score(bars=3, program=7), tmp_path / "two.mid").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("good.mid", other)
        zf.writestr("bad.mid", data)
    raw = bytearray(buf.getvalue())
    at = raw.rfind(data[20:40])  # a byte inside bad.mid's stored data (written last)
    raw[at] ^= 0xFF
    archive = tmp_path / "crc.zip"
    archive.write_bytes(bytes(raw))
    r = build_corpus([archive], tmp_path / "c", workers=1)
    assert r.pieces == 1
    assert len(r.skipped) == 1 and r.skipped[0][0] == str(archive / "bad.mid")
    assert "cannot read member" in r.skipped[0][1] and "CRC" in r.skipped[0][1]
