"""The windowed tagging CNN: model, smoothing, artist-disjoint folds and the live worker."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onbeat.models.tagger import (
    GENRES,
    TagCNN,
    TaggerSpec,
    load_tagger,
    mood_from_quadrants,
    save_tagger,
)
from onbeat.realtime.bus import Sink
from onbeat.realtime.config import OnbeatConfig, TagsConfig, apply_overrides
from onbeat.realtime.demo import demo_song
from onbeat.realtime.engine import Engine
from onbeat.realtime.errors import ConfigError
from onbeat.realtime.events import TagsEvent
from onbeat.realtime.sources import ArraySource
from onbeat.realtime.tags import Tagger, TagsState
from onbeat.training.tags import (
    TagItem,
    artist_folds,
    coarse_from_allmusic,
    mer4q_items,
    score_clips,
)

SR = 44100


class Collect(Sink):
    """Keeps every event it is handed (a real sink on its own thread)."""

    name = "collect"

    def __init__(self) -> None:
        self.events: list[object] = []

    def handle(self, event: object) -> None:
        self.events.append(event)

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def _weights(tmp_path: Path, channels: tuple[int, ...] = (8, 16, 16, 16, 16)) -> Path:
    torch.manual_seed(0)
    net = TagCNN(dataclasses.replace(TaggerSpec(), channels=channels, hidden=16)).eval()
    return save_tagger(net, tmp_path)


def _config(**tags: object) -> OnbeatConfig:
    over = {"tags.enabled": "on", "output.console": False, "beats.source": "dsp"}
    over.update({f"tags.{k}": v for k, v in tags.items()})
    return apply_overrides(OnbeatConfig(), over)


def _run(engine: Engine, audio: np.ndarray, paced: bool = False) -> list[TagsEvent]:
    sink = engine._sinks[0].sink  # the Collect sink
    src = ArraySource(audio[:, None].astype(np.float32), SR, name="t")
    if paced:
        engine.run_paced(src)
    else:
        engine.run_fast(src)
    return [e for e in sink.events if isinstance(e, TagsEvent)]  # type: ignore[attr-defined]


def _engine(cfg: OnbeatConfig, weights: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("ONBEAT_MODELS", str(weights.parent))
    return Engine(cfg, sinks=[Collect()])


# ----------------------------------------------------------------------------- model


def test_spec_validation_and_roundtrip(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="window_s"):
        TaggerSpec(window_s=0.01)
    with pytest.raises(ValueError, match="fmax_hz"):
        TaggerSpec(fmax_hz=30000.0)
    path = _weights(tmp_path)
    net, meta = load_tagger(path)
    assert meta["spec"]["channels"] == [8, 16, 16, 16, 16]
    torch.manual_seed(0)
    ref = TagCNN(dataclasses.replace(TaggerSpec(), channels=(8, 16, 16, 16, 16), hidden=16)).eval()
    x = torch.randn(2, TaggerSpec().frames, 96)
    with torch.inference_mode():
        a, b = net(x), ref(x)
    for k in ("genre", "quadrant", "voice", "embedding"):
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)


def test_shipped_model_is_small_and_valid() -> None:
    from onbeat.models.registry import WEIGHTS_DIR

    path = WEIGHTS_DIR / "tags.safetensors"
    if not path.exists():
        pytest.skip("no tagging model shipped yet")
    net, meta = load_tagger(path)
    assert sum(p.numel() for p in net.parameters()) <= 1_000_000
    assert path.stat().st_size < 2_000_000
    assert meta["spec"]["genres"] == list(GENRES)
    for key in ("data", "training_command", "cv_metrics", "licence"):
        assert key in meta


@given(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_valence_arousal_are_expectations(p: list[float]) -> None:
    q = np.asarray(p) + 1e-9
    q /= q.sum()
    v, a = mood_from_quadrants(q)
    assert -1.0 - 1e-9 <= v <= 1.0 + 1e-9 and -1.0 - 1e-9 <= a <= 1.0 + 1e-9
    assert mood_from_quadrants([1, 0, 0, 0]) == (1.0, 1.0)
    assert mood_from_quadrants([0, 0, 1, 0]) == (-1.0, -1.0)


# ----------------------------------------------------------------------------- smoothing


def test_hysteresis_holds_top_label_until_clear_lead() -> None:
    s = TagsState(("a", "b"), ("Q1", "Q2", "Q3", "Q4"), alpha=1.0, hysteresis=0.2)
    q = [0.25] * 4
    assert s.update([0.6, 0.4], q, 0.5)[0] == 0
    assert s.update([0.45, 0.55], q, 0.5)[0] == 0  # b leads by 0.1 < 0.2: hold a
    assert s.update([0.35, 0.65], q, 0.5)[0] == 1  # b leads by 0.3: switch
    assert s.update([0.55, 0.45], q, 0.5)[0] == 1


def test_first_windows_are_a_running_mean_then_the_ema() -> None:
    s = TagsState(("a", "b"), ("Q1", "Q2", "Q3", "Q4"), alpha=0.25, hysteresis=0.0)
    q = [0.25] * 4
    xs = [1.0, 0.0, 0.5, 0.2, 0.9, 0.4]
    want = xs[0]
    for n, x in enumerate(xs, start=1):
        s.update([x, 1 - x], q, 0.5)
        want += max(0.25, 1.0 / n) * (x - want) if n > 1 else 0.0
        assert s.genre is not None and s.genre[0] == pytest.approx(want)
    assert s.genre[0] == pytest.approx(
        np.mean(xs[:4]) * 0.75**2 + 0.25 * 0.75 * xs[4] + 0.25 * xs[5]
    )
    s.restart()  # a new song: its first window alone, then the running mean again
    s.update([0.3, 0.7], q, 0.5)
    assert s.genre[0] == pytest.approx(0.3)
    s.update([0.1, 0.9], q, 0.5)
    assert s.genre[0] == pytest.approx(0.2)


def test_novelty_restarts_the_mean_on_a_song_change_only() -> None:
    """A scripted embedding sequence: jitter within a song never restarts; a jump does, and the
    labels follow the new song within two windows (a plain EMA takes many more)."""
    rng = np.random.default_rng(0)
    a_dir, b_dir = np.eye(16)[0], np.eye(16)[1]

    def emb(d: np.ndarray) -> np.ndarray:
        v = d + 0.15 * rng.standard_normal(16)
        return v / np.linalg.norm(v)

    q_a, q_b = [0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]
    for novelty, switch_within in ((0.5, 2), (0.0, None)):
        s = TagsState(("a", "b"), ("Q1", "Q2", "Q3", "Q4"), alpha=0.17, hysteresis=0.15,
                      novelty=novelty)  # fmt: skip
        for _ in range(20):
            assert s.update([0.8, 0.2], q_a, 0.5, emb(a_dir)) == (0, 0)
        assert s.restarts == 0
        tops = [s.update([0.2, 0.8], q_b, 0.5, emb(b_dir)) for _ in range(6)]
        if switch_within is None:
            assert s.restarts == 0 and tops[1] == (0, 0)  # the EMA still shows song A
        else:
            assert s.restarts == 1 and tops[switch_within - 1] == (1, 2)
            assert all(t == (1, 2) for t in tops[switch_within - 1 :])


def test_dwell_replaces_a_stale_label_after_a_steady_small_lead() -> None:
    """Flat distributions: b leads a by less than the hysteresis; after ``dwell`` windows on top
    it is shown anyway, and a lead that flips back and forth never gets there."""
    q = [0.25] * 4
    s = TagsState(("a", "b"), ("Q1", "Q2", "Q3", "Q4"), alpha=1.0, hysteresis=0.25, dwell=4)
    assert s.update([0.55, 0.45], q, 0.5)[0] == 0
    tops = [s.update([0.45, 0.55], q, 0.5)[0] for _ in range(5)]
    assert tops == [0, 0, 0, 1, 1]  # b on top for its 4th window: shown
    s = TagsState(("a", "b"), ("Q1", "Q2", "Q3", "Q4"), alpha=1.0, hysteresis=0.25, dwell=4)
    assert s.update([0.55, 0.45], q, 0.5)[0] == 0
    for i in range(12):  # b leads for 3 windows, then a for 1: never 4 in a row
        x = [0.45, 0.55] if i % 4 != 3 else [0.55, 0.45]
        assert s.update(x, q, 0.5)[0] == 0
    off = TagsState(("a", "b"), ("Q1", "Q2", "Q3", "Q4"), alpha=1.0, hysteresis=0.25)
    off.update([0.55, 0.45], q, 0.5)
    assert all(off.update([0.45, 0.55], q, 0.5)[0] == 0 for _ in range(50))


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 1.0), st.lists(st.floats(0.0, 1.0), min_size=3, max_size=30))
def test_ema_stays_a_distribution(alpha: float, xs: list[float]) -> None:
    s = TagsState(("a", "b"), ("Q1", "Q2", "Q3", "Q4"), alpha=alpha, hysteresis=0.0)
    for x in xs:
        s.update([x, 1 - x], [x, 1 - x, 0, 0], x)
        assert s.genre is not None
        assert abs(s.genre.sum() - 1.0) < 1e-9
        assert 0.0 <= s.voice <= 1.0


# ----------------------------------------------------------------------------- splits


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=10, max_size=200), st.integers(2, 10))
def test_artist_folds_never_share_an_artist(artists: list[int], k: int) -> None:
    items = [TagItem(f"c{i}", Path("x"), "mer4q", f"artist{a}") for i, a in enumerate(artists)]
    fold = artist_folds(items, k, seed=1)
    assert (fold >= 0).all() and (fold < k).all()
    owner: dict[str, int] = {}
    for it, f in zip(items, fold, strict=True):
        assert owner.setdefault(it.artist, int(f)) == f
    sizes = np.bincount(fold, minlength=k)
    biggest_artist = max(artists.count(a) for a in set(artists))
    assert sizes.max() - sizes[sizes > 0].min() <= biggest_artist


def test_mer4q_folds_are_artist_disjoint() -> None:
    items = mer4q_items()
    if not items:
        pytest.skip("../shared/data/mood/mer4q is not present")
    fold = artist_folds(items, 10, 0)
    by_artist: dict[str, set[int]] = {}
    for it, f in zip(items, fold, strict=True):
        by_artist.setdefault(it.artist, set()).add(int(f))
    assert all(len(v) == 1 for v in by_artist.values())
    assert np.bincount(fold).min() >= 0.7 * len(items) / 10


def test_allmusic_mapping_and_scores() -> None:
    am = coarse_from_allmusic(["Pop/Rock", "Jazz"])
    assert am is not None and abs(am.sum() - 1.0) < 1e-6
    assert am[GENRES.index("jazz/blues")] == pytest.approx(0.5)
    assert coarse_from_allmusic(["Holiday"]) is None
    items = [
        TagItem("a", Path("a"), "mer4q", "x", quadrant=0, allmusic=("Jazz",)),
        TagItem("b", Path("b"), "mer4q", "y", quadrant=2, allmusic=("Rap", "Vocal")),
    ]
    g_jazz = np.eye(len(GENRES), dtype=np.float32)[GENRES.index("jazz/blues")]
    outs = [
        {"genre": g_jazz, "quadrant": np.array([0.7, 0.1, 0.1, 0.1]), "voice": np.array([0.1])},
        {"genre": g_jazz, "quadrant": np.array([0.1, 0.1, 0.7, 0.1]), "voice": np.array([0.9])},
    ]
    m = score_clips(outs, items)
    assert m["quadrant_accuracy"] == 1.0 and m["genre_top1_agreement"] == 0.5
    assert m["valence_sign_accuracy"] == 1.0 and m["arousal_sign_accuracy"] == 1.0


# ----------------------------------------------------------------------------- runtime


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"tags\.enabled"):
        TagsConfig(enabled="maybe")
    with pytest.raises(ConfigError, match="hop_s"):
        apply_overrides(OnbeatConfig(), {"tags.hop_s": 0})


def test_fast_replay_tags_every_hop_and_gates_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    song = demo_song(duration_s=12.0, sample_rate_hz=SR).samples
    audio = np.concatenate([song, np.zeros(6 * SR, np.float32)])  # then 6 s of silence
    engine = _engine(_config(), _weights(tmp_path), monkeypatch)
    tags = _run(engine, audio)
    times = [e.time_s for e in tags]
    # windows end at 3.0, 4.5, ... while music is in the 3 s window; none once it is silent
    assert times[0] == pytest.approx(3.0, abs=0.011)
    assert np.allclose(np.diff(times), 1.5, atol=0.011)
    assert 12.0 <= times[-1] <= 15.0
    assert engine.tagger is not None and engine.tagger.gated >= 2
    for e in tags:
        assert {g for g, _ in e.genre} == set(GENRES)
        assert abs(sum(p for _, p in e.genre) - 1.0) < 1e-3
        assert -1.0 <= e.valence <= 1.0 and -1.0 <= e.arousal <= 1.0
        assert 0.0 <= e.voice <= 1.0 and 0.0 < e.energy <= 1.0
        assert e.top_genre in GENRES and e.top_quadrant in ("Q1", "Q2", "Q3", "Q4")
        assert len(e.embedding) == 16
        assert abs(np.linalg.norm(e.embedding) - 1.0) < 1e-3
        assert e.dropped == 0
    assert json.dumps(dataclasses.asdict(tags[0]))  # JSON-able for the JSONL / WebSocket sinks


def test_threaded_worker_equals_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live worker thread sees exactly the windows fast replay computes inline."""
    audio = demo_song(duration_s=7.0, sample_rate_hz=SR).samples
    w = _weights(tmp_path)
    fast = _run(_engine(_config(), w, monkeypatch), audio)
    live_like = _engine(_config(), w, monkeypatch)
    assert live_like.tagger is not None
    live_like.tagger.prepare()  # else the worker loads it while the first window streams by
    paced = _run(live_like, audio, paced=True)
    assert [e.sample_index for e in paced] == [e.sample_index for e in fast]
    for a, b in zip(paced, fast, strict=True):
        assert a.genre == b.genre and a.mood_quadrant == b.mood_quadrant
        assert a.emitted_s >= a.time_s  # published at a later frame by the analysis thread


