"""The generic LSTM training loop: learning, resume, fine-tuning, sampling weights, and the
offline bidirectional beat teacher it also trains."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from onbeat.models.lstm import CausalLSTM, LSTMSpec, save_model
from onbeat.training.beat_teacher import (
    BiLSTMTeacher,
    load_teacher,
    load_teachers,
    save_teacher,
)
from onbeat.training.loop import TrainConfig, _batch, load_init_state, predict, train

SPEC = LSTMSpec(name="beats", n_in=6, hidden=8, layers=1, outputs=("beat",))


def pulse_data(n_seq=4, frames=300, period=20, seed=0):
    """Noise features with a pulse in feature 0 every ``period`` frames; target = the pulse."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_seq):
        x = rng.normal(0, 0.3, (frames, SPEC.n_in)).astype(np.float32)
        y = np.zeros((frames, 1), np.float32)
        phase = int(rng.integers(period))
        y[phase::period, 0] = 1.0
        x[:, 0] += 3.0 * y[:, 0]
        out.append((x, y))
    return out


def pulse_score(net, data):
    """Mean activation on the pulse frames minus elsewhere."""
    d = []
    for x, y in data:
        a = predict(net, x)[:, 0]
        d.append(a[y[:, 0] == 1].mean() - a[y[:, 0] == 0].mean())
    return float(np.mean(d))


CFG = TrainConfig(epochs=3, steps_per_epoch=60, batch_size=4, crop_frames=100, lr=1e-2)


def test_train_learns_resumes_and_fine_tunes(tmp_path):
    data = pulse_data()
    best = train(
        spec=SPEC, train_data=data, valid_data=data, config=CFG, run_dir=tmp_path / "a",
        score=pulse_score, progress=False,
    )  # fmt: skip
    assert best["score"] > 0.6  # the pulse frames stand out after 180 steps
    log = [json.loads(line) for line in (tmp_path / "a" / "train.log").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    # the same command again resumes at the end: no further epoch is logged
    again = train(
        spec=SPEC, train_data=data, valid_data=data, config=CFG, run_dir=tmp_path / "a",
        score=pulse_score, progress=False,
    )  # fmt: skip
    assert again == best
    assert len((tmp_path / "a" / "train.log").read_text().splitlines()) == 3
    # fine-tuning starts from the given weights: its first epoch already scores like the end
    cold = train(
        spec=SPEC, train_data=data, valid_data=data, config=CFG.__class__(
            epochs=1, steps_per_epoch=1, batch_size=4, crop_frames=100, lr=1e-5
        ), run_dir=tmp_path / "cold", score=pulse_score, progress=False,
    )  # fmt: skip
    warm = train(
        spec=SPEC, train_data=data, valid_data=data, config=CFG.__class__(
            epochs=1, steps_per_epoch=1, batch_size=4, crop_frames=100, lr=1e-5
        ), run_dir=tmp_path / "warm", score=pulse_score, progress=False,
        init=tmp_path / "a" / "best.pt",
    )  # fmt: skip
    assert warm["score"] > best["score"] - 0.05
    assert warm["score"] > cold["score"] + 0.2


def test_fine_tune_from_an_exported_model_equals_from_its_checkpoint(tmp_path):
    torch.manual_seed(1)
    net = CausalLSTM(SPEC)
    with torch.no_grad():
        net.in_mean.fill_(0.25)
        net.in_std.fill_(2.0)
    torch.save(net.state_dict(), tmp_path / "best.pt")
    exported = save_model(net, tmp_path / "export")
    a, b = load_init_state(tmp_path / "best.pt"), load_init_state(exported)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    cfg = TrainConfig(epochs=1, steps_per_epoch=5, batch_size=4, crop_frames=100, lr=1e-3)
    runs = []
    for name, init in (("pt", tmp_path / "best.pt"), ("st", exported)):
        runs.append(
            train(
                spec=SPEC,
                train_data=pulse_data(),
                valid_data=pulse_data(),
                config=cfg,
                run_dir=tmp_path / name,
                score=pulse_score,
                progress=False,
                init=init,
            )
        )
    assert runs[0]["score"] == runs[1]["score"]
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "empty.safetensors"))
    with pytest.raises(ValueError, match="no torch state"):
        load_init_state(tmp_path / "empty.safetensors")


