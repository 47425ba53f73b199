"""composer.labels and a corpus build's labels: from folders, from a CSV, and what a CSV may get wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.corpus import Corpus, build_corpus
from composer.errors import ConfigError
from composer.labels import LabelValue, build_labels, folder_labels, label_counts, read_label_csv
from tests.midi_factory import chord_score, write_score


def labelled_folder(root: Path) -> dict[str, Path]:
    """Five distinct pieces: two in folk/, one in folk/reels/, one in jazz/, one at the top."""
    files = {
        "folk/a.mid": root / "folk" / "a.mid",
        "folk/b.mid": root / "folk" / "b.mid",
        "folk/reels/c.mid": root / "folk" / "reels" / "c.mid",
        "jazz/d.mid": root / "jazz" / "d.mid",
        "e.mid": root / "e.mid",
    }
    for k, path in enumerate(files.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_score(chord_score(bars=1 + k, program=k), path)
    return files


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def labels_by_name(out: Path) -> dict[str, dict[str, LabelValue]]:
    return {Path(p.path).name: p.labels for p in Corpus.open(out).pieces()}


def one_line(info: pytest.ExceptionInfo[ConfigError]) -> str:
    msg = str(info.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# --------------------------------------------------------------------------------------------- folders


def test_labels_from_folders(tmp_path: Path) -> None:
    src = tmp_path / "src"
    labelled_folder(src)
    r = build_corpus([src], tmp_path / "c", workers=1, labels_from_folders=True)
    assert r.label_columns == ("folder",) and r.labelled == 4 and r.warnings == []
    assert labels_by_name(tmp_path / "c") == {
        "a.mid": {"folder": "folk"},
        "b.mid": {"folder": "folk"},
        "c.mid": {"folder": "folk"},  # the first sub-folder, not the deepest
        "d.mid": {"folder": "jazz"},
        "e.mid": {},  # directly in the source folder: unlabelled
    }
    c = Corpus.open(tmp_path / "c")
    assert c.label_columns == ("folder",)
    info = c.summary()["labels"]["folder"]
    assert info["counts"] == {"folk": 3, "jazz": 1} and info["unlabelled"] == 1 and info["labelled"] == 4
    assert not info["numeric"]


def test_folder_labels_are_relative_to_each_source_folder(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for f in (a / "waltz" / "x.mid", b / "x.mid", b / "jig" / "y.mid", tmp_path / "alone.mid"):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    files = [a / "waltz" / "x.mid", b / "x.mid", b / "jig" / "y.mid", tmp_path / "alone.mid"]
    assert folder_labels(files, [a, b, tmp_path / "alone.mid"]) == {
        str(a / "waltz" / "x.mid"): "waltz",
        str(b / "jig" / "y.mid"): "jig",
    }


def test_folders_without_sub_folders_warn(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_score(chord_score(), src / "a.mid")
    r = build_corpus([src], tmp_path / "c", workers=1, labels_from_folders=True)
    assert r.labelled == 0 and len(r.warnings) == 1 and "sub-folder" in r.warnings[0]


# ------------------------------------------------------------------------------------------------- CSV


def test_labels_from_a_csv(tmp_path: Path) -> None:
    src = tmp_path / "src"
    labelled_folder(src)
    csv = write_csv(
        tmp_path / "labels.csv",
        "\ufefffile,valence,arousal,mood\n"  # a byte-order mark, as spreadsheets write
        "folk/a.mid,1,-1, happy \n"
        '"folk/b.mid",0.5,,sad\n'
        "./jazz/d.mid,-0.25,1e0,\n"
        "e.mid,-1,1,happy\n",
    )
    r = build_corpus([src], tmp_path / "c", workers=1, labels_csv=csv)
    assert r.label_columns == ("valence", "arousal", "mood") and r.labelled == 4 and r.warnings == []
    got = labels_by_name(tmp_path / "c")
    assert got == {
        "a.mid": {"valence": 1, "arousal": -1, "mood": "happy"},
        "b.mid": {"valence": 0.5, "mood": "sad"},  # an empty cell: no label in that column
        "c.mid": {},  # no row: unlabelled, not refused
        "d.mid": {"valence": -0.25, "arousal": 1.0},
        "e.mid": {"valence": -1, "arousal": 1, "mood": "happy"},
    }
    assert type(got["a.mid"]["valence"]) is int and type(got["b.mid"]["valence"]) is float
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["label_columns"] == ["valence", "arousal", "mood"]
    s = Corpus.open(tmp_path / "c").summary()["labels"]
    assert s["valence"]["numeric"] and (s["valence"]["min"], s["valence"]["max"]) == (-1, 1)
    assert s["arousal"]["labelled"] == 3 and sorted(s["arousal"]["counts"].values()) == [1, 2]  # 1 == 1.0
    assert s["mood"]["counts"] == {"happy": 2, "sad": 1} and s["mood"]["unlabelled"] == 2


def test_a_column_with_any_text_is_text(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "l.csv", "file,year\na.mid,1990\nb.mid,c. 1750\n")
    assert read_label_csv(csv).rows == {"a.mid": {"year": "1990"}, "b.mid": {"year": "c. 1750"}}
    nan = write_csv(tmp_path / "n.csv", "file,score\na.mid,nan\nb.mid,2\n")
    assert read_label_csv(nan).rows["a.mid"] == {"score": "nan"}  # not a number a label can be


def test_file_paths_may_be_as_found_or_absolute(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = labelled_folder(src)
    csv = write_csv(
        tmp_path / "l.csv",
        f"File,style\n{files['folk/a.mid']}\n{files['jazz/d.mid'].resolve()},bop\nfolk\\b.mid,air\n",
    )
    r = build_corpus([src], tmp_path / "c", workers=1, labels_csv=csv)
    got = labels_by_name(tmp_path / "c")
    assert got["d.mid"] == {"style": "bop"} and got["b.mid"] == {"style": "air"} and got["a.mid"] == {}
    assert r.labelled == 2


def test_folders_and_csv_together(tmp_path: Path) -> None:
    src = tmp_path / "src"
    labelled_folder(src)
    csv = write_csv(tmp_path / "l.csv", "file,tempo_feel\nfolk/a.mid,fast\ne.mid,slow\n")
    r = build_corpus([src], tmp_path / "c", workers=1, labels_from_folders=True, labels_csv=csv)
    assert r.label_columns == ("folder", "tempo_feel")
    got = labels_by_name(tmp_path / "c")
    assert got["a.mid"] == {"folder": "folk", "tempo_feel": "fast"}
    assert got["e.mid"] == {"tempo_feel": "slow"} and got["d.mid"] == {"folder": "jazz"}
    clash = write_csv(tmp_path / "clash.csv", "file,folder\ne.mid,x\n")
    with pytest.raises(ConfigError, match="'folder'") as info:
        build_corpus([src], tmp_path / "c2", workers=1, labels_from_folders=True, labels_csv=clash)
    assert str(clash) in one_line(info)


def test_files_listed_but_not_found_warn_and_strict_refuses(tmp_path: Path) -> None:
    src = tmp_path / "src"
    labelled_folder(src)
    csv = write_csv(tmp_path / "l.csv", "file,mood\nfolk/a.mid,happy\nfolk/gone.mid,sad\nnope.mid,sad\n")
    r = build_corpus([src], tmp_path / "c", workers=1, labels_csv=csv)
    assert r.labelled == 1 and len(r.warnings) == 1
    assert "2 file(s)" in r.warnings[0] and "folk/gone.mid" in r.warnings[0] and str(csv) in r.warnings[0]
    with pytest.raises(ConfigError, match="folk/gone.mid") as info:
        build_corpus([src], tmp_path / "strict", workers=1, labels_csv=csv, strict=True)
    one_line(info)
    assert not (tmp_path / "strict").exists()


def test_a_csv_that_matches_no_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    labelled_folder(src)
    csv = write_csv(tmp_path / "l.csv", "file,mood\nsrc/folk/a.midi,happy\nb.mid,sad\n")
    with pytest.raises(ConfigError) as info:
        build_corpus([src], tmp_path / "c", workers=1, labels_csv=csv)
    msg = one_line(info)
    assert str(csv) in msg and "none of its 2 files" in msg and "relative to the source folder" in msg
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_a_name_matching_two_files_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, bars in ((a, 1), (b, 2)):
        folder.mkdir()
        write_score(chord_score(bars=bars), folder / "x.mid")
    csv = write_csv(tmp_path / "l.csv", "file,mood\nx.mid,happy\n")
    with pytest.raises(ConfigError, match="matches 2 files") as info:
        build_corpus([a, b], tmp_path / "c", workers=1, labels_csv=csv)
    assert f"{csv}:2" in one_line(info)
    twice = write_csv(tmp_path / "t.csv", f"file,mood\nx.mid,happy\n{a / 'x.mid'},sad\n")
    with pytest.raises(ConfigError, match="already labelled on line 2"):
        build_corpus([a], tmp_path / "c", workers=1, labels_csv=twice)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,mood\na.mid,happy\n", "no 'file' column (the header has: name, mood)"),
        ("file\na.mid\n", "no label column besides 'file'"),
        ("file,mood,mood\na.mid,x,y\n", "column 'mood' appears twice"),
        ("file,Mood,mood\na.mid,x,y\n", "column 'mood' appears twice"),
        ("file,,mood\na.mid,x,y\n", "column 2 of the header has no name"),
        ("file,mood score\na.mid,x\n", "column 'mood score': label column names are letters"),
        ("file,mood\na.mid,happy,extra\n", ":2: 3 cells, but the header names 2 columns"),
        ("file,mood\na.mid,happy\n\nb.mid,sad,x\n", ":4: 3 cells"),
        ("file,mood\n,happy\n", ":2: the 'file' cell is empty"),
        ("file,mood\na.mid,happy\n./a.mid,sad\n", ":3: a.mid is listed again (first on line 2)"),
        ("file,mood\n", "no rows after the header"),
        ("", "empty"),
        ("\n \n", "empty"),
        ('file,mood\na.mid,"happy\n', "not a readable CSV file"),
        ("file,mood\na.mid,ha\x00ppy\n", "not a readable CSV file"),
    ],
    ids=[
        "no_file_column",
        "no_label_column",
        "duplicate_column",
        "duplicate_column_case",
        "unnamed_column",
        "bad_column_name",
        "unknown_extra_column",
        "extra_cells_later",
        "empty_file_cell",
        "file_twice",
        "header_only",
        "empty",
        "blank",
        "open_quote",
        "nul_byte",
    ],
)
def test_malformed_csv_is_one_line_naming_the_file(tmp_path: Path, text: str, match: str) -> None:
    csv = write_csv(tmp_path / "labels.csv", text)
    with pytest.raises(ConfigError) as info:
        read_label_csv(csv)
    msg = one_line(info)
    assert msg.startswith(str(csv)) and match in msg, msg


def test_unreadable_csv_is_one_line(tmp_path: Path) -> None:
    latin = write_csv(tmp_path / "latin.csv", "file,mood\ncafé.mid,gai\n", encoding="latin-1")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        read_label_csv(latin)
    assert str(latin) in one_line(info)
    with pytest.raises(ConfigError, match="cannot read the labels file") as info:
        read_label_csv(tmp_path / "missing.csv")
    assert "missing.csv" in one_line(info)
    with pytest.raises(ConfigError, match="cannot read the labels file"):
        read_label_csv(tmp_path)  # a folder


def test_a_bad_csv_stops_the_build_before_it_writes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    labelled_folder(src)
    build_corpus([src], tmp_path / "c", workers=1)
    before = (tmp_path / "c" / "manifest.json").read_bytes()
    csv = write_csv(tmp_path / "l.csv", "name,mood\n")
    with pytest.raises(ConfigError):
        build_corpus([src], tmp_path / "c", workers=1, labels_csv=csv)
    assert (tmp_path / "c" / "manifest.json").read_bytes() == before


# ----------------------------------------------------------------------------------------------- rebuilds


def test_labels_follow_each_build_and_encodings_are_still_reused(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "c"
    labelled_folder(src)
    first = write_csv(tmp_path / "one.csv", "file,mood\nfolk/a.mid,happy\n")
    second = write_csv(tmp_path / "two.csv", "file,mood,energy\nfolk/a.mid,sad,3\njazz/d.mid,happy,5\n")
    build_corpus([src], out, workers=1, labels_csv=first)
    fingerprint = Corpus.open(out).fingerprint
    r = build_corpus([src], out, workers=1, labels_csv=second)
    assert (r.encoded, r.reused) == (0, 5)
    got = labels_by_name(out)
    assert got["a.mid"] == {"mood": "sad", "energy": 3} and got["d.mid"] == {"mood": "happy", "energy": 5}
    assert Corpus.open(out).label_columns == ("mood", "energy")
    assert Corpus.open(out).fingerprint == fingerprint  # labels do not change the token data or split

    r = build_corpus([src], out, workers=1)  # no labels this time: none, and a warning saying so
    assert r.label_columns == () and r.labelled == 0
    assert any("mood, energy" in w and "dropped" in w for w in r.warnings)
    assert all(p.labels == {} for p in Corpus.open(out).pieces())
    assert Corpus.open(out).summary()["labels"] == {}


def test_build_labels_without_options_is_empty(tmp_path: Path) -> None:
    labels = build_labels([tmp_path / "a.mid"], [tmp_path])
    assert (labels.columns, labels.by_path, labels.warnings) == ((), {}, [])


def test_label_counts_most_common_first() -> None:
    counts = label_counts([{"m": "b"}, {"m": "a"}, {"m": "b"}, {}, {"v": 2}, {"v": 1}], ["m", "v", "w"])
    assert counts == {"m": {"b": 2, "a": 1}, "v": {1: 1, 2: 1}, "w": {}}
    assert list(counts["m"]) == ["b", "a"]