def test_tag_array_equals_engine_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline tagger path (evaluation, tuning) gives the engine's windows and outputs,
    gate and smoothing included, over music, silence and a song change."""
    song = demo_song(duration_s=9.0, sample_rate_hz=SR).samples
    other = 0.2 * np.random.default_rng(3).standard_normal(8 * SR).astype(np.float32)
    audio = np.concatenate([song, np.zeros(5 * SR, np.float32), other, song[: 4 * SR]])
    w = _weights(tmp_path)
    engine = _engine(_config(novelty=0.001), w, monkeypatch)
    replay = _run(engine, audio)
    assert engine.tagger is not None
    offline = engine.tagger.tag_array(audio)
    assert len(offline) == len(replay) >= 10 and engine.tagger.gated >= 2
    for a, b in zip(offline, replay, strict=True):
        assert a.sample_index == b.sample_index and a.time_s == b.time_s
        assert (a.genre, a.mood_quadrant, a.voice, a.embedding) == (
            b.genre, b.mood_quadrant, b.voice, b.embedding
        )  # fmt: skip
        assert (a.top_genre, a.top_quadrant) == (b.top_genre, b.top_quadrant)


def test_slow_model_drops_windows_instead_of_queueing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model slower than the hop: windows are dropped and counted, the analysis keeps pace."""
    # ~8 G multiply-adds per window: far slower than the 0.1 s hop on any CPU
    w = _weights(tmp_path, channels=(512, 512, 512, 512, 512))
    engine = _engine(_config(hop_s=0.1), w, monkeypatch)
    tagger = engine.tagger
    assert isinstance(tagger, Tagger)
    tagger.prepare()  # loaded before the stream, so every due window counts
    audio = demo_song(duration_s=5.0, sample_rate_hz=SR).samples
    tags = _run(engine, audio, paced=True)
    assert tagger.dropped_total > 0
    assert tags and tags[-1].dropped > 0
    assert len(tags) + tagger.dropped_total >= 15  # every due window is either done or counted