def test_stop_epoch_ends_early_on_the_full_schedule(tmp_path):
    data = pulse_data()
    cfg = TrainConfig(
        epochs=4, steps_per_epoch=5, batch_size=4, crop_frames=100, lr=1e-2, stop_epoch=2
    )
    seen = []

    def score(net, _):
        seen.append(1)
        return float(len(seen))

    best = train(
        spec=SPEC, train_data=data, valid_data=data, config=cfg, run_dir=tmp_path / "s",
        score=score, progress=False,
    )  # fmt: skip
    assert best["epoch"] == 2 and len(seen) == 2
    ck = torch.load(tmp_path / "s" / "ckpt.pt", weights_only=False)
    assert ck["sched"]["T_max"] == 4 and ck["epoch"] == 2  # the schedule spans all 4 epochs
    with pytest.raises(ValueError, match="stop_epoch"):
        TrainConfig(epochs=2, stop_epoch=3)


def test_crop_starts_limit_where_crops_begin():
    """``crop_starts``: a sequence's crops start only at its allowed frames; None = anywhere."""
    ramp = np.arange(300, dtype=np.float32)[:, None].repeat(2, axis=1)
    data = [(ramp, np.zeros((300, 1), np.float32)), (ramp + 1000, np.zeros((300, 1), np.float32))]
    rng = np.random.default_rng(1)
    allowed = np.array([0, 7, 120], dtype=np.int64)
    x, _, _ = _batch(data, rng, 300, 50, crop_starts=[allowed, None])
    first = x[:, 0, 0].numpy()
    mine, other = first[first < 1000], first[first >= 1000] - 1000
    assert set(mine.astype(int).tolist()) == {0, 7, 120}
    assert len(set(other.astype(int).tolist())) > 50  # anywhere in 0..250
    with pytest.raises(ValueError, match="crop_starts"):
        train(
            spec=SPEC, train_data=pulse_data(2), valid_data=[], config=CFG, run_dir="unused",
            score=pulse_score, progress=False, crop_starts=[None],
        )  # fmt: skip


def test_onset_marks_must_match_the_sequences():
    data = pulse_data(2)
    for marks in ([None], [np.zeros(10, bool), None]):
        with pytest.raises(ValueError, match="onset_marks"):
            train(
                spec=SPEC, train_data=data, valid_data=[], config=CFG, run_dir="unused",
                score=pulse_score, progress=False, onset_marks=marks,
            )  # fmt: skip
    with pytest.raises(ValueError, match="onset_weight"):
        TrainConfig(onset_weight=0.0)


def test_sample_weight_moves_the_crops():
    # two sequences told apart by their features: 0s and 1s
    data = [
        (np.zeros((200, 3), np.float32), np.zeros((200, 1), np.float32)),
        (np.ones((200, 3), np.float32), np.zeros((200, 1), np.float32)),
    ]
    rng = np.random.default_rng(0)
    x, _, _ = _batch(data, rng, 400, 50)
    share_even = float(x[:, 0, 0].mean())
    x, _, _ = _batch(data, rng, 400, 50, sample_weight=np.array([1.0, 9.0]))
    share_weighted = float(x[:, 0, 0].mean())
    assert 0.4 < share_even < 0.6
    assert 0.85 < share_weighted < 0.95
    with pytest.raises(ValueError, match="sample_weight"):
        train(
            spec=SPEC, train_data=pulse_data(2), valid_data=[], config=CFG, run_dir="unused",
            score=pulse_score, progress=False, sample_weight=[1.0],
        )  # fmt: skip


