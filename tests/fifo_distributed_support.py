"""Helpers for the FIFO-across-workers tests: a cheap window-mixing eps model, the cases, one case on given
workers, and the gloo workers spawned by tests/test_fifo_distributed.py (torch.multiprocessing.spawn, file://
rendezvous). Pure torch: no ComfyUI in the spawned processes."""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
FRAMES = 5                      # N output frames
FRAME_SHAPE = (2, 3, 4)         # (C, h, w) of one latent frame
SEED = 11
RESUME_AFTER = 2                # output frames in the state a 2-rank run writes, resumed on 3 ranks
GLOO_TIMEOUT_S = 120
FAILING_CALLS = {"base_clip": 3, "windows": 12 + 5}
"""Which model call raises on rank 1: the 3rd (a base clip step) or the 17th (the base clip of "eta1.lookahead" takes
f * n = 12 calls, then one call per window with window_batch 1)."""            # a rank that never answers fails the test instead of hanging it

# name -> FifoOptions keywords (f 4, n 3: 6 windows with lookahead, 3 without) and whether a prompt schedule drives it
CASES = {
    "eta0.lookahead": (dict(eta=0.0, lookahead=True), False),
    "eta1.lookahead": (dict(eta=1.0, lookahead=True), False),
    "eta0.no_lookahead": (dict(eta=0.0, lookahead=False), False),
    "eta1.no_lookahead": (dict(eta=1.0, lookahead=False), False),
    "eta1.lookahead.schedule": (dict(eta=1.0, lookahead=True), True),
    "eta1.lookahead.rescale.batched": (dict(eta=1.0, lookahead=True, rescale=True, window_batch=0), False),
}


class WindowMixer:
    """Deterministic eps model that, like the UNet, mixes the frames of each f-frame window (per-window mean),
    depends on each frame's timestep and, with a prompt schedule, on the iteration's prompt weights. It can be
    told to raise at its `fail_at`-th call."""

    def __init__(self, video_length: int, fail_at: int | None = None):
        self.video_length, self.fail_at, self.calls = video_length, fail_at, 0

    def __call__(self, x, timesteps, mix=None):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise ValueError("the model failed on purpose")
        windows = x.unflatten(0, (-1, self.video_length))
        mean = windows.mean(dim=1, keepdim=True).expand_as(windows).flatten(0, 1)
        scale = (timesteps.float() / 1000.0 + 0.25).view(-1, 1, 1, 1)
        prompt = sum(weight * 0.2 * (j + 1) for j, weight in mix) if mix is not None else 0.0
        return torch.tanh(0.05 * x + 0.5 * mean + prompt) * scale


def fifo_options(name: str):
    from fifo_infinity.samplers.fifo import FifoOptions
    keywords, _ = CASES[name]
    return FifoOptions(**{"video_length": 4, "num_partitions": 3, "window_batch": 1, **keywords})


def run_case(name: str, workers=None, resume=None, hooks=None, fail_at=None) -> torch.Tensor:
    """The case's N output frames `[N, C, h, w]` (base clip sampled from the seed, then FIFO) on `workers`."""
    from fifo_infinity.samplers.fifo import NO_HOOKS, FifoRun, GeneratorNoise, fifo_generate
    from fifo_infinity.samplers.prompt_schedule import PromptSchedule
    options = fifo_options(name)
    schedule = PromptSchedule((2, 3), transition=1) if CASES[name][1] else None
    run = FifoRun(options, FRAMES, FRAME_SHAPE, GeneratorNoise(SEED), prompt_schedule=schedule, workers=workers)
    return fifo_generate(WindowMixer(options.video_length, fail_at), run, resume=resume, hooks=hooks or NO_HOOKS)


def state_path(out_dir: str) -> str:
    return os.path.join(out_dir, "eta1.lookahead.state.safetensors")


def gloo_worker(rank: int, world: int, init_method: str, pack_root: str, out_dir: str):
    """Every case on `world` gloo ranks (rank 0 saves `{case}.K{world}.safetensors`); on 2 ranks also writes a
    state after RESUME_AFTER frames, on other counts resumes it; then runs whose model raises on rank 1 (in the base
    clip, outside any exchange, and in an iteration's windows)."""
    torch.set_num_threads(1)
    sys.path[:0] = [p for p in (TESTS_DIR, os.path.join(pack_root, "tools")) if p not in sys.path]
    from pack_bootstrap import bootstrap
    bootstrap.register_pack()
    import safetensors.torch
    import torch.distributed as dist
    from fifo_infinity.parallel.transport import DistributedTransport
    from fifo_infinity.samplers.fifo import FifoHooks
    from fifo_infinity.samplers.fifo_state import load_state, save_state
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=GLOO_TIMEOUT_S))
    workers = DistributedTransport()
    results = {}
    for name in CASES:
        results[name] = run_case(name, workers)
    if world == 2:
        def keep(state):
            if rank == 0 and state.frames_done == RESUME_AFTER:
                save_state(state_path(out_dir), state)
        run_case("eta1.lookahead", workers, hooks=FifoHooks(on_state=keep, state_every=1))
    elif os.path.exists(state_path(out_dir)):
        results["eta1.lookahead.resumed"] = run_case("eta1.lookahead", workers, resume=load_state(state_path(out_dir)))
    results["traffic"] = torch.tensor([workers.traffic.sent, workers.traffic.received, workers.traffic.collectives])
    if rank == 0:
        safetensors.torch.save_file({k: v.contiguous() for k, v in results.items()},
                                    os.path.join(out_dir, f"results.K{world}.safetensors"))
    for where, call in FAILING_CALLS.items():
        message = "no error"
        try:
            run_case("eta1.lookahead", workers, fail_at=call if rank == 1 else None)
        except Exception as error:       # noqa: BLE001 - the message is what the test checks
            message = f"{type(error).__name__}: {error}"
        with open(os.path.join(out_dir, f"failure.{where}.K{world}.rank{rank}.txt"), "w") as f:
            f.write(message)
    dist.barrier()
    dist.destroy_process_group()


def spawn(world: int, out_dir: str, pack_root: str):
    """`gloo_worker` on `world` fresh processes."""
    import torch.multiprocessing as mp
    init = "file://" + os.path.join(out_dir, f"rendezvous.K{world}")
    mp.spawn(gloo_worker, args=(world, init, pack_root, out_dir), nprocs=world, join=True)