def test_window_reads_exactly_the_right_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ramp makes every sample's index visible: each window is the 3 s before its end."""
    engine = _engine(_config(gate_dbfs=-140.0), _weights(tmp_path), monkeypatch)
    tagger = engine.tagger
    assert tagger is not None
    seen: list[tuple[int, np.ndarray]] = []
    compute = tagger._compute

    def spy(end: int, sample: int):  # records what the real computation read, then runs it
        ev = compute(end, sample)
        seen.append((sample, tagger._window.copy()))
        return ev

    monkeypatch.setattr(tagger, "_compute", spy)
    n = 8 * SR
    ramp = (np.arange(n) % 65536).astype(np.float32) / 65536.0  # exact in float32
    _run(engine, ramp)
    assert len(seen) == 4  # windows end at 3.0, 4.5, 6.0, 7.5 s
    for sample, window in seen:
        want = ramp[sample - tagger.window_n : sample]
        np.testing.assert_array_equal(window, want)


def test_worker_survives_a_failing_model_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model call that raises: logged, that window dropped, the next windows still tagged."""
    engine = _engine(_config(), _weights(tmp_path), monkeypatch)
    tagger = engine.tagger
    assert tagger is not None
    tagger.prepare()
    real = tagger._net
    calls = {"n": 0}

    def flaky(x: torch.Tensor) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated model failure")
        return real(x)

    tagger._net = flaky
    audio = demo_song(duration_s=7.0, sample_rate_hz=SR).samples
    tags = _run(engine, audio, paced=True)
    assert calls["n"] >= 3
    assert [round(e.time_s, 2) for e in tags] == [4.5, 6.0]  # the 3.0 s window failed


def test_silence_gives_no_label_churn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(_config(), _weights(tmp_path), monkeypatch)
    song = demo_song(duration_s=9.0, sample_rate_hz=SR).samples
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(20 * SR).astype(np.float32)
    tags = _run(engine, np.concatenate([song, quiet]))
    assert tags and max(e.time_s for e in tags) <= 9.0 + 3.0  # nothing once the window is quiet
    assert engine.tagger is not None and engine.tagger.gated >= 10
    # the silence ends the song: the next window starts a new running mean, labels still held
    assert engine.tagger.state is not None and engine.tagger.state.n == 0
    assert engine.tagger.state.top_genre >= 0


def test_tags_reach_jsonl_and_osc_receiver(tmp_path: Path) -> None:
    """End to end with the shipped model: `onbeat replay --fast` → JSON Lines and real OSC."""
    import subprocess
    import sys

    import soundfile as sf
    from onbeat.models.registry import WEIGHTS_DIR
    from osc_receiver import OscReceiver

    if not (WEIGHTS_DIR / "tags.safetensors").exists():
        pytest.skip("no tagging model shipped")
    receiver = OscReceiver()
    wav = tmp_path / "song.wav"
    sf.write(wav, demo_song(duration_s=8.0, sample_rate_hz=SR).samples, SR)
    events = tmp_path / "ev.jsonl"
    port = receiver.port
    out = subprocess.run(
        [sys.executable, "-m", "onbeat", "replay", str(wav), "--fast", "--no-console",
         "--events", str(events), "--osc", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    time_s = [json.loads(x)["time_s"] for x in events.read_text().splitlines() if '"tags"' in x]
    assert time_s == pytest.approx([3.0, 4.5, 6.0, 7.5], abs=0.011)
    receiver.wait_for(lambda ms: sum(m.address == "/onbeat/genre/top" for m in ms) >= 4, 3.0)
    receiver.close()
    got = [(m.address, m.args) for m in receiver.messages()]
    tops = [args[0] for a, args in got if a == "/onbeat/genre/top"]
    assert len(tops) == 4 and all(t in GENRES for t in tops)
    quads = [args[0] for a, args in got if a == "/onbeat/mood/quadrant"]
    assert quads and all(q in ("Q1", "Q2", "Q3", "Q4") for q in quads)
    valence = [args[0] for a, args in got if a == "/onbeat/mood/valence"]
    assert valence and all(-1.0 <= v <= 1.0 for v in valence)


def test_fit_with_mixup_trains_and_resumes(tmp_path: Path) -> None:
    """A few steps of ``fit`` on synthetic clips, with and without mixup; bad mixup refused."""
    from onbeat.training.tags import fit

    spec = TaggerSpec()
    rng = np.random.default_rng(0)
    items = [
        TagItem(f"c{i}", tmp_path / f"c{i}.wav", "4q", f"a{i}", quadrant=i % 4,
                allmusic=("Rock",), mel=rng.standard_normal((spec.frames + 50, spec.n_mels))
                .astype(np.float32))
        for i in range(8)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="mixup"):
        fit(spec, items, [], steps=1, mixup=-1.0)
    ckpt = tmp_path / "ck.pt"
    for mixup in (0.0, 0.4):
        ckpt.unlink(missing_ok=True)
        net = fit(spec, items, [], steps=3, batch=4, mixup=mixup, ckpt=ckpt)
        assert torch.load(ckpt, weights_only=False)["step"] == 3
        out = net(torch.from_numpy(items[0].mel[None, : spec.frames]))
        assert all(torch.isfinite(v).all() for v in out.values())
    again = fit(spec, items, [], steps=3, batch=4, mixup=0.4, ckpt=ckpt)  # resumes at step 3
    for a, b in zip(again.state_dict().values(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_paired_batches_and_consistency_loss(tmp_path: Path) -> None:
    """Pairs are two crops of one clip; identical outputs cost 0; ``fit`` trains with pairs."""
    from onbeat.training.tags import consistency_loss, fit, make_batch

    spec = TaggerSpec()
    rng = np.random.default_rng(0)
    items = [
        TagItem(f"c{i}", tmp_path / f"c{i}.wav", "4q", f"a{i}", quadrant=i % 4,
                mel=np.full((spec.frames + 200, spec.n_mels), float(i), np.float32))
        for i in range(6)
    ]  # fmt: skip
    b = make_batch([items, []], [1.0, 0.0], 8, spec, rng, None, pairs=True)
    assert b.mel.shape[0] == 8
    clip = b.mel[:, 0, 0]  # each clip's mel is constant: its index
    assert torch.equal(clip[0::2], clip[1::2]) and torch.equal(b.quadrant[0::2], b.quadrant[1::2])
    same = {"genre": torch.randn(2, 9).repeat_interleave(2, 0),
            "quadrant": torch.randn(2, 4).repeat_interleave(2, 0)}  # fmt: skip
    assert float(consistency_loss(same)) == pytest.approx(0.0, abs=1e-6)
    differ = {"genre": torch.randn(4, 9), "quadrant": torch.randn(4, 4)}
    assert float(consistency_loss(differ)) > 0.0
    genre_same = {"genre": same["genre"], "quadrant": differ["quadrant"]}
    assert float(consistency_loss(genre_same, ("genre",))) == pytest.approx(0.0, abs=1e-6)
    assert float(consistency_loss(genre_same, ("quadrant",))) > 0.0
    with pytest.raises(ValueError, match="consistency heads"):
        fit(spec, items, [], steps=1, batch=4, consistency=1.0, consistency_heads=("mood",))
    net = fit(spec, items, [], steps=2, batch=4, mixup=0.4, consistency=1.0)
    out = net(torch.from_numpy(items[0].mel[None, : spec.frames]))
    assert all(torch.isfinite(v).all() for v in out.values())