def test_teacher_is_bidirectional_trains_and_round_trips(tmp_path):
    torch.manual_seed(0)
    spec = LSTMSpec(name="beats", n_in=6, hidden=5, layers=2, outputs=("beat", "downbeat"))
    net = BiLSTMTeacher(spec).eval()
    x = np.random.default_rng(1).normal(size=(120, 6)).astype(np.float32)
    a = predict(net, x)
    x2 = x.copy()
    x2[100:] += 5.0  # change only the future of frames 0-99
    assert np.abs(predict(net, x2)[90:100] - a[90:100]).max() > 1e-4  # it sees the future
    causal = CausalLSTM(spec).eval()
    c = predict(causal, x)
    assert np.abs(predict(causal, x2)[:100] - c[:100]).max() == 0.0  # the live model does not

    data = [(x0, np.concatenate([y0, y0], axis=1)) for x0, y0 in pulse_data()]
    best = train(
        spec=spec, train_data=data, valid_data=data, config=CFG, run_dir=tmp_path / "t",
        score=pulse_score, progress=False, make_net=BiLSTMTeacher,
    )  # fmt: skip
    assert best["score"] > 0.6
    trained = BiLSTMTeacher(spec)
    trained.load_state_dict(torch.load(tmp_path / "t" / "best.pt", weights_only=True))
    save_teacher(trained.eval(), tmp_path / "export", {"valid_peak_f": best["score"]})
    loaded = load_teacher(tmp_path / "export")
    np.testing.assert_allclose(predict(loaded, x), predict(trained.eval(), x), atol=1e-6)
    meta = json.loads((tmp_path / "export" / "teacher.json").read_text())
    assert meta["spec"]["hidden"] == 5 and meta["valid_peak_f"] == best["score"]
    # a teacher ensemble ("A+B") labels with the mean of the members' sigmoid activations
    other = BiLSTMTeacher(spec).eval()
    save_teacher(other, tmp_path / "export2", {})
    pair = load_teachers(f"{tmp_path / 'export'}+{tmp_path / 'export2'}")
    np.testing.assert_allclose(
        predict(pair, x), (predict(loaded, x) + predict(other, x)) / 2, atol=1e-5
    )


