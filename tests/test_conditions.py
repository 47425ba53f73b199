"""Conditions (composer.conditions): tokens after BOS, training with them, steering generation by them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from composer.attributes import parse_key
from composer.batching import Augmenter, Batcher, PieceStream, TokenStore
from composer.cli import main
from composer.conditions import (
    KEYS,
    Condition,
    ConditionSet,
    from_corpus,
    parse_condition_names,
    parse_instruments,
    steering,
)
from composer.corpus import Corpus, build_corpus
from composer.errors import ConfigError
from composer.midi import TempoChange, read_midi
from composer.model import LSTMModel, ModelConfig
from composer.sample import Length, sample_ids
from composer.tokenizer import TokenizerConfig, tokenizer_from_config
from tests.helpers_train import make_midi_files, tiny_config

ENCODINGS = ("beat", "performance")


def _set() -> ConditionSet:
    return ConditionSet(
        (
            Condition("key", tuple(k.name for k in KEYS)),
            Condition("density", ("low", "mid", "high")),
            Condition("label:mood", ("happy", "sad")),
        ),
        {"density": (1.0, 2.0)},
    )


# ------------------------------------------------------------------------------------------ tokens


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_condition_tokens_are_appended_so_no_music_id_moves(encoding: str) -> None:
    plain = tokenizer_from_config(TokenizerConfig(encoding=encoding))
    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding), _set())
    n = plain.vocab.size
    assert tok.vocab.tokens[:n] == plain.vocab.tokens
    assert tok.vocab.size == n + 25 + 4 + 3
    # golden ids: each condition's NONE first, then its values in the set's order
    assert tok.vocab.id("COND_KEY_NONE") == n
    assert tok.vocab.id("COND_KEY_C_major") == n + 1
    assert tok.vocab.id("COND_DENSITY_NONE") == n + 25
    assert tok.vocab.id("COND_LABEL_MOOD_sad") == n + 25 + 4 + 2


def test_a_condition_set_round_trips_through_json() -> None:
    cs = _set()
    again = ConditionSet.from_dict(json.loads(json.dumps(cs.to_dict())))
    assert again == cs
    with pytest.raises(ConfigError, match="malformed conditions"):
        ConditionSet.from_dict({"conditions": [{"name": "key"}]})
    with pytest.raises(ConfigError, match="condition must be one of"):
        Condition("mood", ("a",))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_conditions_go_after_bos_and_the_decoder_ignores_them(encoding: str, tmp_path: Path) -> None:
    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding), _set())
    path = make_midi_files(tmp_path, n=1)[0]
    ids, _ = tok.encode(read_midi(path))
    asked = {"key": "D minor", "label:mood": "sad"}
    conditioned = tok.condition(ids, asked)
    assert conditioned[0] == tok.bos_id
    assert tok.ids_to_tokens(conditioned[1:4]) == [
        "COND_KEY_D_minor",
        "COND_DENSITY_NONE",
        "COND_LABEL_MOOD_sad",
    ]
    assert np.array_equal(conditioned[4:], ids[1:])
    assert np.array_equal(tok.strip_conditions(conditioned), ids)
    assert tok.conditions is not None
    assert tok.conditions.values_of(tok.vocab, conditioned) == {"key": "D minor", "density": None, **asked}
    a, b = tok.decode(ids), tok.decode(conditioned)
    assert [[(x.start, x.end, x.pitch, x.velocity) for x in i.notes] for i in a.instruments] == [
        [(x.start, x.end, x.pitch, x.velocity) for x in i.notes] for i in b.instruments
    ]


def test_transposition_moves_the_key_condition_with_the_notes() -> None:
    tok = tokenizer_from_config(TokenizerConfig(), _set())
    for shift in (-5, -1, 3, 7):
        lut = tok.transpose_lut(shift)
        for key in ("D minor", "F# major", "B minor"):
            got = tok.ids_to_tokens(
                [int(lut[tok.vocab.id("COND_KEY_" + key.replace(" ", "_").replace("#", "_"))])]
            )
            want = parse_key(key).transposed(shift).name
            assert got == [tok.vocab.tokens[tok.conditions.prefix(tok.vocab, {"key": want})[0]]]  # type: ignore[union-attr]
        none = tok.vocab.id("COND_KEY_NONE")
        assert lut[none] == none
    # a set with only some keys: a key transposed out of it reads as not given
    few = ConditionSet((Condition("key", ("C major", "D major")),))
    t2 = tokenizer_from_config(TokenizerConfig(), few)
    lut = t2.transpose_lut(2)
    c, d, none = (t2.vocab.id(f"COND_KEY_{x}") for x in ("C_major", "D_major", "NONE"))
    assert lut[c] == d and lut[d] == none


def test_the_drop_table_sets_the_chosen_conditions_to_none() -> None:
    tok = tokenizer_from_config(TokenizerConfig(), _set())
    cs = tok.conditions
    assert cs is not None
    ids = cs.prefix(tok.vocab, {"key": "A minor", "density": "high", "label:mood": "happy"})
    lut = cs.drop_lut(tok.vocab, [0, 2])
    assert tok.ids_to_tokens(lut[ids]) == ["COND_KEY_NONE", "COND_DENSITY_high", "COND_LABEL_MOOD_NONE"]


# ------------------------------------------------------------------------------------------ corpus, training


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus whose pieces are labelled by their folder (calm/ and lively/)."""
    tmp = tmp_path_factory.mktemp("labelled")
    src = tmp / "midi"
    make_midi_files(src / "calm", n=6, seed=1)
    make_midi_files(src / "lively", n=6, seed=2)
    out = tmp / "corpus"
    build_corpus([src], out, workers=1, val_fraction=0.2, labels_from_folders=True)
    return out


