"""Issue 7: similarity evaluation metrics, the similarity head, its training and its use."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onbeat.models.similarity import (
    POOLS,
    SimilarityHead,
    SimilaritySpec,
    load_head,
    pool_trunk,
    save_head,
)
from onbeat.models.tagger import TagCNN, TaggerSpec, save_tagger
from onbeat.realtime.library import Embedder, similarity_head, weights_id
from onbeat.training.augment import MelAugment
from onbeat.training.eval_similarity import (
    EvalTrack,
    evaluate_similarity,
    format_table,
    retrieval_recall,
    tag_precision,
)
from onbeat.training.similarity import (
    _shifted_pair,
    fit_head,
    info_nce,
    tag_loss,
    tag_similarity,
)

SMALL = dataclasses.replace(TaggerSpec(), channels=(4, 8, 8, 8, 8), hidden=8)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _synthetic_mels(n_tracks: int, frames: int = 600, seed: int = 0) -> list[np.ndarray]:
    """Tracks of distinct timbres (spectral envelope) and rhythms (pulse period) as log-mels."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_tracks):
        env = rng.uniform(0.0, 1.5, 96)
        period = 10 + 4 * i
        pulse = (np.arange(frames) % period < 3).astype(np.float64)
        mel = env[None, :] * (0.4 + pulse[:, None]) + 0.05 * rng.random((frames, 96))
        out.append(mel.astype(np.float32))
    return out


# ----------------------------------------------------------------------------- metrics
def test_perfect_embedding_finds_every_track() -> None:
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((20, 16)))
    index = [np.repeat(c[None], 4, axis=0) for c in centres]
    truth = np.repeat(np.arange(20), 3)
    r = retrieval_recall(index, centres[truth], truth)
    assert r["mean_r@1"] == r["max_r@1"] == r["mean_r@10"] == r["max_r@10"] == 1.0


def test_constant_embedding_scores_chance() -> None:
    index = [np.ones((3, 8), np.float32) / np.sqrt(8)] * 20
    q = np.ones((40, 8), np.float32) / np.sqrt(8)
    r = retrieval_recall(index, q, np.arange(40) % 20)
    assert r["mean_r@1"] == pytest.approx(1 / 20) and r["max_r@1"] == pytest.approx(1 / 20)
    assert r["mean_r@10"] == pytest.approx(10 / 20)


def test_recall_counts_ranks() -> None:
    # track 0 is the query's second best: miss at 1, hit at 2
    index = [_unit(np.array([[1.0, 1.0]])), _unit(np.array([[1.0, 0.0]]))]
    q = _unit(np.array([[1.0, 0.1]]))
    r = retrieval_recall(index, q, [0], ks=(1, 2))
    assert r["mean_r@1"] == 0.0 and r["mean_r@2"] == 1.0
    # max over windows finds a matching window the mean hides
    index = [_unit(np.array([[1.0, 0.1], [-1.0, 0.0]])), _unit(np.array([[1.0, 1.0]]))]
    r = retrieval_recall(index, q, [0], ks=(1,))
    assert r["max_r@1"] == 1.0 and r["mean_r@1"] == 0.0


def test_tag_precision_excludes_the_same_artist() -> None:
    clips = _unit(np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.9, 0.1]]))
    groups = ["a", "a", "b", "c"]
    labels = [frozenset({"Q1"}), frozenset({"Q1"}), frozenset({"Q2"}), frozenset({"Q2"})]
    p, chance = tag_precision(clips, groups, labels, [True, False, False, False], k=1)
    # clip 1 (same artist, same label) is excluded: the nearest other is clip 3 (Q2)
    assert p == 0.0 and chance == 0.0