class _Feature0(torch.nn.Module):
    """A stand-in onset network: its logit is feature 0, scaled."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x[..., :1] - 0.5)


def test_onset_f_dates_delayed_targets_back():
    """A model trained with targets ``d`` frames late fires ``d`` frames after each onset;
    ``onset_f(target_delay=d)`` dates those detections back onto the onsets."""
    from onbeat.training.tasks import onset_dating_ms, onset_f

    ref = np.array([0.5, 1.2, 2.0, 2.7])
    d = 3  # 30 ms: outside the ±25 ms window unless dated back
    x = np.zeros((400, 2), np.float32)
    x[np.round(ref * 100).astype(int) + d, 0] = 1.0
    data = [((x, np.zeros((400, 1), np.float32)), ref)]
    pick = [{"threshold": 0.5, "pre_avg_s": 0.0, "pre_max_s": 0.01}]
    assert onset_f(_Feature0(), data, pickers=pick, target_delay=d)[0] == pytest.approx(1.0)
    assert onset_f(_Feature0(), data, pickers=pick)[0] == 0.0
    # dated one frame short of the model's real delay: every match is 10 ms late
    assert onset_dating_ms(_Feature0(), data, pick[0], d - 1) == pytest.approx(10.0)


def test_checkpoints_load_weights_only(tmp_path: Path) -> None:
    """Resume loads checkpoints without running pickled code; a file that needs it (an older
    onbeat stored NumPy scalars) gets a one-line reason, not a torch traceback."""
    from onbeat.training.loop import load_checkpoint

    ok = tmp_path / "ok.pt"
    rng = np.random.default_rng(0)
    torch.save({"epoch": 3, "rng": rng.bit_generator.state, "w": torch.ones(2)}, ok)
    ck = load_checkpoint(ok)
    assert ck["epoch"] == 3 and torch.equal(ck["w"], torch.ones(2))
    assert ck["rng"] == rng.bit_generator.state
    old = tmp_path / "old.pt"
    torch.save({"lr": np.float64(0.1)}, old)
    with pytest.raises(ValueError, match=r"not a weights-only checkpoint.*--run-dir"):
        load_checkpoint(old)


def _click_renders(root: Path, prefix: str, splits: tuple[str, ...], bpm: float) -> None:
    """A render folder of short click tracks (the renderer's manifest format)."""
    import soundfile as sf

    root.mkdir(parents=True)
    sr = 44100
    lines = []
    for k, split in enumerate(splits):
        name = f"{prefix}_{k}"
        beats = np.arange(0.5, 7.5, 60.0 / bpm)
        x = np.zeros(8 * sr, np.float32)
        for i, t in enumerate(beats):
            a = int(t * sr)
            x[a : a + 400] += (0.8 if i % 4 == 0 else 0.4) * np.hanning(400).astype(np.float32)
        sf.write(root / f"{name}.flac", x, sr)
        (root / f"{name}.beats").write_text(
            "".join(f"{t:.6f} {i % 4 + 1}\n" for i, t in enumerate(beats))
        )
        (root / f"{name}.onsets").write_text("".join(f"{t:.6f}\n" for t in beats))
        rec = {"name": name, "set": prefix, "split": split, "audio": f"{name}.flac"}
        lines.append(json.dumps({**rec, "beats": f"{name}.beats", "onsets": f"{name}.onsets"}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def test_train_beats_adds_more_render_folders(tmp_path):
    """``--extra-renders`` (repeatable): each folder's train items join training with its
    weight, its valid items the validation set, and the card says so."""
    from onbeat.training.tasks import train_beats

    _click_renders(tmp_path / "r", "groove", ("train", "train", "valid"), 120.0)
    _click_renders(tmp_path / "h", "heavy", ("train", "valid", "test"), 170.0)
    _click_renders(tmp_path / "d", "displaced", ("train", "train", "valid"), 150.0)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, crop_frames=200)
    common = dict(
        run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", render_dir=tmp_path / "r",
        config=cfg, hidden=4, layers=1,
    )  # fmt: skip
    train_beats(export_dir=tmp_path / "plain", **common)
    meta = json.loads((tmp_path / "plain" / "beats.json").read_text())
    assert "2 items" in meta["data"] and "heavy" not in meta["data"]
    assert "valid split 1 items" in meta["data"]
    assert "extra renders" not in meta["licence"] and "--seed" not in meta["training_command"]

    common["run_dir"] = tmp_path / "run2"
    train_beats(
        export_dir=tmp_path / "both", extra_render_dirs=(tmp_path / "h",), extra_weights=(3.0,),
        **common,
    )  # fmt: skip
    meta = json.loads((tmp_path / "both" / "beats.json").read_text())
    assert f"2 items plus 1 items of {tmp_path / 'h'}" in meta["data"]
    assert "sampling weight 3)" in meta["data"] and "valid split 2 items" in meta["data"]
    assert f"--extra-renders {tmp_path / 'h'} --extra-weight 3" in meta["training_command"]
    # the licence names the extra folders (Debian packages' licences where they come from)
    assert f"extra renders {tmp_path / 'h'} (" in meta["licence"]

    common["run_dir"] = tmp_path / "run3"
    common["config"] = dataclasses.replace(common["config"], seed=3)
    train_beats(
        export_dir=tmp_path / "three", extra_render_dirs=(tmp_path / "h", tmp_path / "d"),
        extra_weights=(3.0, 0.5), **common,
    )  # fmt: skip
    meta = json.loads((tmp_path / "three" / "beats.json").read_text())
    assert f"1 items of {tmp_path / 'h'} (sampling weight 3)" in meta["data"]
    assert f"2 items of {tmp_path / 'd'} (sampling weight 0.5)" in meta["data"]
    assert "valid split 3 items" in meta["data"]
    assert "--extra-weight 3 --extra-weight 0.5" in meta["training_command"]
    assert meta["training_command"].endswith(" --seed 3")  # the whole recipe, seed included
    with pytest.raises(ValueError, match="one per folder"):
        train_beats(
            export_dir=tmp_path / "y", extra_render_dirs=(tmp_path / "h", tmp_path / "d"),
            extra_weights=(1.0, 2.0, 3.0), **common,
        )  # fmt: skip
    # the card's command is the whole recipe, not only the flags that changed the data
    recipe = "--epochs 1 --steps 2 --hidden 4 --crop-frames 200 --layers 1"
    assert recipe in meta["training_command"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match="no rendered train items"):
        train_beats(export_dir=tmp_path / "x", extra_render_dirs=(empty,), **common)


def test_train_beats_adds_the_lmms_train_half_only(tmp_path):
    """``--lmms DIR``: the train half of the LMMS songs joins training with its weight, the
    test half never does, and the card and licence say so."""
    from onbeat.training.tasks import train_beats

    _click_renders(tmp_path / "r", "groove", ("train", "train", "valid"), 120.0)
    _click_renders(tmp_path / "l", "lmms", ("train", "train", "test"), 140.0)
    songs = [
        {
            "name": f"lmms_{k}",
            "audio": f"lmms_{k}.flac",
            "beats": f"lmms_{k}.beats",
            "split": split,
        }
        for k, split in enumerate(("train", "train", "test"))
    ]
    (tmp_path / "l" / "manifest.json").write_text(json.dumps({"songs": songs}))
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, crop_frames=200)
    common = dict(
        run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", render_dir=tmp_path / "r",
        config=cfg, hidden=4, layers=1,
    )  # fmt: skip
    train_beats(export_dir=tmp_path / "m", lmms_dir=tmp_path / "l", lmms_weight=5.0, **common)
    meta = json.loads((tmp_path / "m" / "beats.json").read_text())
    assert "plus the 2 LMMS demo songs of the train half" in meta["data"]
    assert f"--lmms {tmp_path / 'l'} --lmms-weight 5" in meta["training_command"]
    assert "lmms-common" in meta["licence"]
    # the test half never trains: its features were never even computed
    cached = " ".join(p.name for p in (tmp_path / "cache").rglob("*"))
    assert "lmms_0" in cached and "lmms_2" not in cached
    for s in songs:
        s["split"] = "test"
    (tmp_path / "l" / "manifest.json").write_text(json.dumps({"songs": songs}))
    with pytest.raises(FileNotFoundError, match="no LMMS train songs"):
        train_beats(export_dir=tmp_path / "x", lmms_dir=tmp_path / "l", **common)


def test_train_beats_keeps_every_epochs_export(tmp_path, monkeypatch):
    """``onbeat train beats --keep-epochs``: each epoch is exported to RUN_DIR/beats/epochs/NN
    (loadable, with its own epoch on the card), and the best epoch's export is one of them."""
    from onbeat.models.registry import load_lstm
    from onbeat.realtime.cli import main

    _click_renders(tmp_path / "r", "groove", ("train", "train", "valid"), 120.0)
    monkeypatch.setenv("ONBEAT_RENDERS", str(tmp_path / "r"))
    monkeypatch.setenv("ONBEAT_CACHE", str(tmp_path / "cache"))
    args = ["train", "beats", "--epochs", "2", "--steps", "2", "--hidden", "4", "--layers", "1"]
    args += ["--crop-frames", "200", "--run-dir", str(tmp_path / "run0")]
    assert main([*args, "--export", str(tmp_path / "m"), "--keep-epochs"]) == 0
    run = tmp_path / "run0" / "beats"
    epochs = sorted(p.name for p in (run / "epochs").iterdir())
    assert epochs == ["01", "02"]
    arrays = {}
    for e in epochs:
        meta = json.loads((run / "epochs" / e / "beats.json").read_text())
        assert meta["epoch"] == int(e)
        arrays[e] = load_lstm("beats", run / "epochs" / e)[1]
    best = load_lstm("beats", tmp_path / "m")[1]
    assert any(all(np.array_equal(best[k], a[k]) for k in best) for a in arrays.values())
    assert not all(np.array_equal(arrays["01"][k], arrays["02"][k]) for k in best)


def test_train_beats_adds_frets_on_fire_songs_except_the_held_out(tmp_path):
    """``--fof DIR --fof-hold-out PREFIX``: the other songs join training with their weight;
    the card names them and the hold-out, which the benchmark's fof-cv set checks before it
    scores a song with that fold model."""
    import importlib.util

    from onbeat.training.tasks import train_beats

    _click_renders(tmp_path / "r", "groove", ("train", "train", "valid"), 120.0)
    _click_renders(tmp_path / "f", "band", ("test", "test", "test"), 150.0)
    songs = [
        {
            "name": f"band{'AAB'[k]}_{k}",
            "audio": str(tmp_path / "f" / f"band_{k}.flac"),
            "beats": f"band_{k}.beats",
            "time_signature_in_chart": True,
        }
        for k in range(3)
    ]
    (tmp_path / "f" / "manifest.json").write_text(json.dumps({"songs": songs}))
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, crop_frames=200)
    train_beats(
        run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", render_dir=tmp_path / "r",
        config=cfg, hidden=4, layers=1, export_dir=tmp_path / "foldB",
        fof_dir=tmp_path / "f", fof_hold_out=("bandB",), fof_weight=20.0,
    )  # fmt: skip
    card = tmp_path / "foldB" / "beats.json"
    meta = json.loads(card.read_text())
    assert "plus 2 Frets-on-Fire songs (bandA_0, bandA_1; sampling weight 20)" in meta["data"]
    assert "--fof-hold-out bandB" in meta["training_command"]
    assert "CC BY-SA 3.0" in meta["licence"]
    with pytest.raises(ValueError, match="leaves no song"):
        train_beats(
            run_dir=tmp_path / "run2", cache_dir=tmp_path / "cache", render_dir=tmp_path / "r",
            config=cfg, hidden=4, layers=1, export_dir=tmp_path / "none",
            fof_dir=tmp_path / "f", fof_hold_out=("band",),
        )  # fmt: skip

    spec = importlib.util.spec_from_file_location(
        "bench_beats", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_beats.py"
    )
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_beats"] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    folds = bench.parse_fof_cv(f"bandB={tmp_path / 'foldB'}")
    assert bench.fold_model("bandB_2", folds) == tmp_path / "foldB"
    with pytest.raises(SystemExit, match="was not trained with --fof-hold-out bandA"):
        bench.parse_fof_cv(f"bandA={tmp_path / 'foldB'}")
    with pytest.raises(SystemExit, match="no fold holds out bandA_0"):
        bench.fold_model("bandA_0", folds)