def test_the_conditions_come_from_the_corpus(labelled: Path) -> None:
    corpus = Corpus.open(labelled)
    cs = from_corpus(corpus, "auto")
    assert cs is not None
    assert cs.names == ("key", "density", "tempo", "label:folder")
    assert cs.get("label:folder").values == ("calm", "lively")  # type: ignore[union-attr]
    seen = {p.attributes.key.name for p in corpus.pieces() if p.attributes and p.attributes.key}
    assert set(cs.get("key").values) == seen  # type: ignore[union-attr]
    transposed = from_corpus(corpus, "key", transpose=6)  # the fixture's pieces are all in major keys
    assert transposed is not None
    assert transposed.get("key").values == tuple(k.name for k in KEYS if k.mode == "major")  # type: ignore[union-attr]
    assert from_corpus(corpus, "none") is None
    only = from_corpus(corpus, "density,label:folder")
    assert only is not None and only.names == ("density", "label:folder")
    with pytest.raises(ConfigError, match="no piece has the label column 'genre'"):
        from_corpus(corpus, "label:genre")


@pytest.mark.parametrize("bad", ["keys", "key,key", "label:", "auto,key"])
def test_bad_condition_names_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="conditions"):
        parse_condition_names(bad)


def test_a_training_config_from_before_conditions_has_none() -> None:
    stored = tiny_config().to_dict()
    del stored["conditions"]
    from composer.train_config import TrainConfig

    assert TrainConfig.from_dict(stored).conditions == "none"
    assert TrainConfig().conditions == "auto"


