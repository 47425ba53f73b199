"""The built-in Bach chorale corpus: music21's chorales exported to MIDI."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("music21")

from composer import bach  # noqa: E402
from composer.errors import ComposerError  # noqa: E402
from composer.midi import Score, read_midi  # noqa: E402


def test_sources_are_chorales_one_per_stem() -> None:
    sources = bach.chorale_sources()
    assert 350 <= len(sources) <= 450
    stems = [s.stem.lower() for s in sources]
    assert len(stems) == len(set(stems))
    assert all(s.name.startswith("bwv") for s in sources)
    by_stem = {s.stem: s for s in sources}
    assert by_stem["bwv277"].suffix == ".mxl"  # its Humdrum twin fails; the .mxl wins
    assert "bwv846" not in by_stem  # a keyboard prelude, not a chorale
    assert stems.index("bwv2.6") < stems.index("bwv10.7")  # numbers sort as numbers


def test_export_reads_back_and_is_idempotent(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = bach.export_chorales(tmp_path, workers=2, limit=3, progress=lambda d, t: seen.append((d, t)))
    assert result.failed == []
    assert len(result.written) == 3
    assert [p.name for p in result.written] == [bach.midi_name(s) for s in bach.chorale_sources()[:3]]
    assert seen[-1] == (3, 3)
    for path in result.written:
        score = read_midi(path)
        assert [i.name for i in score.instruments] == ["Soprano", "Alto", "Tenor", "Bass"]
        assert all(i.program == bach.CHORALE_PROGRAM and len(i.notes) >= 20 for i in score.instruments)
        assert score.time_signatures and score.time_signatures[0].tick == 0
        assert score.tempos and 30 <= score.tempos[0].qpm <= 200
        # all four voices end together
        assert len({max(n.end for n in i.notes) for i in score.instruments}) == 1
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".mid"]  # no temp files left behind

    mtimes = {p: p.stat().st_mtime_ns for p in result.written}
    again = bach.export_chorales(tmp_path, workers=2, limit=3)
    assert again.written == result.written and again.failed == []
    assert {p: p.stat().st_mtime_ns for p in again.written} == mtimes


def test_empty_file_is_rewritten(tmp_path: Path) -> None:
    first = bach.chorale_sources()[0]
    (tmp_path / bach.midi_name(first)).write_bytes(b"")
    result = bach.export_chorales(tmp_path, workers=1, limit=1)
    assert result.written == [tmp_path / bach.midi_name(first)]
    assert read_midi(result.written[0]).note_count > 0


def test_failures_are_collected_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = bach.chorale_sources()[1]
    real = bach.chorale_to_score

    def flaky(source: Path) -> Score:
        if source == bad:
            raise ValueError("broken\nscore")
        return real(source)

    monkeypatch.setattr(bach, "chorale_to_score", flaky)
    # workers=1 runs in this process, where the monkeypatch applies
    result = bach.export_chorales(tmp_path, workers=1, limit=3)
    assert len(result.written) == 2
    assert result.failed == [(bad.name, "ValueError: broken score")]
    assert not (tmp_path / bach.midi_name(bad)).exists()


def test_missing_music21_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bach, "music21_available", lambda: False)
    with pytest.raises(ComposerError, match="pip install"):
        bach.export_chorales(tmp_path)
    with pytest.raises(ComposerError, match="pip install"):
        bach.chorale_sources()