def test_evaluation_separates_synthetic_tracks() -> None:
    mels = _synthetic_mels(6)
    tracks = [EvalTrack(f"t{i}", f"t{i}", m) for i, m in enumerate(mels)]
    res = evaluate_similarity(tracks, queries=2, seed=0, use_models=False)
    assert set(res) == {"random-proj", "mel-stats"}
    assert res["mel-stats"]["mean_r@1"] >= 0.75
    assert res["mel-stats"]["mean_r@10"] == 1.0
    assert "mean_r@1" in format_table(res)


# ----------------------------------------------------------------------------- the head
def test_head_is_unit_norm_and_deterministic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = SimilarityHead(SimilaritySpec(in_dim=16, hidden=32, dim=8, trunk_id="tags:x")).eval()
    x = torch.randn(5, 16)
    with torch.inference_mode():
        a, b = head(x), head(x)
    assert torch.allclose(a.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.equal(a, b)
    loaded, _ = load_head(save_head(head, tmp_path))  # float16 on disk
    with torch.inference_mode():
        assert torch.equal(loaded(x), loaded(x))
        assert torch.allclose(loaded(x), a, atol=1e-2)
    assert (tmp_path / "similarity.safetensors").stat().st_size < 4 * sum(
        p.numel() for p in head.parameters()
    )


def test_info_nce_prefers_matching_pairs() -> None:
    a = torch.eye(4)
    assert float(info_nce(a, a)) < float(info_nce(a, a.roll(1, dims=0)))


def _tagger(directory: Path) -> Path:
    torch.manual_seed(0)
    return save_tagger(TagCNN(SMALL).eval(), directory)


def test_training_runs_and_resumes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TagCNN(SMALL).eval()
    aug = MelAugment(SMALL.filterbank().center_hz, 50.0, SMALL.log_mul)
    mels = _synthetic_mels(6)
    run = tmp_path / "run"
    head, losses = fit_head(
        net, mels, aug, run_dir=run, trunk_id="tags:x", epochs=1, steps=2, batch=4, starts=2
    )
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert (run / "ckpt.pt").exists()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    head2, losses2 = fit_head(
        net, mels, aug, run_dir=run, trunk_id="tags:x", epochs=2, steps=2, batch=4, starts=2
    )
    assert len(losses2) == 2 and losses2[0] == losses[0]  # epoch 1 was resumed, not redone
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # trunk frozen
    # a finished run resumes to the same head
    head3, _ = fit_head(
        net, mels, aug, run_dir=run, trunk_id="tags:x", epochs=2, steps=2, batch=4, starts=2
    )
    x = torch.randn(3, head.spec.in_dim)
    with torch.inference_mode():
        assert torch.equal(head2(x), head3(x))


@settings(max_examples=40, deadline=None)
@given(n_frames=st.integers(1, 400), shift=st.integers(0, 50), seed=st.integers(0, 2**31 - 1))
def test_shifted_pair_is_two_windows_of_the_track_at_most_shift_apart(
    n_frames: int, shift: int, seed: int
) -> None:
    frames = 150
    mel = np.arange(n_frames, dtype=np.float32)[:, None] + np.zeros((1, 4), np.float32) + 1.0
    a, b = _shifted_pair(mel, frames, shift, np.random.default_rng(seed))
    assert a.shape == b.shape == (frames, 4)
    # each is a crop of the track (row value = frame index + 1), zero padded past its end
    for w in (a, b):
        valid = w[:, 0] > 0
        assert valid.sum() == min(frames, n_frames)
        assert np.array_equal(w[valid, 0], w[0, 0] + np.arange(valid.sum()))
    assert abs(a[0, 0] - b[0, 0]) <= shift
    if shift == 0:
        assert np.array_equal(a, b)


def test_same_window_and_tag_objectives_train(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TagCNN(SMALL).eval()
    aug = MelAugment(SMALL.filterbank().center_hz, 50.0, SMALL.log_mul)
    head, losses = fit_head(
        net, _synthetic_mels(6), aug, run_dir=tmp_path, trunk_id="tags:x", epochs=2, steps=3,
        batch=4, starts=2, same_window=1.0, max_shift=10,
        tag_sim=tag_similarity([0, 0, 1, 1, 2, -1], [None] * 6), tag_weight=0.5,
    )  # fmt: skip
    assert len(losses) == 2 and all(np.isfinite(losses))
    with torch.inference_mode():
        z = head(torch.randn(2, head.spec.in_dim))
    assert torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-5)


def test_tag_similarity_averages_what_both_tracks_know() -> None:
    g = [np.array([1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0]), None, None]
    sim = tag_similarity([0, 0, 1, -1], g)
    assert sim[0, 1] == pytest.approx((1.0 + 1 / np.sqrt(2)) / 2)  # same quadrant, genre cosine
    assert sim[0, 2] == 0.0  # quadrants differ, no genre for track 2
    assert np.isnan(sim[0, 3]) and np.isnan(sim[3, 3])  # track 3 knows nothing
    assert np.allclose(sim, sim.T, equal_nan=True)


def test_tag_loss_prefers_embeddings_that_follow_the_tags() -> None:
    # tracks 0, 1 share tags; 2, 3 share other tags
    sim = torch.tensor(tag_similarity([0, 0, 1, 1], [None] * 4))
    e = torch.eye(4)
    follows = torch.nn.functional.normalize(e + e[[1, 0, 3, 2]], dim=1)  # 0~1, 2~3
    crosses = torch.nn.functional.normalize(e + e[[2, 3, 0, 1]], dim=1)  # 0~2, 1~3
    assert tag_loss(follows, follows, sim) < tag_loss(crosses, crosses, sim)
    unknown = torch.full((4, 4), float("nan"))
    assert tag_loss(follows, follows, unknown) == 0.0


def test_library_uses_the_matching_head(tmp_path: Path) -> None:
    tagger = _tagger(tmp_path)
    assert similarity_head(tagger, tmp_path / "none.safetensors")[1] == weights_id(tagger)
    torch.manual_seed(1)
    spec = SimilaritySpec(
        in_dim=2 * SMALL.channels[-1], pool="global", dim=12, trunk_id=weights_id(tagger)
    )
    head_path = save_head(SimilarityHead(spec).eval(), tmp_path)  # beside the tagger
    head, model_id = similarity_head(tagger)
    assert head is not None and model_id == weights_id(head_path)
    assert model_id.startswith("similarity:")
    emb = Embedder(tagger)
    assert emb.model_id == model_id and emb.dim == 12
    rng = np.random.default_rng(0)
    w = [(0.2 * rng.standard_normal(SMALL.window_samples)).astype(np.float32) for _ in range(3)]
    v = emb.embed_windows(w)
    assert v.shape == (3, 12)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v, emb.embed_windows(w))
    # a head trained on another trunk is not used
    meta = json.loads(head_path.with_suffix(".json").read_text())
    meta["spec"]["trunk_id"] = "tags:0000000000000000"
    head_path.with_suffix(".json").write_text(json.dumps(meta))
    assert similarity_head(tagger) == (None, weights_id(tagger))


