"""FIFO-Diffusion with the windows of each iteration spread over workers (samplers/fifo.py `FifoRun.workers`):
one device vs 2 in-process device groups vs 2 and 3 gloo ranks (spawned processes), for eta 0 and 1, lookahead on
and off, a prompt schedule, the rescaled steps with batched windows, a resume on another worker count, and a rank
whose model raises. Every window call holds the same windows as on one device (window_batch 1), so the frames are
equal bit for bit; with window_batch 0 the calls differ and the frames agree to float rounding."""

import os

import pytest
import safetensors.torch
import torch

from conftest import PACK_DIR, run_headless
from fifo_distributed_support import CASES, FAILING_CALLS, FRAMES, RESUME_AFTER, run_case, spawn
from fifo_infinity.parallel.transport import InProcessTransport
from fifo_infinity.samplers.fifo import FifoError, FifoHooks

ROUNDING_TOLERANCE = 1e-5       # relative, for calls that group the windows differently (window_batch 0)


def assert_same_frames(got, expected, name, exact):
    error = (got - expected).abs().max().item()
    print(f"{name}: max abs difference from one device {error:.3g}")
    if exact:
        assert torch.equal(got, expected), name
    else:
        assert error <= ROUNDING_TOLERANCE * expected.abs().max().item(), name


@pytest.fixture(scope="module")
def one_device():
    return {name: run_case(name) for name in CASES}


@pytest.fixture(scope="module")
def gloo(tmp_path_factory):
    out = tmp_path_factory.mktemp("fifo_gloo")
    for world in (2, 3):          # 2 first: it writes the state the 3-rank run resumes
        spawn(world, str(out), PACK_DIR)
    return out


def test_in_process_device_groups_give_the_one_device_frames(one_device):
    for name, expected in one_device.items():
        got = run_case(name, InProcessTransport(["cpu", "cpu"]))
        assert_same_frames(got, expected, f"{name} [2 in-process groups]", exact="batched" not in name)


@pytest.mark.distributed
@pytest.mark.parametrize("world", [2, 3])
def test_gloo_ranks_give_the_one_device_frames(gloo, one_device, world):
    results = safetensors.torch.load_file(os.path.join(gloo, f"results.K{world}.safetensors"))
    for name, expected in one_device.items():
        assert_same_frames(results[name], expected, f"{name} [gloo, {world} ranks]", exact="batched" not in name)
    sent, received, collectives = results["traffic"].tolist()
    print(f"gloo {world} ranks: rank 0 sent {sent} and received {received} bytes in {collectives} collectives")
    assert received > sent > 0


@pytest.mark.distributed
def test_a_state_resumes_on_another_worker_count(gloo, one_device):
    from fifo_infinity.samplers.fifo_state import load_state
    from fifo_distributed_support import state_path
    state = load_state(state_path(gloo))
    assert state.frames_done == RESUME_AFTER
    expected = one_device["eta1.lookahead"]
    results = safetensors.torch.load_file(os.path.join(gloo, "results.K3.safetensors"))
    assert_same_frames(results["eta1.lookahead.resumed"], expected, "written on 2 ranks, resumed on 3", exact=True)
    for workers, label in ((None, "one device"), (InProcessTransport(["cpu", "cpu"]), "2 in-process groups")):
        assert_same_frames(run_case("eta1.lookahead", workers, resume=state), expected,
                           f"written on 2 ranks, resumed on {label}", exact=True)


@pytest.mark.distributed
@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("where", FAILING_CALLS)
def test_a_rank_that_raises_stops_every_rank_with_its_message(gloo, world, where):
    messages = [open(os.path.join(gloo, f"failure.{where}.K{world}.rank{r}.txt")).read() for r in range(world)]
    assert messages[1] == "ValueError: the model failed on purpose"
    for rank in {0, world - 1} - {1}:
        assert messages[rank] == (f"RankFailure: rank 1 of {world} stopped the run: "
                                  f"ValueError: the model failed on purpose"), messages[rank]


def test_more_workers_than_windows_are_refused():
    with pytest.raises(FifoError, match=r"4 workers \(devices or ranks\) but an iteration has only 3 windows"):
        run_case("eta0.no_lookahead", InProcessTransport(["cpu"] * 4))


def test_in_process_state_hooks_see_the_same_states():
    states = {}
    for label, workers in (("one", None), ("two", InProcessTransport(["cpu", "cpu"]))):
        seen = []
        run_case("eta1.lookahead", workers, hooks=FifoHooks(on_state=seen.append, state_every=2))
        states[label] = seen
    assert [s.iteration for s in states["one"]] == [s.iteration for s in states["two"]]
    assert all(torch.equal(a.queue, b.queue) for a, b in zip(states["one"], states["two"]))
    assert states["one"][-1].frames_done == FRAMES


@pytest.mark.distributed
def test_runner_under_torchrun_writes_the_one_process_video(model_folders, tmp_path):
    """The FIFO example workflow (tiny sizes, f 8, n 2: 4 windows, eta 1) through run.py in one process and under
    torchrun on 2 gloo ranks: the same latent bit for bit (window_batch 1: the same calls), the video on rank 0."""
    from PIL import Image
    from test_fifo_host import fifo_prompt
    frames = 3
    prompt = fifo_prompt(frames, seed=4, num_partitions=2, window_batch=1)
    prompt["7"] = {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "fifo_test/latent"}}
    latents = {}
    for processes in (1, 2):
        result = run_headless(prompt, tmp_path / f"p{processes}", model_folders, processes)
        files = result["files"]
        assert sorted(os.path.splitext(f)[1] for f in files) == [".latent", ".webp"], files
        with Image.open(next(f for f in files if f.endswith(".webp"))) as image:
            assert image.n_frames == frames
        latents[processes] = safetensors.torch.load_file(next(f for f in files if f.endswith(".latent")))["latent_tensor"]
        if processes > 1:
            assert [r["success"] for r in result["ranks"]] == [True] * processes
    assert latents[1].shape[0] == frames
    assert torch.equal(latents[2], latents[1])
