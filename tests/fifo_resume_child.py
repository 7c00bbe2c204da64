"""A FIFO run in its own process, for tests/test_fifo_resume.py: the test kills it (SIGKILL) part-way.

Usage: python fifo_resume_child.py STATE_FILE FRAMES STATE_EVERY [SECONDS_PER_CALL]
Pure core (no ComfyUI): the model is `ToyEps`, a cheap deterministic eps model that mixes each window's frames.
"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import bootstrap  # noqa: E402  (host_bootstrap.py, loaded by conftest)

bootstrap.register_pack()          # the pack importable as fifo_infinity
from fifo_infinity.samplers import fifo  # noqa: E402
from fifo_infinity.samplers.fifo_state import save_state  # noqa: E402

OPTIONS = fifo.FifoOptions(video_length=4, num_partitions=2, lookahead=True, eta=1.0)
FRAME_SHAPE = (4, 3, 5)
SEED = 1234


class ToyEps:
    """eps(x [W*f, C, h, w], t [W*f]): depends on every frame of its window and on each frame's timestep."""

    def __init__(self, video_length: int, seconds_per_call: float = 0.0):
        self.video_length = video_length
        self.seconds_per_call = seconds_per_call

    def __call__(self, x, timesteps, mix=None):
        if self.seconds_per_call:
            time.sleep(self.seconds_per_call)
        windows = x.unflatten(0, (-1, self.video_length))
        mean = windows.mean(dim=1, keepdim=True).expand_as(windows).flatten(0, 1)
        scale = (timesteps.float() / 1000.0 + 0.25).view(-1, 1, 1, 1)
        shift = 0.0 if mix is None else 0.1 * sum(index * weight for index, weight in mix)
        return torch.tanh(0.05 * x + 0.5 * mean + shift) * scale


def run(frames: int, seconds_per_call: float = 0.0, resume=None, prompt_schedule=None, **hooks) -> torch.Tensor:
    """FIFO with a sampled base clip from SEED; hooks are `FifoHooks` fields (on_state, state_every, ...)."""
    return fifo.fifo_generate(ToyEps(OPTIONS.video_length, seconds_per_call),
                              fifo.FifoRun(OPTIONS, frames, FRAME_SHAPE, fifo.GeneratorNoise(SEED),
                                           prompt_schedule=prompt_schedule),
                              resume=resume, hooks=fifo.FifoHooks(**hooks))


if __name__ == "__main__":
    path, frames, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    run(frames, delay, on_state=lambda state: save_state(path, state), state_every=every)
    print("finished", flush=True)