def test_head_with_its_own_trunk_serves_a_retrained_tagger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head trained on an older tagger keeps its embedding when the tagger is retrained: its
    frozen trunk ships beside it (``similarity_trunk``) and runs on the same log-mel, in the
    library's embedder, in the live tagger and in ``onbeat eval similarity``."""
    import shutil

    from onbeat.models.tagger_np import load_head_np, load_tagger_np
    from onbeat.realtime.config import TagsConfig
    from onbeat.realtime.library import TRUNK_NAME, similarity_trunk_path
    from onbeat.realtime.tags import Tagger
    from onbeat.training.eval_similarity import _trunk_embedders

    old = _tagger(tmp_path / "old")  # the trunk the head was trained on
    ship = tmp_path / "ship"
    torch.manual_seed(1)
    tagger = save_tagger(TagCNN(SMALL).eval(), ship)  # the retrained tagger
    assert weights_id(tagger) != weights_id(old)
    spec = SimilaritySpec(in_dim=2 * SMALL.channels[-1], pool="global", dim=12)
    torch.manual_seed(2)
    head_path = save_head(
        SimilarityHead(dataclasses.replace(spec, trunk_id=weights_id(old))).eval(), ship
    )
    # without its trunk the head is not used
    assert similarity_trunk_path(tagger, head_path) is None
    assert similarity_head(tagger) == (None, weights_id(tagger))
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(old.with_suffix(suffix), (ship / TRUNK_NAME).with_suffix(suffix))
    own = ship / f"{TRUNK_NAME}.safetensors"
    assert similarity_trunk_path(tagger, head_path) == own
    model, model_id = similarity_head(tagger)
    assert model is not None and not model.shares_trunk and model_id == weights_id(head_path)

    rng = np.random.default_rng(0)
    w = [(0.2 * rng.standard_normal(SMALL.window_samples)).astype(np.float32) for _ in range(3)]
    fb = SMALL.filterbank()
    mel = np.stack([SMALL.log_mel(x, fb) for x in w])
    expected = load_head_np(head_path)[0].from_trunk(load_tagger_np(old)[0].trunk_map(mel))
    emb = Embedder(tagger)
    assert emb.model_id == model_id and emb.dim == 12
    np.testing.assert_allclose(emb.embed_windows(w), expected, atol=1e-6)
    from onbeat.realtime.library_cli import _current_model_id

    monkeypatch.setenv("ONBEAT_MODELS", str(ship))  # `library list` marks other models' tracks
    assert _current_model_id() == model_id
    live = Tagger(TagsConfig(), sample_rate_hz=SMALL.sample_rate_hz, weights=tagger, inline=True)
    live.prepare()
    np.testing.assert_allclose(live._infer(w[0])[3], expected[0], atol=1e-6)
    solo = tmp_path / "solo"  # a tagger alone in its folder, given the head explicitly
    solo.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(tagger.with_suffix(suffix), (solo / "tags").with_suffix(suffix))
    cfg = TagsConfig()
    alone = Tagger(cfg, sample_rate_hz=SMALL.sample_rate_hz, weights=solo / "tags.safetensors")
    alone.prepare()
    assert len(alone._infer(w[0])[3]) == SMALL.hidden  # no head beside: the tagger's embedding
    given = Tagger(
        cfg, sample_rate_hz=SMALL.sample_rate_hz, weights=solo / "tags.safetensors", head=head_path
    )
    given.prepare()
    np.testing.assert_allclose(given._infer(w[0])[3], expected[0], atol=1e-6)
    # the tags still come from the retrained tagger
    probs = load_tagger_np(tagger)[0](mel[:1])["genre"]
    assert not np.allclose(probs, load_tagger_np(old)[0](mel[:1])["genre"])
    # the torch evaluation path runs the same trunk
    run = _trunk_embedders(tagger, head_path)["trunk"]
    np.testing.assert_allclose(run(mel)["head"], expected, atol=1e-4)

    # a trunk that reads another log-mel is refused
    other = dataclasses.replace(SMALL, n_mels=64)
    torch.manual_seed(3)
    odd = save_tagger(TagCNN(other).eval(), tmp_path / "odd")
    save_head(SimilarityHead(dataclasses.replace(spec, trunk_id=weights_id(odd))).eval(), ship)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(odd.with_suffix(suffix), own.with_suffix(suffix))
    assert similarity_trunk_path(tagger, head_path) is None
    assert similarity_head(tagger)[0] is None