def test_output_weight_scales_each_outputs_loss(tmp_path):
    """``TrainConfig.output_weight`` multiplies each output's loss; a wrong length or a
    non-positive weight is refused."""
    from onbeat.training.loop import _loss

    logits = torch.zeros(1, 4, 2)
    y = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0]]])
    pw, fw = torch.ones(2), torch.ones(1, 4, 2)
    # zero logits: every frame's BCE is log 2 whatever the target, so the weighted mean stays
    # log 2; what the weight changes is the gradient share of each output
    g = []
    for ow in (torch.tensor([1.0, 1.0]), torch.tensor([1.0, 4.0])):
        lg = logits.clone().requires_grad_(True)
        _loss(lg, y, pw, fw * ow).backward()
        g.append(lg.grad.abs().sum(dim=(0, 1)))
    assert float(g[0][1] / g[0][0]) == pytest.approx(1.0)
    assert float(g[1][1] / g[1][0]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="output_weight"):
        TrainConfig(output_weight=(1.0, 0.0))
    spec2 = LSTMSpec(name="beats", n_in=6, hidden=4, layers=1, outputs=("beat", "downbeat"))
    with pytest.raises(ValueError, match="output_weight has 1 values"):
        train(
            spec=spec2, train_data=[(np.zeros((50, 6), np.float32), np.zeros((50, 2), np.float32))],
            valid_data=[], config=TrainConfig(epochs=1, steps_per_epoch=1, crop_frames=20,
            output_weight=(2.0,)), run_dir=tmp_path / "run", score=lambda n, d: 0.0,
            progress=False,
        )  # fmt: skip
    assert not (tmp_path / "run").exists()  # refused before anything is written


