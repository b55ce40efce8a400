"""The reference library: store, offline embedding, search, scene cues, CLI and live OSC.

Everything runs on synthetic audio and a small randomly initialised tagger written to a
temporary folder, so it needs neither the shipped weights nor any data set.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onbeat.models.tagger import TagCNN, TaggerSpec, save_tagger
from onbeat.realtime.cli import main
from onbeat.realtime.config import LibraryConfig, OnbeatConfig, apply_overrides
from onbeat.realtime.engine import Engine
from onbeat.realtime.errors import AudioFileError, ConfigError, OnbeatError
from onbeat.realtime.events import SimilarEvent, TagsEvent, event_to_dict
from onbeat.realtime.library import (
    Embedder,
    Library,
    LibraryIndex,
    LibraryMatcher,
    SceneTracker,
    attach_library,
    default_db_path,
    weights_id,
)
from onbeat.realtime.sources import ArraySource
from osc_receiver import OscReceiver

SR = 44100


# ----------------------------------------------------------------------------- fixtures
def _save_weights(directory: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    spec = dataclasses.replace(TaggerSpec(), channels=(8, 16, 16, 16, 16), hidden=16)
    return save_tagger(TagCNN(spec).eval(), directory)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_weights(tmp_path_factory.mktemp("weights"), seed=0)


@pytest.fixture(scope="module")
def embedder(weights: Path) -> Embedder:
    return Embedder(weights)


def _tone(seconds: float, freqs: tuple[float, ...], sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    return (0.3 * x).astype(np.float32)


def _noise(seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def _clicks(seconds: float, sr: int = SR) -> np.ndarray:
    x = np.zeros(int(seconds * sr), np.float32)
    for k in range(0, x.shape[0] - 200, sr // 2):
        x[k : k + 200] = 0.8 * np.hanning(200)
    return x


SOUNDS = {
    "low": lambda s: _tone(s, (110.0, 165.0, 220.0)),
    "high": lambda s: _tone(s, (2500.0, 3300.0)),
    "noise": lambda s: _noise(s),
    "clicks": lambda s: _clicks(s),
}


def _write(path: Path, x: np.ndarray, sr: int = SR) -> Path:
    sf.write(path, x, sr, subtype="FLOAT" if path.suffix == ".wav" else None)
    return path


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    d = tmp_path / "refs"
    d.mkdir()
    for name, make in SOUNDS.items():
        _write(d / f"{name}.wav", make(6.0))
    return d


def _config(db: Path, **library: object) -> OnbeatConfig:
    over: dict[str, object] = {
        "tags.enabled": "on",
        "output.console": False,
        "beats.source": "dsp",
        "library.db_path": str(db),
    }
    over.update({f"library.{k}": v for k, v in library.items()})
    return apply_overrides(OnbeatConfig(), over)


# ----------------------------------------------------------------------------- paths, config
def test_default_db_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "onbeat" / "library.sqlite"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_db_path() == Path.home() / ".local/share/onbeat/library.sqlite"


def test_config_validation() -> None:
    assert OnbeatConfig().library == LibraryConfig()
    with pytest.raises(ConfigError, match=r"library\.enabled"):
        LibraryConfig(enabled="yes")
    with pytest.raises(ConfigError, match=r"library\.k"):
        apply_overrides(OnbeatConfig(), {"library.k": 0})
    with pytest.raises(ConfigError, match=r"library\.hysteresis"):
        apply_overrides(OnbeatConfig(), {"library.hysteresis": 3})
    with pytest.raises(ConfigError, match=r"library\.dwell_s"):
        apply_overrides(OnbeatConfig(), {"library.dwell_s": -1})
    assert LibraryConfig().scoring == "window"
    assert apply_overrides(OnbeatConfig(), {"library.scoring": "mean"}).library.scoring == "mean"
    with pytest.raises(ConfigError, match=r"library\.scoring"):
        apply_overrides(OnbeatConfig(), {"library.scoring": "max"})
    cfg = apply_overrides(OnbeatConfig(), {"library.db_path": "~/x.sqlite", "library.k": 5})
    assert cfg.library.db_path == "~/x.sqlite" and cfg.library.k == 5


def test_attach_library_auto_on_off(
    tmp_path: Path, weights: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONBEAT_MODELS", str(weights.parent))
    db = tmp_path / "lib.sqlite"
    assert Engine(_config(db)).tagger.matcher is None  # type: ignore[union-attr]  # auto, no DB
    assert not db.exists()  # auto never creates it
    with pytest.raises(ConfigError, match="no library"):
        Engine(_config(db, enabled="on"))
    with pytest.raises(ConfigError, match="needs the tagger"):
        attach_library(None, _config(db, enabled="on"))
    with Library(db) as lib:
        assert Engine(_config(db)).tagger.matcher is None  # type: ignore[union-attr]  # empty
        lib.add_file(_write(tmp_path / "a.wav", _tone(4.0, (440.0,))), embedder)
    assert isinstance(Engine(_config(db)).tagger.matcher, LibraryMatcher)  # type: ignore[union-attr]
    assert Engine(_config(db, enabled="off")).tagger.matcher is None  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- embedding
def test_offline_embedding_equals_the_live_tagger(
    tmp_path: Path, weights: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Library windows are the live tagger's windows: same grid, same mel, same embedding."""
    x = np.concatenate([SOUNDS["low"](4.5), SOUNDS["noise"](4.5)])
    emb = embedder.embed_file(_write(tmp_path / "x.wav", x))
    np.testing.assert_allclose(emb.starts_s, [0.0, 1.5, 3.0, 4.5, 6.0])
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    assert emb.duration_s == pytest.approx(9.0) and emb.title == "x" and emb.gated == 0

    monkeypatch.setenv("ONBEAT_MODELS", str(weights.parent))
    got: list[TagsEvent] = []

    class Collect:
        name = "collect"

        def handle(self, e: object) -> None:
            if isinstance(e, TagsEvent):
                got.append(e)

        def tick(self) -> None:
            pass

        def close(self) -> None:
            pass

    cfg = _config(tmp_path / "none.sqlite", enabled="off")
    Engine(cfg, sinks=[Collect()]).run_fast(ArraySource(x[:, None], SR, "x"))
    live = {round(e.time_s - 3.0, 2): np.asarray(e.embedding) for e in got}
    assert set(live) >= {0.0, 1.5, 3.0, 4.5}
    for start, vec in zip(emb.starts_s, emb.vectors, strict=True):
        if round(float(start), 2) in live:
            np.testing.assert_allclose(live[round(float(start), 2)], vec, atol=2e-4)