@pytest.mark.parametrize("pool", POOLS)
def test_live_tagger_publishes_the_head_embedding(tmp_path: Path, pool: str) -> None:
    from onbeat.realtime.config import TagsConfig
    from onbeat.realtime.tags import Tagger

    tagger_path = _tagger(tmp_path)
    with torch.inference_mode():
        probe = TagCNN(SMALL).eval().trunk_map(torch.zeros(1, SMALL.frames, SMALL.n_mels))
    in_dim = pool_trunk(probe, pool).shape[1]
    spec = SimilaritySpec(in_dim=in_dim, pool=pool, dim=12, trunk_id=weights_id(tagger_path))
    save_head(SimilarityHead(spec).eval(), tmp_path)
    t = Tagger(TagsConfig(), sample_rate_hz=SMALL.sample_rate_hz, weights=tagger_path, inline=True)
    t.prepare()
    x = (0.2 * np.random.default_rng(0).standard_normal(SMALL.window_samples)).astype(np.float32)
    *_, emb = t._infer(x)
    np.testing.assert_allclose(emb, Embedder(tagger_path).embed_windows([x])[0], atol=1e-5)


def test_eval_similarity_command_on_a_directory(tmp_path: Path) -> None:
    import soundfile as sf
    from onbeat.realtime.cli import main

    sr = 22050
    t = np.arange(8 * sr) / sr
    for i, f0 in enumerate((110.0, 220.0, 330.0, 495.0)):
        beat = (np.sin(2 * np.pi * (1.5 + i) * t) > 0.9).astype(np.float64)
        x = 0.2 * np.sin(2 * np.pi * f0 * t) * (0.3 + beat)
        sf.write(tmp_path / f"song{i}.wav", x.astype(np.float32), sr)
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    out = tmp_path / "m.json"
    assert main(["eval", "similarity", str(tmp_path), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["set"] == "files"
    res = doc["results"]
    assert {"random-proj", "mel-stats"} <= set(res)
    for r in res.values():
        assert r["tracks"] == 4 and r["queries"] == 12
        assert 0.0 <= r["mean_r@1"] <= r["mean_r@10"] == 1.0
        assert "p10_quadrant" not in r  # no labels outside 4Q


def test_shipped_head_is_small_and_fits_the_shipped_tagger() -> None:
    from onbeat.models.registry import WEIGHTS_DIR

    path = WEIGHTS_DIR / "similarity.safetensors"
    if not path.exists():
        pytest.skip("no similarity head ships in models/weights")
    assert path.stat().st_size < 1_000_000
    assert (WEIGHTS_DIR / "similarity.md").exists()
    head, model_id = similarity_head(WEIGHTS_DIR / "tags.safetensors", path)
    assert head is not None and model_id == weights_id(path)


def test_render_tracks_draw_train_split_groove_and_pop909(tmp_path: Path) -> None:
    import json

    from onbeat.training.similarity import render_tracks

    with pytest.raises(FileNotFoundError, match="no renders"):
        render_tracks(tmp_path, 3, 0)
    rows = [
        ("groove_a", "groove", "train"), ("groove_b", "groove", "valid"),
        ("pop909_1", "pop909", "train"), ("pop909_2", "pop909", "train"),
        ("asap_x", "asap", "train"), ("pop909_3", "pop909", "test"),
    ]  # fmt: skip
    lines = []
    for name, set_name, split in rows:
        (tmp_path / f"{name}.beats").write_text("0.5\t1\n1.0\t2\n")
        (tmp_path / f"{name}.onsets").write_text("0.5\n")
        lines.append(json.dumps({"name": name, "set": set_name, "piece": name, "split": split,
                                 "audio": f"{name}.flac", "beats": f"{name}.beats",
                                 "onsets": f"{name}.onsets"}))  # fmt: skip
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    every = render_tracks(tmp_path, 10, 0)
    assert sorted(p.stem for p in every) == ["groove_a", "pop909_1", "pop909_2"]
    two = render_tracks(tmp_path, 2, 0)
    assert len(two) == 2 and set(two) <= set(every) and two == render_tracks(tmp_path, 2, 0)