@pytest.mark.parametrize("p_drop", [0.0, 1.0])
def test_training_windows_carry_each_piece_s_conditions_or_none(labelled: Path, p_drop: float) -> None:
    corpus = Corpus.open(labelled)
    cs = from_corpus(corpus, "auto")
    assert cs is not None
    tok = tokenizer_from_config(corpus.tokenizer.config, cs)
    pieces = corpus.pieces("train")
    prefixes = [cs.piece_prefix(tok.vocab, p) for p in pieces]
    store = TokenStore(corpus.tokens, pieces, torch.device("cpu"), tok, prefixes=prefixes)
    assert np.array_equal(store.lengths, [p.length + len(cs) for p in pieces])
    aug = Augmenter(tok, tiny_config().augment, store, torch.device("cpu"), condition_dropout=p_drop)
    rng = np.random.default_rng(0)
    stream = PieceStream(
        store.lengths, len(pieces), 64, rng=None, loop=False, sample_aug=lambda i: aug.sample(rng, i)
    )
    x, _, _ = Batcher(store, 64, int(tok.pad_id), aug).gather(stream.next())
    none = cs.none_ids(tok.vocab)
    for r, p in enumerate(pieces):
        row = x[r].numpy()
        assert row[0] == tok.bos_id
        want = none if p_drop == 1.0 else cs.piece_prefix(tok.vocab, p)
        assert np.array_equal(row[1 : 1 + len(cs)], want)
        music = corpus.piece_tokens(p)[1 : 64 - len(cs)]
        assert np.array_equal(row[1 + len(cs) : 1 + len(cs) + len(music)], music)
    assert tok.conditions is not None and "label:folder" in tok.conditions.names


# ------------------------------------------------------------------------------------------ steering


def test_steering_names_what_the_model_knows() -> None:
    cs = _set()
    assert steering(cs, labels=["sad"], key="Dm", density="high") == {
        "label:mood": "sad",
        "key": "D minor",
        "density": "high",
    }
    assert steering(cs, labels=["mood=happy"], density="medium") == {"label:mood": "happy", "density": "mid"}
    with pytest.raises(
        ConfigError, match=r"'angry' is not a label the model knows \(it knows mood: happy, sad\)"
    ):
        steering(cs, labels=["angry"])
    with pytest.raises(ConfigError, match="no label column 'genre'; it has mood"):
        steering(cs, labels=["genre=jazz"])
    with pytest.raises(ConfigError, match="--tempo: the model was not trained with a tempo condition"):
        steering(cs, tempo="low")
    with pytest.raises(ConfigError, match="--density must be one of low, mid, high"):
        steering(cs, density="loud")
    with pytest.raises(ConfigError, match="key must be a tonic"):
        steering(cs, key="H major")
    with pytest.raises(ConfigError, match="trained without conditions"):
        steering(None, key="C major")
    assert steering(None) == {}
    few = ConditionSet(
        (Condition("key", ("C major",)), Condition("tempo", ("low", "mid", "high"))), {"tempo": (90.0, 120.0)}
    )
    with pytest.raises(ConfigError, match="'D minor' is not one the model knows; it knows C major"):
        steering(few, key="D minor")
    assert steering(few, bpm=150) == {"tempo": "high"}
    assert steering(few, bpm=150, tempo="low") == {"tempo": "low"}


def test_instrument_names_become_programs() -> None:
    assert parse_instruments("piano,bass,drums") == (0, 33, 128)
    assert parse_instruments("Acoustic Grand Piano, 40") == (0, 40)
    with pytest.raises(ConfigError, match="unknown instrument 'kazoo'"):
        parse_instruments("piano,kazoo")
    with pytest.raises(ConfigError, match="at least one"):
        parse_instruments(" , ")