def test_resampling_short_files_and_silence(tmp_path: Path, embedder: Embedder) -> None:
    e48 = embedder.embed_file(_write(tmp_path / "a48.flac", _tone(6.0, (440.0,), 48000), 48000))
    assert e48.duration_s == pytest.approx(6.0, abs=1e-3) and e48.vectors.shape == (3, 16)
    short = embedder.embed_file(_write(tmp_path / "short.wav", _tone(1.0, (440.0,))))
    assert short.vectors.shape == (1, 16)  # zero-padded to one window
    quiet = np.concatenate([np.zeros(3 * SR, np.float32), _tone(3.0, (440.0,))])
    part = embedder.embed_file(_write(tmp_path / "part.wav", quiet))
    assert part.gated == 1 and part.starts_s.tolist() == [1.5, 3.0]
    with pytest.raises(AudioFileError, match="only silence"):
        embedder.embed_file(_write(tmp_path / "zero.wav", np.zeros(4 * SR, np.float32)))
    stereo = np.stack([_tone(4.0, (440.0,)), _tone(4.0, (440.0,))], axis=1)
    mono = embedder.embed_file(_write(tmp_path / "mono.wav", stereo[:, 0]))
    both = embedder.embed_file(_write(tmp_path / "stereo.wav", stereo))
    np.testing.assert_allclose(both.vectors, mono.vectors, atol=1e-5)


