"""The form section of ``composer evaluate``: repeated bars, the repeat profile and loops, samples against
the reference, on pieces whose form is known (AABA songs, a one-bar loop, a through-composed piece)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from composer.cli import main
from composer.evaluate import form_section
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, write_midi
from composer.train import train
from tests.helpers_train import build_tiny_corpus, tiny_config
from tests.midi_factory import TPQ

torch.set_num_threads(1)

BAR = 4 * TPQ
A = [[60, 62, 64, 65], [67, 65, 64, 62], [60, 64, 67, 72], [71, 67, 62, 59]]
B = [[59, 60, 62, 59], [64, 63, 64, 66], [57, 59, 57, 52], [60, 67, 65, 64]]  # no bar shaped like A's


def _piece(bars: list[list[int]]) -> Score:
    notes = [
        Note(p, 80, b * BAR + k * TPQ, b * BAR + (k + 1) * TPQ)
        for b, ps in enumerate(bars)
        for k, p in enumerate(ps)
    ]
    return Score(
        TPQ, [Instrument(0, False, "Piano", notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)]
    )


def _aaba() -> Score:
    return _piece(A + A + B + A)  # the second and third A repeat bars 4 and 12 bars back: 8 of 16


def _loop() -> Score:
    return _piece([A[0]] * 20)  # bars 4..19 repeat bar 0: 16 of 20, and every lag matches


def _through() -> Score:
    return _piece(A + B)  # nothing comes back


def test_form_section_gives_the_known_shares() -> None:
    f = form_section([_aaba(), _aaba()], [_loop(), _through()])
    s, r = f["samples"], f["reference"]
    assert f["min_lag"] == 4
    assert s["exact"] == pytest.approx(0.5) and s["transposed"] == pytest.approx(0.5) and s["loops"] == 0
    assert r["exact"] == pytest.approx((0.8 + 0.0) / 2) and r["loops"] == 1 and r["pieces"] == 2
    # the profile by bar lag: AABA matches at lags 4 (A2 vs A1 of 12 pairs), 8 (A3 vs A2 of 8), none at 1
    assert s["profile"][0] == 0.0
    assert s["profile"][3] == pytest.approx(4 / 12) and s["profile"][7] == pytest.approx(4 / 8)
    assert r["profile"][0] == pytest.approx(0.5)  # the loop always, the through-composed piece never
    # a transposed repeat counts only up to transposition
    up = form_section([_piece(A + [[p + 2 for p in bar] for bar in A])], [_aaba()])["samples"]
    assert up["exact"] == 0.0 and up["transposed"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("form")
    corpus = build_tiny_corpus(tmp, n=6)
    train(corpus, tmp / "run", tiny_config(max_steps=2, eval_every=2), progress=False, plot=False)
    return tmp / "run"


def test_evaluate_prints_and_writes_the_form_of_samples_and_reference(run: Path, tmp_path: Path) -> None:
    songs, reference = tmp_path / "songs", tmp_path / "reference"
    songs.mkdir()
    reference.mkdir()
    for i in range(2):
        write_midi(_aaba(), songs / f"song_{i:03d}.mid")
    write_midi(_loop(), reference / "loop.mid")
    write_midi(_through(), reference / "through.mid")
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        main,
        ["evaluate", str(run), str(reference), "--samples-dir", str(songs), "--distances", "",
         "--no-cache", "--json", str(out), "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "form: samples vs reference" in res.output
    rows = {line[:40].strip(): line[40:].split() for line in res.output.splitlines() if line.startswith("  ")}
    assert rows["repeated bars, exact"] == ["50.0%", "40.0%"]
    assert rows["repeated bars, up to transposition"] == ["50.0%", "40.0%"]
    assert rows["same as the bar 1 before"] == ["0.0%", "50.0%"]
    assert rows["same as the bar 16 before"] == ["-", "100.0%"]  # AABA has no pair of bars 16 apart
    assert rows["loops (one or two bars over and over)"] == ["0", "of", "2", "1", "of", "2"]
    f = json.loads(out.read_text())["form"]
    assert f["samples"]["exact"] == pytest.approx(0.5) and f["reference"]["loops"] == 1
    assert len(f["samples"]["profile"]) >= 16 and f["lags"] == [1, 2, 4, 8, 16]


def test_no_samples_means_no_form_section(run: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    write_midi(_aaba(), reference / "aaba.mid")
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        main,
        ["evaluate", str(run), str(reference), "--samples", "0", "--distances", "", "--json", str(out),
         "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "form:" not in res.output and "form" not in json.loads(out.read_text())