class _Columns(torch.nn.Module):
    """A stand-in network whose sigmoid outputs are the first two feature columns (as
    logits)."""

    def forward(self, x):
        return x[..., :2]


def test_beat_f_adds_the_downbeat_auc_when_asked():
    """``beat_f(..., downbeat_gain=g)`` = peak F + g × (downbeat AUC − 0.5): a downbeat output
    that is high exactly on the labelled downbeats adds g/2; one that is flat adds nothing."""
    from onbeat.training.tasks import beat_f, downbeat_auc

    beats = np.arange(0.5, 8.0, 0.5)
    downbeats = beats[::4]
    x = np.full((900, 2), -6.0, np.float32)
    x[np.round(beats * 100).astype(int), 0] = 6.0  # beat output: exact peaks
    flat = x.copy()
    x[np.round(downbeats * 100).astype(int), 1] = 6.0  # downbeat output on bar starts only
    y = np.zeros((900, 2), np.float32)
    f0 = beat_f(_Columns(), [((x, y), beats)])
    assert f0 == pytest.approx(1.0)
    assert beat_f(_Columns(), [((x, y), beats)], 0, [downbeats], 0.4) == pytest.approx(1.2)
    assert beat_f(_Columns(), [((flat, y), beats)], 0, [downbeats], 0.4) == pytest.approx(1.0)
    assert beat_f(_Columns(), [((x, y), beats)], 0, [None], 0.4) == pytest.approx(1.0)
    assert downbeat_auc(np.array([1.0, 2.0]), np.array([0.0, 3.0])) == pytest.approx(0.5)
    assert downbeat_auc(np.array([]), np.array([1.0])) == 0.5