# ----------------------------------------------------------------------------- the store
def test_add_readd_change_relabel_remove(
    tmp_path: Path,
    audio_dir: Path,
    weights: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "lib.sqlite"
    with Library(db) as lib:
        files = sorted(audio_dir.glob("*.wav"))
        results = [lib.add_file(f, embedder, scenes=["a"]) for f in files]
        assert [r.status for r in results] == ["added"] * 4
        assert lib.count() == 4 and lib.check() == []
        t = lib.find(files[0])
        assert t is not None and t.scenes == ("a",) and t.n_windows == 3
        assert t.model_id == embedder.model_id == weights_id(weights)
        assert t.duration_s == pytest.approx(6.0) and len(t.sha256) == 64
        starts, vecs = lib.window_embeddings(t.id)
        assert starts.tolist() == [0.0, 1.5, 3.0] and vecs.shape == (3, 16)
        np.testing.assert_allclose(t.mean, vecs.mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(t.std, vecs.std(axis=0), atol=1e-6)

        # unchanged: a no-op (no decoding, nothing written); relabelling: no decoding either
        before = _snapshot(db)
        embed = embedder.embed_file
        monkeypatch.setattr(embedder, "embed_file", _forbidden)
        r = lib.add_file(files[0], embedder)
        assert (r.status, r.track_id) == ("unchanged", t.id) and _snapshot(db) == before
        assert lib.add_file(files[0], embedder, scenes=["a"]).status == "unchanged"
        r = lib.add_file(files[0], embedder, scenes=["b", "c", "b"])
        relabelled = lib.find(files[0])
        assert r.status == "relabelled" and relabelled is not None
        assert relabelled.scenes == ("b", "c") and relabelled.indexed_s == t.indexed_s
        monkeypatch.setattr(embedder, "embed_file", embed)

        # changed content: re-indexed under the same id, labels kept, windows replaced
        _write(files[0], _tone(9.0, (330.0,)))
        r = lib.add_file(files[0], embedder)
        new = lib.find(files[0])
        assert r.status == "reindexed" and new is not None and new.id == t.id
        assert new.sha256 != t.sha256 and new.n_windows == 5 and new.scenes == ("b", "c")
        assert lib.check() == []

        # remove by id, by path, by folder
        assert lib.remove([t.id]) == 1 and lib.find(files[0]) is None
        assert [x.path for x in lib.resolve(str(files[1]))] == [str(files[1].resolve())]
        assert len(lib.resolve(str(audio_dir))) == 3
        assert lib.remove(x.id for x in lib.resolve(str(audio_dir))) == 3
        assert lib.count() == 0 and lib.check() == []
        n_windows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM windows").fetchone()[0]
        assert n_windows == 0  # cascaded


def _forbidden(path: object) -> None:
    raise AssertionError(f"{path} was decoded again")


def test_model_change_reindexes(tmp_path: Path, audio_dir: Path, embedder: Embedder) -> None:
    other = Embedder(_save_weights(tmp_path / "w2", seed=1))
    assert other.model_id != embedder.model_id
    f = audio_dir / "low.wav"
    with Library(tmp_path / "lib.sqlite") as lib:
        lib.add_file(f, embedder)
        assert len(lib.index(embedder.model_id)) == 1 and len(lib.index(other.model_id)) == 0
        assert lib.add_file(f, other).status == "reindexed"
        assert len(lib.index(embedder.model_id)) == 0 and len(lib.index(other.model_id)) == 1
        assert lib.add_file(f, other).status == "unchanged"


def test_corrupt_and_interrupted_adds_leave_the_db_consistent(
    tmp_path: Path, audio_dir: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "lib.sqlite"
    good = audio_dir / "low.wav"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x01\x00\x00WAVEfmt " + bytes(range(256)) * 40)
    truncated = tmp_path / "truncated.flac"
    sf.write(truncated, _noise(5.0), SR)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with Library(db) as lib:
        lib.add_file(good, embedder, scenes=["keep"])
        before = _snapshot(db)
        for bad in (corrupt, tmp_path / "missing.wav", tmp_path):
            with pytest.raises(AudioFileError):
                lib.add_file(bad, embedder)
        try:  # a truncated FLAC may decode partially (fine) or fail (reported): never half-written
            lib.add_file(truncated, embedder)
            lib.remove(t.id for t in lib.resolve(str(truncated)))
        except AudioFileError:
            pass
        assert _snapshot(db) == before and lib.check() == []

        # interrupted in the middle of writing the windows: the whole add is rolled back
        real = Library._insert_windows

        def half_then_interrupt(self, db_, track_id, starts_s, vectors):  # type: ignore[no-untyped-def]
            real(self, db_, track_id, starts_s[:1], vectors[:1])
            raise KeyboardInterrupt

        monkeypatch.setattr(Library, "_insert_windows", half_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            lib.add_file(audio_dir / "noise.wav", embedder)  # a new track
        _write(good, _tone(7.5, (660.0,)))
        with pytest.raises(KeyboardInterrupt):
            lib.add_file(good, embedder)  # a re-index
        assert _snapshot(db) == before and lib.check() == []
        monkeypatch.undo()
        assert lib.add_file(good, embedder).status == "reindexed"
        assert lib.check() == []
    with Library(db) as again:  # a fresh connection sees the same consistent state
        assert again.count() == 1 and again.check() == []
    (tmp_path / "not_a_db.sqlite").write_bytes(b"hello" * 100)
    with pytest.raises(OnbeatError, match="not a usable onbeat library"):
        Library(tmp_path / "not_a_db.sqlite")
    with pytest.raises(OnbeatError, match="no library"):
        Library(tmp_path / "nope.sqlite", create=False)
    other = sqlite3.connect(tmp_path / "other.sqlite")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(OnbeatError, match="not an onbeat library"):
        Library(tmp_path / "other.sqlite")
    assert _tables(tmp_path / "other.sqlite") == ["t"]  # left alone


def _tables(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    finally:
        con.close()


def _snapshot(db: Path) -> tuple[list[tuple], list[tuple]]:
    con = sqlite3.connect(db)
    try:
        tracks = con.execute("SELECT * FROM tracks ORDER BY id").fetchall()
        windows = con.execute("SELECT * FROM windows ORDER BY track_id, start_s").fetchall()
    finally:
        con.close()
    return tracks, windows


# ----------------------------------------------------------------------------- search
def test_query_finds_the_file_itself(tmp_path: Path, audio_dir: Path, embedder: Embedder) -> None:
    with Library(tmp_path / "lib.sqlite") as lib:
        ids = {f.stem: lib.add_file(f, embedder).track_id for f in sorted(audio_dir.glob("*.wav"))}
        index = lib.index(embedder.model_id)
        assert len(index) == 4 and index is lib.index(embedder.model_id)  # cached
        assert index.scoring == "window" and index.windows.shape == (12, 16)
        by_mean = lib.index(embedder.model_id, "mean")
        assert by_mean.scoring == "mean" and by_mean.windows.shape[0] == 0
        assert lib.index(embedder.model_id) is not by_mean  # the scoring is part of the key
        for name, tid in ids.items():
            emb = embedder.embed_file(audio_dir / f"{name}.wav")
            np.testing.assert_allclose(
                index.windows[index.window_starts[list(index.ids).index(tid)] :][:3],
                emb.vectors,
                atol=1e-6,
            )
            for ix, hits in (
                (index, index.top(index.file_distances(emb.vectors), 3)),
                (index, index.nearest(emb.vectors[1], 3)),  # one of its own windows
                (by_mean, by_mean.nearest(emb.mean, 3)),
                (by_mean, by_mean.top(by_mean.file_distances(emb.vectors), 3)),
            ):
                assert len(hits) == 3 and int(ix.ids[hits[0][0]]) == tid
                assert hits[0][1] == pytest.approx(0.0, abs=1e-5)
                assert [d for _, d in hits] == sorted(d for _, d in hits)
                assert all(0.0 - 1e-5 <= d <= 2.0 + 1e-5 for _, d in hits)
        assert len(index.nearest(emb.mean, 10)) == 4
        with pytest.raises(ValueError, match="dimensions"):
            index.distances(np.ones(7))
        with pytest.raises(ValueError, match="dimensions"):
            index.file_distances(np.ones((2, 7)))
        with pytest.raises(ValueError, match="scoring"):
            lib.index(embedder.model_id, "max")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_a_window_matching_one_stored_window_ranks_its_track_first() -> None:
    """Best-window scoring: one exact window match wins although the track's mean is far."""
    rng = np.random.default_rng(3)
    dim = 32
    target = _unit(rng.standard_normal(dim))
    # track 1: one window equal to the target among many pointing the opposite way, so its
    # mean is far from the target; track 2: every window moderately close to the target
    far = [_unit(-target + 0.3 * rng.standard_normal(dim)) for _ in range(9)]
    t1 = np.stack([*far[:4], target, *far[4:]])
    t2 = np.stack([_unit(target + 0.9 * rng.standard_normal(dim)) for _ in range(10)])
    t3 = np.stack([_unit(rng.standard_normal(dim)) for _ in range(6)])
    tracks = [t1, t2, t3]
    means = [t.mean(axis=0) for t in tracks]
    args = ("m", [10, 20, 30], ["one", "many", "rand"], [("a",), ("b",), ()], means)
    by_window = LibraryIndex.build(*args, windows=tracks)
    by_mean = LibraryIndex.build(*args)
    d = by_window.distances(target)
    assert by_window.nearest(target, 3)[0] == (0, pytest.approx(0.0, abs=1e-6))
    assert d[0] < d[1] < 0.9  # track 2's best window is close too, but not exact
    np.testing.assert_allclose(d[1], 1 - (t2 @ target).max(), atol=1e-5)
    dm = by_mean.distances(target)
    assert dm[0] > 1.5 and by_mean.nearest(target, 1)[0][0] == 1  # the mean ranks it last
    assert by_window.scene_distances(d) == {"a": pytest.approx(0.0, abs=1e-6), "b": d[1]}
    # a track stored without windows competes with its mean; unsorted rows are sorted
    idx = LibraryIndex.build(*args, windows=[t1, np.zeros((0, dim)), t3])
    np.testing.assert_allclose(idx.distances(target)[1], dm[1], atol=1e-5)
    shuffled = LibraryIndex.from_arrays(
        "m", np.asarray([10, 20, 30]), args[2], args[3], np.stack(means),
        np.concatenate([t3, t1, t2]), np.repeat([2, 0, 1], [6, 10, 10]),
    )  # fmt: skip
    np.testing.assert_allclose(shuffled.distances(target), d, atol=1e-6)
    assert shuffled.window_starts.tolist() == [0, 10, 20]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 7), min_size=1, max_size=12),
    dim=st.integers(2, 9),
    n_queries=st.integers(1, 5),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_best_window_search_matches_brute_force(
    sizes: list[int], dim: int, n_queries: int, k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    tracks = [rng.standard_normal((n, dim)) for n in sizes]
    if rng.random() < 0.5:  # exact duplicates across tracks: ties
        tracks[-1][0] = tracks[0][0]
    units = [_unit(t) for t in tracks]
    index = LibraryIndex.build(
        "m", list(range(len(sizes))), [str(i) for i in range(len(sizes))],
        [()] * len(sizes), [t.mean(axis=0) for t in tracks], windows=tracks,
    )  # fmt: skip
    assert index.windows.shape == (sum(sizes), dim) and index.windows.flags.c_contiguous
    queries = rng.standard_normal((n_queries, dim))
    queries[0] = tracks[0][-1] * 3.0  # one query equal to a stored window (scaled)
    for q in queries:
        ref = np.asarray([1.0 - float((u @ _unit(q)).max()) for u in units])  # float64, a loop
        got = index.distances(q)
        np.testing.assert_allclose(got, ref, atol=1e-5)
        hits = index.nearest(q, k)
        assert len(hits) == min(k, len(sizes))
        assert [d for _, d in hits] == sorted(d for _, d in hits)
        np.testing.assert_allclose([d for _, d in hits], np.sort(ref)[:k], atol=1e-5)
        for row, dist in hits:  # the rows are right up to ties within float32 error
            assert ref[row] == pytest.approx(dist, abs=1e-5)
    # a whole file: mean over its windows of each track's best-window cosine
    per_window = np.stack([[float((u @ _unit(q)).max()) for u in units] for q in queries])
    for chunk in (1, 3, 1 << 24):
        got = index.file_distances(queries, chunk_values=chunk * sum(sizes))
        np.testing.assert_allclose(got, 1.0 - per_window.mean(axis=0), atol=1e-5)


def test_index_reloads_when_another_process_writes(
    tmp_path: Path, audio_dir: Path, embedder: Embedder
) -> None:
    db = tmp_path / "lib.sqlite"
    with Library(db) as writer:
        writer.add_file(audio_dir / "low.wav", embedder, scenes=["calm"])
        m = LibraryMatcher(LibraryConfig(enabled="on", db_path=str(db), k=5), refresh_s=2.0)
        m.prepare(embedder.model_id)
        q = embedder.embed_file(audio_dir / "noise.wav").vectors[0]
        ev = m.match(q, 44100, 1.0)
        assert isinstance(ev, SimilarEvent) and [t for t, _ in ev.nearest] == ["low"]
        writer.add_file(audio_dir / "noise.wav", embedder)
        ev = m.match(q, 2 * 44100, 2.0)  # not yet: checked at most every refresh_s
        assert ev is not None and len(ev.nearest) == 1
        ev = m.match(q, 3 * 44100, 3.0)
        assert ev is not None and ev.nearest[0][0] == "noise"
        assert ev.nearest[0][1] < 0.05
        m.close()


# ----------------------------------------------------------------------------- scene cues
def test_scene_tracker_dwell_and_hysteresis() -> None:
    s = SceneTracker(dwell_s=3.0, hysteresis=0.05)
    seq = [  # (time, distances) → expected scene afterwards
        (0.0, {"a": 0.10, "b": 0.30}, ""),  # a is the challenger from t = 0
        (1.5, {"a": 0.10, "b": 0.30}, ""),
        (3.0, {"a": 0.12, "b": 0.30}, "a"),  # stayed closest for 3 s: switch
        (4.5, {"a": 0.20, "b": 0.17}, "a"),  # b closer, but by 0.03 < 0.05: ignored
        (6.0, {"a": 0.20, "b": 0.10}, "a"),  # b by 0.10: challenger from 6.0
        (7.5, {"a": 0.20, "b": 0.10}, "a"),
        (9.0, {"a": 0.10, "b": 0.12}, "a"),  # a closest again: the wait restarts
        (10.5, {"a": 0.30, "b": 0.10}, "a"),
        (12.0, {"a": 0.30, "b": 0.10}, "a"),
        (13.5, {"a": 0.30, "b": 0.10}, "b"),  # 3 s after 10.5
        (15.0, {}, "b"),  # no labelled references: hold
    ]
    changes = []
    for t, d, want in seq:
        if s.update(t, d):
            changes.append((t, s.scene))
        assert s.scene == want, t
    assert changes == [(3.0, "a"), (13.5, "b")]
    s.reset()
    assert s.scene == ""


def test_scene_cues_on_a_scripted_sequence_of_embeddings() -> None:
    """Embeddings wander between two labelled clusters; flicker near the border is ignored."""
    rng = np.random.default_rng(0)
    dim = 16
    ca, cb, cu = (rng.standard_normal(dim) for _ in range(3))
    refs = [ca + 0.1 * rng.standard_normal(dim) for _ in range(2)]
    refs += [cb + 0.1 * rng.standard_normal(dim) for _ in range(2)] + [cu]
    index = LibraryIndex.build(
        "m", [1, 2, 3, 4, 5], ["a1", "a2", "b1", "b2", "u"],
        [("calm",), ("calm",), ("loud",), ("loud", "x"), ()], refs,
    )  # fmt: skip
    assert index.scene_names == ("calm", "loud", "x")
    s = SceneTracker(dwell_s=4.0, hysteresis=0.05)
    scenes, t = [], 0.0
    mix = [0.0] * 6 + [0.5, 0.52, 0.48, 0.51, 0.49] + [1.0] * 6 + [0.5] * 3
    for w in mix:
        q = (1 - w) * ca + w * cb + 0.02 * rng.standard_normal(dim)
        d = index.distances(q)
        s.update(t, index.scene_distances(d))
        scenes.append(s.scene)
        t += 1.5
    assert scenes[:3] == ["", "", ""] and scenes[3] == "calm"  # 4.5 s ≥ dwell
    assert set(scenes[3:11]) == {"calm"}  # the 50/50 flicker never switches
    assert "loud" in scenes[11:17] and scenes[-1] == "loud"
    assert scenes.count("x") == 0 or scenes[-1] in ("loud", "x")


# ----------------------------------------------------------------------------- CLI
def test_cli_add_list_query_remove(
    tmp_path: Path,
    audio_dir: Path,
    weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ONBEAT_MODELS", str(weights.parent))
    db = str(tmp_path / "lib.sqlite")
    (audio_dir / "broken.wav").write_bytes(b"not audio at all" * 100)
    assert main(["library", "add", str(audio_dir), "--db", db, "--scene", "calm"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.wav" in err and "4 added, 1 skipped" in err
    assert main(["library", "add", str(audio_dir / "low.wav"), "--db", db]) == 0
    assert "1 unchanged" in capsys.readouterr().err

    assert main(["library", "list", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "4 track(s)" in out and "calm" in out and "clicks" in out

    assert main(["library", "query", str(audio_dir / "high.wav"), "--db", db, "-k", "2"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 3 and "high" in lines[1] and float(lines[1].split()[1]) < 1e-4

    assert main(["library", "remove", str(audio_dir / "low.wav"), "nonexistent", "--db", db]) == 0
    assert "removed 1 track" in capsys.readouterr().err
    assert main(["library", "reindex", "--db", db]) == 0
    assert "3 unchanged" in capsys.readouterr().err

    # nothing could be done: one line, exit 2
    assert main(["library", "add", str(audio_dir / "broken.wav"), "--db", db]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("onbeat: error: nothing indexed")
    assert main(["library", "add", str(tmp_path / "missing"), "--db", db]) == 2
    assert main(["library", "remove", "12345", "--db", db]) == 2
    assert main(["library", "query", str(audio_dir / "broken.wav"), "--db", db]) == 2
    assert main(["library", "list", "--db", str(tmp_path / "none.sqlite")]) == 0
    assert not (tmp_path / "none.sqlite").exists()
    assert main(["library", "query", str(audio_dir / "low.wav"), "--db", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- live + OSC
def test_similar_and_scene_reach_a_real_osc_receiver_and_jsonl(
    tmp_path: Path, weights: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay that goes from a calm reference to a loud one: `/onbeat/similar/1` names the
    reference the music comes from, and `/onbeat/scene` switches once, after the dwell time."""
    from onbeat.realtime.osc import build_osc_sinks, parse_osc_target
    from onbeat.realtime.sinks import JsonlSink

    monkeypatch.setenv("ONBEAT_MODELS", str(weights.parent))
    calm, loud = SOUNDS["low"](12.0), SOUNDS["noise"](12.0)
    db = tmp_path / "lib.sqlite"
    with Library(db) as lib:
        lib.add_file(_write(tmp_path / "calm.wav", calm), embedder, scenes=["calm"])
        lib.add_file(_write(tmp_path / "loud.wav", loud), embedder, scenes=["loud"])
        lib.add_file(_write(tmp_path / "clicks.wav", _clicks(6.0)), embedder)

    receiver = OscReceiver()
    try:
        port = receiver.port
        events = tmp_path / "ev.jsonl"
        sinks = [*build_osc_sinks([parse_osc_target(f"127.0.0.1:{port}")]), JsonlSink(events)]
        # the random test model puts all sounds within ~0.003 of each other: no margin here
        cfg = _config(db, dwell_s=3.0, hysteresis=0.0, k=2)
        # no beats and few levels: a fast replay sends in bursts, and UDP drops what overflows
        cfg = apply_overrides(cfg, {"beats.source": "off", "output.level_rate_hz": 0.5})
        engine = Engine(cfg, sinks=sinks)
        engine.run_fast(ArraySource(np.concatenate([calm, loud])[:, None], SR, "replay"))
        n_windows = 15  # windows end at 3.0, 4.5, ..., 24.0 s
        receiver.wait_for(
            lambda ms: (
                sum(m.address == "/onbeat/scene" for m in ms) >= 2
                and sum(m.address.startswith("/onbeat/similar/") for m in ms) >= 4 * n_windows
            ),
            10.0,
        )
    finally:
        receiver.close()
    got = [(m.t, m.address, m.args) for m in receiver.messages()]

    similar = [
        e for e in map(json.loads, events.read_text().splitlines()) if e["type"] == "similar"
    ]
    tags = [e for e in map(json.loads, events.read_text().splitlines()) if e["type"] == "tags"]
    assert len(similar) == len(tags) == n_windows
    assert [e["time_s"] for e in similar] == [e["time_s"] for e in tags]
    for e in similar:
        assert len(e["nearest"]) == 2 and e["nearest"][0][1] <= e["nearest"][1][1]
    by_time = {round(e["time_s"], 1): e for e in similar}
    assert by_time[6.0]["nearest"][0][0] == "calm" and by_time[6.0]["nearest"][0][1] < 0.01
    assert by_time[21.0]["nearest"][0][0] == "loud"
    changes = [(round(e["time_s"], 1), e["scene"]) for e in similar if e["scene_changed"]]
    assert changes[0] == (6.0, "calm")  # first window 3.0 s, + 3 s dwell
    assert [s for _, s in changes] == ["calm", "loud"]
    assert 15.0 <= changes[1][0] <= 19.5

    addr = [a for _, a, _ in got]
    titles = [args[0] for _, a, args in got if a == "/onbeat/similar/1"]
    dists = [args[0] for _, a, args in got if a == "/onbeat/similar/1/distance"]
    assert len(titles) == len(dists) == len(similar)
    assert titles[2] == "calm" and titles[-1] == "loud"
    assert all(isinstance(d, float) and 0.0 <= d <= 2.0 for d in dists)
    assert addr.count("/onbeat/similar/2") == len(similar) and "/onbeat/similar/3" not in addr
    assert [args[0] for _, a, args in got if a == "/onbeat/scene"] == ["calm", "loud"]


def test_osc_rich_profile_and_scene_only_on_change() -> None:
    from onbeat.realtime.events import StreamStartEvent
    from onbeat.realtime.osc import OscSink, parse_osc_target

    receiver = OscReceiver()
    port = receiver.port
    sinks = [
        OscSink(parse_osc_target(f"127.0.0.1:{port}:rich,prefix=/r")),
        OscSink(parse_osc_target(f"127.0.0.1:{port},prefix=/f")),
    ]
    evs = [StreamStartEvent(0, 0.0, 0.0, "t", SR, 100.0)] + [
        SimilarEvent(i, i / SR, i / SR, (("Ünïcode title", 0.125), ("b", 0.5)), scene)
        for i, scene in enumerate(["", "x", "x", "y", "y"])
    ]
    try:
        for s in sinks:
            for e in evs:
                s.handle(e)
        receiver.wait_for(lambda ms: len(ms) >= 5 + 2 + 20 + 2, 3.0)
    finally:
        for s in sinks:
            s.close()
        receiver.close()
    got = [(m.address, m.args) for m in receiver.messages()]
    rich = [args for a, args in got if a == "/r/similar"]
    assert rich == [("Ünïcode title", 0.125, "b", 0.5)] * 5
    assert [args for a, args in got if a == "/r/scene"] == [("x",), ("y",)]
    assert [args for a, args in got if a == "/f/scene"] == [("x",), ("y",)]
    assert [args for a, args in got if a == "/f/similar/2/distance"] == [(0.5,)] * 5
    assert json.dumps(event_to_dict(evs[2]))  # JSON Lines / WebSocket serialise it generically
