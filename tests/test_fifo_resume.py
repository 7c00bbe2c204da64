"""Resuming FIFO runs from state files (docs/fifo.md, "State files"): a resumed run gives exactly the frames
of an uninterrupted one.

Core tests use a cheap deterministic eps model (`fifo_resume_child.ToyEps`); the process-kill test runs FIFO in
a child process, SIGKILLs it part-way and resumes from what it left on disk. The same protocol through the real
ComfyUI server and the bundled model is in tests/test_server_resume.py.
"""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from fifo_infinity.samplers import fifo
from fifo_infinity.samplers.fifo_state import FifoStateError, load_state, save_state
from fifo_infinity.samplers.prompt_schedule import PromptSchedule

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fifo_resume_child as child  # noqa: E402

WARMUP = child.OPTIONS.warmup


@pytest.fixture(scope="module")
def full_run():
    return child.run(40)


def test_a_finished_run_continues_to_more_frames(full_run, tmp_path):
    states = []
    first = child.run(20, on_state=states.append)
    assert torch.equal(first, full_run[:20])
    assert len(states) == 1                              # state_every 0: only the final state
    final = states[0]
    assert final.frames_done == 20 and final.iteration == 20 + WARMUP
    path = str(tmp_path / "run.safetensors")
    save_state(path, final)
    resumed = child.run(40, resume=load_state(path))
    assert torch.equal(resumed, full_run)


def test_every_periodic_state_resumes_exactly(full_run, tmp_path):
    states = []
    assert torch.equal(child.run(40, on_state=states.append, state_every=8), full_run)
    assert [s.frames_done for s in states] == [8, 16, 24, 32, 40]
    for state in states[:-1]:
        path = str(tmp_path / f"state_{state.frames_done}.safetensors")
        save_state(path, state)
        loaded = load_state(path)
        assert torch.equal(loaded.frames, full_run[:state.frames_done])
        assert torch.equal(child.run(40, resume=loaded), full_run), state.frames_done


class Interrupted(Exception):
    pass


def test_an_interrupted_run_writes_the_state_before_the_failed_iteration(full_run):
    states = []

    def on_frame(iteration, iterations, popped):
        if iteration == WARMUP + 22:                      # 22 frames done, the 23rd is popped: stop here
            raise Interrupted()

    with pytest.raises(Interrupted):
        child.run(40, on_state=states.append, state_every=8, on_frame=on_frame)
    assert [s.frames_done for s in states] == [8, 16, 22]
    assert states[-1].iteration == WARMUP + 22
    assert torch.equal(states[-1].frames, full_run[:22])
    assert torch.equal(child.run(40, resume=states[-1]), full_run)