def test_train_bars_on_labelled_and_tracker_beats(tmp_path):
    """``onbeat train bars``: sequences from the labelled beats and from the live tracker's beats
    (cached per beat model), scored on the tracker's beats, exported with a card; a second run
    reuses the cached tracker beats."""
    from onbeat.training.bars import bar_pairs, train_bars
    from onbeat.training.datasets import render_items

    _click_renders(tmp_path / "r", "groove", ("train", "train", "valid"), 120.0)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, crop_frames=16, seed=3)
    train_bars(
        run_dir=tmp_path / "run", export_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
        render_dirs=[tmp_path / "r"], config=cfg, hidden=4,
    )  # fmt: skip
    meta = json.loads((tmp_path / "out" / "bars.json").read_text())
    assert meta["spec"]["outputs"] == ["downbeat"] and "live tracker's beats" in meta["data"]
    # the card's command reproduces the run: the seed is part of it
    assert meta["training_command"].endswith(" --seed 3")
    assert meta["licence"].startswith("weights: MIT (onbeat)")
    assert (tmp_path / "out" / "bars.md").exists()
    cache_path = tmp_path / "run" / "tracker_beats_train.json"
    cache = json.loads(cache_path.read_text())
    assert len(cache["beats"]) == 2
    items = render_items(tmp_path / "r", split="train")
    # the cache is read, not recomputed: a shortened entry shows up as a shorter sequence
    first = str(items[0].audio)
    cache["beats"][first] = cache["beats"][first][:9]
    cache_path.write_text(json.dumps(cache))
    pairs = bar_pairs(
        items, tmp_path / "cache", tracker=True, labelled=False,
        beats_cache=tmp_path / "run" / "tracker_beats_train.json",
    )  # fmt: skip
    for ((x, y), flags), it in zip(pairs, items, strict=True):
        tb = np.asarray(cache["beats"][str(it.audio)])
        assert x.shape == (tb.size - 1, meta["spec"]["n_in"]) and y.shape == (tb.size - 1, 1)
        # the click track's accented beats are its downbeats: the tracker's beats near them
        # are labelled 1, about one in four
        assert 0.15 < flags.mean() < 0.35