def _random_model(tok_size: int) -> LSTMModel:
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("small", tok_size, embed_dim=16, hidden_size=16, num_layers=1)
    return LSTMModel(cfg).eval()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_grammar_admits_only_the_requested_instruments(encoding: str) -> None:
    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding))
    model = _random_model(tok.vocab.size)
    gen = torch.Generator().manual_seed(3)
    out = sample_ids(model, tok, 6, Length(tokens=300), generator=gen, programs={33, 128})
    for ids in out.ids:
        score = tok.decode(ids)
        # every song plays each asked instrument and no other (a random model alone would rarely do so)
        assert {128 if i.is_drum else i.program for i in score.instruments if i.notes} == {33, 128}
        assert np.array_equal(tok.encode(score)[0], ids)  # still exactly what the encoder writes
    # the grammar alone: only-these without ``every``, so the first PROGRAM may be either
    g = tok.grammar()
    g.limit_programs({33, 128})
    assert g.required_programs is None
    g.limit_programs({33, 128}, every=True)
    assert g.required_programs == {
        tok.vocab.encode_event("PROGRAM", 33),
        tok.vocab.encode_event("PROGRAM", 128),
    }


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unconditioned_sampling_of_a_conditioned_model_is_valid(encoding: str) -> None:
    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding), _set())
    model = _random_model(tok.vocab.size)
    gen = torch.Generator().manual_seed(1)
    assert tok.conditions is not None
    for asked in (None, {"key": "E major", "label:mood": "sad"}):
        out = sample_ids(model, tok, 4, Length(tokens=200), generator=gen, conditions=asked)
        want = tok.conditions.prefix(tok.vocab, asked)
        for ids in out.ids:
            ids = ids.astype(np.int64)
            assert np.array_equal(ids[1:4], want)
            assert not tok.conditions.is_condition(tok.vocab)[ids[4:]].any()  # never sampled after the prefix
            music = tok.strip_conditions(ids)
            assert np.array_equal(tok.encode(tok.decode(music))[0], music)


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def conditioned_run(labelled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from composer.train import train

    run = tmp_path_factory.mktemp("cond-run") / "run"
    train(labelled, run, tiny_config(max_steps=6, eval_every=3, transpose=2), progress=False)
    return run


def test_a_conditioned_checkpoint_generates_what_is_asked(conditioned_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    info = runner.invoke(main, ["info", str(conditioned_run)])
    assert info.exit_code == 0, info.output
    assert "conditions" in info.output and "folder: calm, lively" in info.output
    out = tmp_path / "songs"
    args = ["generate", str(conditioned_run), "-o", str(out), "-n", "2", "--bars", "4", "--seed", "1"]
    r = runner.invoke(
        main, [*args, "--label", "calm", "--key", "A major", "--density", "high", "--instruments", "piano"]
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "song_001.json").read_text())
    assert meta["options"]["conditions"] == {"label:folder": "calm", "key": "A major", "density": "high"}
    assert meta["options"]["instruments"] == [0]
    score = read_midi(out / "song_001.mid")
    assert {i.program for i in score.instruments if i.notes} <= {0}
    bad = runner.invoke(main, [*args, "--force", "--label", "jazz"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert "'jazz' is not a label the model knows (it knows folder: calm, lively)" in bad.output
    bad = runner.invoke(main, [*args, "--force", "--instruments", "violin"])
    assert bad.exit_code != 0 and "the model never heard Violin (40)" in bad.output


def test_the_model_reads_the_conditions_at_every_step(conditioned_run: Path) -> None:
    from composer.checkpoint import load_checkpoint

    ckpt = load_checkpoint(conditioned_run)
    slots = ckpt.model.config.condition_slots
    assert slots == ckpt.tokenizer.condition_slots and len(slots) == ckpt.tokenizer.condition_count > 0
    assert ckpt.model.cond_embed is not None


def test_a_run_from_before_conditions_reached_every_step_resumes_as_it_was(
    labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conditioned run trained when the conditions were read once after BOS (no ``condition_slots``)
    resumes with that architecture instead of being refused."""
    from composer.checkpoint import load_checkpoint
    from composer.train import train
    from composer.train_config import TrainConfig

    run = tmp_path / "old"
    new_model_config = TrainConfig.model_config
    with monkeypatch.context() as m:
        old = lambda self, vocab_size, slots=(): new_model_config(self, vocab_size)  # noqa: E731
        m.setattr(TrainConfig, "model_config", old)
        train(labelled, run, tiny_config(max_steps=3, eval_every=3), progress=False)
    assert load_checkpoint(run / "last").model.config.condition_slots == ()
    train(labelled, run, tiny_config(max_steps=6, eval_every=3), resume=True, progress=False)
    resumed = load_checkpoint(run / "last")
    assert resumed.model.config.condition_slots == () and resumed.tokenizer.condition_count > 0


def test_evaluate_scores_a_conditioned_model_on_the_music_only(conditioned_run: Path, labelled: Path) -> None:
    from composer.checkpoint import load_checkpoint
    from composer.evaluate import evaluate_checkpoint

    ckpt = load_checkpoint(conditioned_run)
    report = evaluate_checkpoint(ckpt, labelled, samples=0, distances=(), baselines=False).report
    val = Corpus.open(labelled).pieces("val")
    assert report["tokens"] == sum(p.length - 1 for p in val)


# ------------------------------------------------------------------------------------------ controls


def test_the_label_classifier_learns_separable_labels() -> None:
    from composer.controls import LabelClassifier

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (40, 5)), rng.normal(0, 1, (40, 5)) + [3, 0, 0, 0, 0]])
    y = ["a"] * 40 + ["b"] * 40
    clf = LabelClassifier(["a", "b"]).fit(x, y)
    test = np.vstack([rng.normal(0, 1, (20, 5)), rng.normal(0, 1, (20, 5)) + [3, 0, 0, 0, 0]])
    hits = sum(p == t for p, t in zip(clf.predict(test), ["a"] * 20 + ["b"] * 20))
    assert hits >= 36


def test_controls_are_measured_for_every_condition(conditioned_run: Path, labelled: Path) -> None:
    from composer.checkpoint import load_checkpoint
    from composer.controls import ControlOptions, controls_table, measure_controls

    ckpt = load_checkpoint(conditioned_run)
    result = measure_controls(ckpt, Corpus.open(labelled), ControlOptions(songs=2, bars=2))
    assert ckpt.tokenizer.conditions is not None
    keys = ckpt.tokenizer.conditions.get("key")
    assert keys is not None
    assert {r["key"] for r in result["key"]["rows"]} <= set(keys.values)
    assert all(r["songs"] == 2 for r in result["key"]["rows"])
    assert 0.0 <= result["key"]["accuracy"] <= result["key"]["mode_accuracy"] <= 1.0
    assert result["key"]["generated_accuracy"] >= result["key"]["accuracy"]
    assert [r["level"] for r in result["density"]["rows"]] == list(
        ckpt.tokenizer.conditions.get("density").values
    )  # type: ignore[union-attr]
    assert result["instruments"]["only_these"] == 1.0  # the grammar admits no other instrument
    assert result["instruments"]["exact"] == 1.0  # ... and each asked one plays
    assert 0.0 < result["instruments"]["bar_share"] <= 1.0
    (label,) = result["labels"]
    assert label["label"] == "folder" and {r["value"] for r in label["rows"]} == {"calm", "lively"}
    assert label["pairs"] == len(Corpus.open(labelled).pieces("val"))  # each piece against the other label
    names = [row[0] for row in controls_table(result)]
    assert names[:2] == ["key", "density"] and "instruments" in names and "label folder" in names


def test_bar_share_counts_the_bars_each_instrument_plays_in() -> None:
    from composer.controls import bar_share
    from composer.midi import Instrument, Note, Score, TimeSignature

    bar = 4 * 480
    piano = Instrument(0, False, "Piano", [Note(60, 80, k * bar, k * bar + 240) for k in range(4)])
    bass = Instrument(33, False, "Bass", [Note(40, 80, 0, 240), Note(40, 80, 3 * bar + 10, 3 * bar + 99)])
    drums = Instrument(0, True, "Drums", [Note(36, 80, bar, bar + 10)])
    score = Score(480, [piano, bass, drums], [], [TimeSignature(0, 4, 4)])
    assert bar_share(score, {0}) == 1.0
    assert bar_share(score, {33}) == 0.5
    assert bar_share(score, {0, 33, 128}) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert bar_share(score, {40}) == 0.0  # an instrument the song does not have plays in no bar
    waltz = Score(480, [piano], [], [TimeSignature(0, 3, 4)])  # 3/4: onsets in bars 0, 1, 2 and 4 of 5
    assert bar_share(waltz, {0}) == pytest.approx(4 / 5)


def test_train_refuses_bad_conditions_in_one_line(labelled: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["train", str(labelled), "-o", str(tmp_path / "r"), "--conditions", "mood"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "conditions must be auto, none or a comma list of key, density, tempo, labels" in r.output
    r = CliRunner().invoke(
        main, ["train", str(labelled), "-o", str(tmp_path / "r"), "--conditions", "label:genre"]
    )
    assert r.exit_code != 0 and "no piece has the label column 'genre'" in r.output


def test_at_most_eight_conditions(tmp_path: Path) -> None:
    from composer.conditions import MAX_CONDITIONS

    src = tmp_path / "midi"
    files = make_midi_files(src, n=4)
    cols = [f"c{i}" for i in range(7)]
    rows = ["file," + ",".join(cols)] + [
        f"{f.name}," + ",".join(str(j % 2) for _ in cols) for j, f in enumerate(files)
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "corpus"
    build_corpus([src], out, workers=1, labels_csv=tmp_path / "labels.csv")
    said: list[str] = []
    cs = from_corpus(Corpus.open(out), "auto", said.append)
    assert cs is not None and len(cs) == MAX_CONDITIONS  # key, density, tempo and five label columns
    assert any("is not a condition: at most 8" in m for m in said)
    with pytest.raises(ConfigError, match="at most 8 conditions"):
        from_corpus(Corpus.open(out), "key,density,tempo,labels")


# ------------------------------------------------------------------------------------------ exact key


def test_key_shift_moves_by_at_most_a_tritone_within_the_mode() -> None:
    from composer.attributes import Key, key_shift

    assert key_shift(Key(0, "major"), Key(2, "major")) == 2
    assert key_shift(Key(9, "minor"), Key(2, "minor")) == 5  # A minor -> D minor: up a fourth
    assert key_shift(Key(2, "minor"), Key(9, "minor")) == -5
    assert key_shift(Key(0, "major"), Key(6, "major")) == -6
    assert key_shift(Key(0, "major"), Key(0, "minor")) is None  # a transposition keeps the mode
    assert key_shift(None, Key(0, "major")) is None
    assert all(-6 <= key_shift(Key(a, "major"), Key(b, "major")) <= 5 for a in range(12) for b in range(12))  # type: ignore[operator]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_transposed_ids_move_the_pitched_notes_only(encoding: str) -> None:
    from composer.midi import Instrument, Note
    from tests.test_attributes import cadence_score

    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding), _set())
    score = cadence_score(0, "major")
    score.instruments.append(Instrument(0, True, "Drums", [Note(36, 90, 0, 60), Note(42, 90, 480, 540)]))
    ids = tok.condition(tok.encode(score)[0], {"key": "C major"})
    up = tok.transposed(ids, 3)
    assert up is not None and np.array_equal(up[:4], ids[:4])  # BOS and the condition tokens stay
    back = tok.decode(up)
    pitched = sorted(n.pitch for i in back.instruments if not i.is_drum for n in i.notes)
    assert pitched == sorted(n.pitch + 3 for n in score.instruments[0].notes)
    drums = sorted(n.pitch for i in back.instruments if i.is_drum for n in i.notes)
    assert drums == [36, 42]
    assert np.array_equal(tok.encode(back)[0], tok.strip_conditions(up))  # still in the encoder's order
    assert np.array_equal(tok.transposed(ids, 0), ids)
    assert tok.transposed(ids, 200) is None  # every note would leave the range


def _raw_of(tok, scores):  # type: ignore[no-untyped-def]
    from composer.sample import SampleOutput

    n = len(scores)
    return SampleOutput(
        ids=[tok.encode(s)[0].astype(np.uint16) for s in scores],
        primer_tokens=1,
        hit_cap=np.zeros(n, dtype=bool),
        forced=np.zeros(n, dtype=bool),
        steps=10,
        bars=np.full(n, 4),
        seconds=np.full(n, 8.0),
        token_cap=1000,
        close_budget=100,
    )


def test_fit_songs_transposes_songs_in_the_mode_and_resamples_the_others() -> None:
    from composer.attributes import estimate_key
    from composer.sample import FIT_TRIES, Asked, fit_songs
    from tests.test_attributes import cadence_score

    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    first = _raw_of(tok, [cadence_score(0, "major"), cadence_score(9, "minor"), cadence_score(7, "major")])
    calls: list[tuple[int, int]] = []

    def resample(rows: int, attempt: int):  # type: ignore[no-untyped-def]
        calls.append((rows, attempt))
        return _raw_of(tok, [cadence_score(5, "major")] * rows)  # F major: movable to D major

    out, notes = fit_songs(first, tok, Asked(key=parse_key("D major")), resample)
    assert [str(estimate_key(tok.decode(ids))) for ids in out.ids] == ["D major"] * 3
    assert calls == [(1, 1)]  # only the A minor song was sampled again, once
    assert notes == [None, None, None]
    # transposed, not replaced: the first song is the C major cadence two semitones up
    assert [n.pitch for n in tok.decode(out.ids[0]).instruments[0].notes][:4] == [50, 54, 57, 62]

    calls.clear()
    never = lambda rows, attempt: _raw_of(tok, [cadence_score(4, "minor")] * rows)  # noqa: E731
    out, notes = fit_songs(first, tok, Asked(key=parse_key("D major")), never)
    assert notes[1] == f"in A minor, not the asked D major: {FIT_TRIES} samplings found none in major"
    assert np.array_equal(out.ids[1], first.ids[1])  # kept as first sampled
    assert notes[0] is None and notes[2] is None


def _chords(tonic: int, quarters_each: int):  # type: ignore[no-untyped-def]
    """The major cadence, each chord ``quarters_each`` quarters long (4 / quarters_each notes per quarter)."""
    from composer.midi import Note
    from tests.midi_factory import TPQ
    from tests.test_attributes import score_of

    chords = [(0, 4, 7, 12), (5, 9, 12, 17), (7, 11, 14, 19), (0, 4, 7, 12)]
    step = quarters_each * TPQ
    return score_of(
        [Note(48 + tonic + p, 80, i * step, (i + 1) * step) for i, c in enumerate(chords) for p in c]
    )


def test_fit_songs_resamples_songs_outside_the_asked_density_level() -> None:
    from composer.attributes import note_density
    from composer.sample import FIT_TRIES, Asked, fit_songs

    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    first = _raw_of(tok, [_chords(0, 1), _chords(0, 4), _chords(2, 1)])  # 4, 1 and 4 notes per quarter
    assert [note_density(tok.decode(ids)) for ids in first.ids] == [4.0, 1.0, 4.0]
    calls: list[tuple[int, int]] = []

    def resample(rows: int, attempt: int):  # type: ignore[no-untyped-def]
        calls.append((rows, attempt))
        return _raw_of(tok, [_chords(0, 2 if attempt < 3 else 1)] * rows)  # 2 (mid) twice, then 4 (high)

    high = Asked(levels={"density": ("high", (1.5, 2.5))})
    out, notes = fit_songs(first, tok, high, resample)
    assert [note_density(tok.decode(ids)) for ids in out.ids] == [4.0, 4.0, 4.0]
    assert calls == [(1, 1), (1, 2), (1, 3)] and notes == [None, None, None]
    assert np.array_equal(out.ids[0], first.ids[0]) and np.array_equal(out.ids[2], first.ids[2])

    # key and density together: a song that misses both keeps the attempt that misses least
    both = Asked(key=parse_key("D major"), levels={"density": ("low", (1.5, 2.5))})
    mid_in_c = lambda rows, attempt: _raw_of(tok, [_chords(0, 2)] * rows)  # noqa: E731  (key fits, density not)
    out, notes = fit_songs(_raw_of(tok, [cadence_minor_dense()]), tok, both, mid_in_c)
    assert note_density(tok.decode(out.ids[0])) == 2.0  # the resampled one: only its density misses
    assert notes == [
        f"2 notes per quarter, not the asked density low (below 1.5): {FIT_TRIES} samplings found none in "
        "major with density low"
    ]


def cadence_minor_dense():  # type: ignore[no-untyped-def]
    """A minor cadence at 4 notes per quarter: the wrong mode and the wrong density for D major, low."""
    from composer.midi import Note
    from tests.midi_factory import TPQ
    from tests.test_attributes import score_of

    chords = [(0, 3, 7, 12), (5, 8, 12, 17), (7, 11, 14, 19), (0, 3, 7, 12)]
    return score_of([Note(57 + p, 80, i * TPQ, (i + 1) * TPQ) for i, c in enumerate(chords) for p in c])


def test_asked_of_takes_the_levels_the_model_has_bounds_for() -> None:
    from composer.sample import Asked

    with pytest.raises(ConfigError, match="density level must be one of low, mid, high, got 'loud'"):
        Asked(levels={"density": ("loud", (1.0, 2.0))})
    with pytest.raises(ConfigError, match="a measured level is one of density, tempo, got 'key'"):
        Asked(levels={"key": ("low", (1.0, 2.0))})
    assert not Asked() and Asked(levels={"tempo": ("low", (90.0, 120.0))})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_tempo_level_is_checked_in_the_tokens_resolution(encoding: str) -> None:
    """A corpus all at 80 bpm has its mid tempo level at exactly 80; a song decodes at the tempo of its
    TEMPO token (80.7 in the default beat grid), which must count as mid, as the corpus's pieces do."""
    from composer.attributes import level_of, median_tempo
    from composer.sample import asked_of, level_bounds

    cs = ConditionSet((Condition("tempo", ("low", "mid", "high")),), {"tempo": (80.0, 80.0)})
    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding), cs)
    score = _chords(0, 1)
    score.tempos = [TempoChange(0, 80.0)]
    ids, _ = tok.encode(score)
    song = median_tempo(tok.decode(ids))
    bounds = level_bounds(tok, "tempo")
    assert bounds is not None and level_of(tok.decoded_tempo(80.0), bounds) == "mid"
    if encoding == "beat":  # a performance song decodes at its own fixed tempo
        assert song == pytest.approx(tok.decoded_tempo(80.0), abs=0.01) and song != 80.0
        assert level_of(song, bounds) == "mid" and level_of(song, (80.0, 80.0)) == "high"
    assert asked_of(tok, {"tempo": "mid"}).levels == {"tempo": ("mid", bounds)}
    assert level_bounds(tok, "density") is None


def test_generate_key_writes_songs_in_the_asked_key(conditioned_run: Path, tmp_path: Path) -> None:
    from composer.attributes import estimate_key

    out = tmp_path / "keyed"
    args = ["generate", str(conditioned_run), "-o", str(out), "-n", "3", "--bars", "4", "--seed", "2"]
    r = CliRunner().invoke(main, [*args, "--key", "E major"])
    assert r.exit_code == 0, r.output
    for k in range(1, 4):
        key = estimate_key(read_midi(out / f"song_{k:03d}.mid"))
        # in the asked key, or (a tiny model) said so in one line per song
        assert str(key) == "E major" or f"song_{k:03d}.mid: in " in r.output


def test_generate_density_writes_songs_in_the_asked_level(conditioned_run: Path, tmp_path: Path) -> None:
    from composer.attributes import level_of, note_density
    from composer.checkpoint import load_checkpoint

    bounds = load_checkpoint(conditioned_run).tokenizer.conditions.bounds["density"]  # type: ignore[union-attr]
    out = tmp_path / "dense"
    args = ["generate", str(conditioned_run), "-o", str(out), "-n", "3", "--bars", "4", "--seed", "2"]
    r = CliRunner().invoke(main, [*args, "--density", "high"])
    assert r.exit_code == 0, r.output
    for k in range(1, 4):
        density = note_density(read_midi(out / f"song_{k:03d}.mid"))
        # in the level's corpus range, or (a tiny model) said so in one line per song
        assert (
            level_of(density, bounds) == "high"
            or f"song_{k:03d}.mid: {density:g} notes per quarter" in r.output
        )