@pytest.mark.distributed
def test_a_killed_process_keeps_its_frames_and_the_resumed_run_is_identical(full_run, tmp_path):
    path = str(tmp_path / "killed.safetensors")
    process = subprocess.Popen([sys.executable, child.__file__, path, "40", "4", "0.02"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    frames_done, deadline = 0, time.time() + 120
    try:
        while frames_done < 20:
            assert process.poll() is None, process.stdout.read().decode()
            assert time.time() < deadline, "the child wrote no state with 20 frames within 120 s"
            if os.path.exists(path):
                frames_done = load_state(path).frames_done
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    state = load_state(path)
    assert 20 <= state.frames_done < 40, "the child should have been killed part-way"
    assert torch.equal(state.frames, full_run[:state.frames_done])
    assert torch.equal(child.run(40, resume=state), full_run)


def test_a_multi_prompt_run_resumes_exactly(tmp_path):
    schedule = PromptSchedule((12, 30), transition=(6,))
    full = child.run(40, prompt_schedule=schedule)
    states = []
    child.run(40, prompt_schedule=schedule, on_state=states.append, state_every=10)
    for state in states[:-1]:
        assert torch.equal(child.run(40, prompt_schedule=schedule, resume=state), full)


def test_a_state_with_enough_frames_returns_them_without_sampling(full_run):
    states = []
    child.run(40, on_state=states.append)
    calls = []
    model = lambda x, t: calls.append(1) or torch.zeros_like(x)
    out = fifo.fifo_sample(model, fifo.FifoRun(child.OPTIONS, 30, child.FRAME_SHAPE, fifo.GeneratorNoise(0)),
                           resume=states[-1])
    assert torch.equal(out, full_run[:30]) and not calls


@pytest.mark.parametrize("change, words", [
    (dict(num_partitions=3), "num_partitions = 2 but this run has num_partitions = 3"),
    (dict(eta=0.0), "eta = 1.0 but this run has eta = 0.0"),
    (dict(lookahead=False), "lookahead = True but this run has lookahead = False"),
    (dict(queue_init="uniform"), "queue_init = 'official' but this run has queue_init = 'uniform'"),
    (dict(rescale=True), "rescale = False but this run has rescale = True"),
])
def test_a_state_from_other_settings_is_refused(change, words):
    states = []
    child.run(6, on_state=states.append)
    options = fifo.FifoOptions(**{**dict(video_length=4, num_partitions=2, lookahead=True, eta=1.0), **change})
    with pytest.raises(FifoStateError, match=words):
        fifo.fifo_generate(child.ToyEps(4), fifo.FifoRun(options, 12, child.FRAME_SHAPE, fifo.GeneratorNoise(0)),
                           resume=states[0])


def test_a_state_written_before_the_rescale_setting_existed_resumes_as_official(full_run):
    states = []
    child.run(20, on_state=states.append)
    del states[-1].settings["rescale"]
    assert torch.equal(child.run(40, resume=states[-1]), full_run)
    with pytest.raises(FifoStateError, match="rescale = False but this run has rescale = True"):
        fifo.fifo_generate(child.ToyEps(4), fifo.FifoRun(dataclasses.replace(child.OPTIONS, rescale=True), 40,
                                                         child.FRAME_SHAPE, fifo.GeneratorNoise(child.SEED)),
                           resume=states[-1])


def test_a_state_of_another_frame_size_is_refused():
    states = []
    child.run(6, on_state=states.append)
    with pytest.raises(fifo.FifoError, match=r"state's latent frames are \(4, 3, 5\).*this video's are \(4, 6, 5\)"):
        fifo.fifo_generate(child.ToyEps(4), fifo.FifoRun(child.OPTIONS, 12, (4, 6, 5), fifo.GeneratorNoise(0)),
                           resume=states[0])


def test_unreadable_state_files_raise_clear_errors(tmp_path):
    with pytest.raises(FifoStateError, match="no FIFO state file at"):
        load_state(str(tmp_path / "missing.safetensors"))
    other = str(tmp_path / "weights.safetensors")
    save_file({"w": torch.zeros(2)}, other)
    with pytest.raises(FifoStateError, match="not a FIFO state"):
        load_state(other)
    states = []
    child.run(6, on_state=states.append)
    good = str(tmp_path / "good.safetensors")
    save_state(good, states[0])
    torn = str(tmp_path / "torn.safetensors")
    with open(good, "rb") as src, open(torn, "wb") as dst:
        dst.write(src.read()[:100])
    with pytest.raises(FifoStateError, match="not a readable FIFO state file"):
        load_state(torn)


# ---------------------------------------------------------------- latent seeding (FIFO+ t2v_seed), core side

class Anchored(child.ToyEps):
    """ToyEps whose output also depends on the current seed latent (as the seed tokens condition the UNet)."""

    def __init__(self):
        super().__init__(child.OPTIONS.video_length)
        self.anchor = None
        self.seeds = []

    def seed(self, latent):
        self.seeds.append(latent.clone())
        self.anchor = latent

    def __call__(self, x, timesteps, mix=None):
        eps = super().__call__(x, timesteps, mix)
        return eps if self.anchor is None else eps + 0.05 * torch.tanh(self.anchor.mean())   # base clip: no seed yet


def seeded_run(frames, model=None, resume=None, **hooks):
    model = model or Anchored()
    out = fifo.fifo_generate(model, fifo.FifoRun(child.OPTIONS, frames, child.FRAME_SHAPE, fifo.GeneratorNoise(child.SEED)),
                             resume=resume, hooks=fifo.FifoHooks(seeding=model.seed, **hooks))
    return out, model


def test_seeding_starts_from_queue_slot_0_and_reseeds_from_the_popped_frame():
    options = child.OPTIONS
    base = torch.randn(options.video_length, *child.FRAME_SHAPE, generator=torch.Generator().manual_seed(3))
    model = Anchored()
    out = fifo.fifo_sample(model, fifo.FifoRun(options, 40, base.shape[1:], fifo.GeneratorNoise(9)), base,
                           hooks=fifo.FifoHooks(seeding=model.seed, reseed_every=8))
    ddim_schedule = fifo.DDIMSchedule.build(options.steps, options.eta)
    init = fifo.init_queue(base, ddim_schedule, options,
                           fifo.GeneratorNoise(9)("queue_init", 0, (options.queue_length, *child.FRAME_SHAPE)))
    assert torch.equal(model.seeds[0], init[0:1])                      # the fork: decode Q[:, :, [0]] after prepare
    assert len(model.seeds) == 5                                        # at 8, 16, 24, 32 frames (not after the last)
    for k, seed in enumerate(model.seeds[1:], start=1):
        assert torch.equal(seed, out[8 * k - 1:8 * k])
    unseeded = fifo.fifo_sample(child.ToyEps(options.video_length), fifo.FifoRun(options, 40, base.shape[1:], fifo.GeneratorNoise(9)),
                                base)
    assert not torch.equal(out, unseeded)


def test_a_seeded_run_resumes_exactly_with_its_seed():
    full, _ = seeded_run(40, reseed_every=6)
    states = []
    seeded_run(40, reseed_every=6, on_state=states.append, state_every=8)
    for state in states[:-1]:
        assert state.seed_latent is not None
        resumed, model = seeded_run(40, reseed_every=6, resume=state)
        assert torch.equal(model.seeds[0], state.seed_latent)
        assert torch.equal(resumed, full), state.frames_done


def test_resuming_an_unseeded_state_with_seeding_is_refused():
    states = []
    child.run(6, on_state=states.append)
    assert states[0].seed_latent is None
    with pytest.raises(FifoStateError, match="without latent seeding"):
        seeded_run(12, resume=states[0])


def test_a_non_finite_model_output_stops_at_its_iteration_with_the_state_kept(full_run):
    """A model whose output turns NaN mid-run stops the run with FifoError naming the iteration (no black frames
    written on), and the state before that iteration is handed to on_state: resuming gives the same frames."""
    calls = {"n": 0}
    toy = child.ToyEps(child.OPTIONS.video_length)
    broken_at = WARMUP + 12                              # iteration at which the model starts returning NaN
    iteration = {"now": -1}

    def on_frame(i, iterations, popped):
        iteration["now"] = i

    def eps(x, timesteps, mix=None):
        calls["n"] += 1
        out = toy(x, timesteps, mix)
        return out * float("nan") if iteration["now"] + 1 >= broken_at else out

    states = []
    with pytest.raises(fifo.FifoError, match=f"non-finite .* at iteration {broken_at} of .*output frame 12"):
        fifo.fifo_generate(eps, fifo.FifoRun(child.OPTIONS, 40, child.FRAME_SHAPE, fifo.GeneratorNoise(child.SEED)),
                           hooks=fifo.FifoHooks(on_state=states.append, on_frame=on_frame))
    assert states[-1].iteration == broken_at and states[-1].frames_done == 12
    assert torch.equal(states[-1].frames, full_run[:12])
    assert torch.isfinite(states[-1].queue).all()
    assert torch.equal(child.run(40, resume=states[-1]), full_run)