def test_beat_phase_targets_span_labelled_beats_only():
    """The auxiliary phase target runs from 0 at a labelled beat to just under one turn at the
    frame before the next; spans with a masked frame, or too long or short, are masked."""
    from onbeat.training.loop import beat_phase_targets

    y = np.zeros(300, np.float32)
    y[[10, 60, 110, 150, 290]] = 1.0
    y[[11, 59]] = 0.5  # widened neighbours are not beats
    y[170:180] = -1.0  # unknown labels inside the span 150..290 (also too long)
    t = beat_phase_targets(y)
    assert t.shape == (300, 3)
    np.testing.assert_allclose(t[10], [1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(t[35], [-1.0, 0.0, 1.0], atol=1e-6)  # half way: phase 0.5
    np.testing.assert_allclose(t[85], [-1.0, 0.0, 1.0], atol=1e-6)  # half of 50
    np.testing.assert_allclose(t[110 + 10], [0.0, 1.0, 1.0], atol=1e-6)  # a quarter of 40
    assert t[:10, 2].sum() == 0 and t[150:, 2].sum() == 0
    assert t[10:150, 2].sum() == 140
    short = np.zeros(100, np.float32)
    short[[10, 20]] = 1.0  # 10 frames: 600 BPM, not a beat period
    assert beat_phase_targets(short)[:, 2].sum() == 0


def test_phase_loss_trains_a_head_that_is_not_exported(tmp_path):
    """``phase_weight`` trains a training-only head on the LSTM's outputs to say where in the
    beat each frame is: it lands in the checkpoint (and resumes), never in the network."""
    data = pulse_data(frames=400)
    cfg = TrainConfig(
        epochs=2, steps_per_epoch=80, batch_size=4, crop_frames=120, lr=1e-2, phase_weight=1.0
    )
    spec = LSTMSpec(name="beats", n_in=6, hidden=16, layers=1, outputs=("beat",))
    best = train(
        spec=spec, train_data=data, valid_data=data, config=cfg, run_dir=tmp_path / "p",
        score=pulse_score, progress=False,
    )  # fmt: skip
    assert best["score"] > 0.5  # the beat output still learns
    state = torch.load(tmp_path / "p" / "best.pt", weights_only=True)
    assert not any(k.startswith("aux") for k in state)
    ck = torch.load(tmp_path / "p" / "ckpt.pt", weights_only=True)
    aux = torch.nn.Linear(16, 2)
    aux.load_state_dict(ck["aux"])
    net = CausalLSTM(spec)
    net.load_state_dict(state)
    net.eval()
    from onbeat.training.loop import beat_phase_targets

    sims = []
    with torch.inference_mode():
        for x, y in data:
            t = beat_phase_targets(y[:, 0])
            p = aux(net.hidden(torch.from_numpy(x)[None]))[0].numpy()
            m = t[:, 2] > 0
            sims.append(float(np.mean(np.sum(p[m] * t[m, :2], axis=1))))
    # mean cosine agreement with the true position (0 for a head that knows nothing)
    assert np.mean(sims) > 0.3, sims
    with pytest.raises(ValueError, match="phase_weight"):
        TrainConfig(phase_weight=-1.0)
