"""FIFO-Diffusion: diagonal denoising over a queue of frames (pure torch, no ComfyUI).

Paper: Kim, Kang, Choi, Han, "FIFO-Diffusion: Generating Infinite Videos from Text without Training",
NeurIPS 2024 (arXiv 2405.11473), section 3 "FIFO-Diffusion": 3.1 diagonal denoising, 3.2 latent partitioning
(n), 3.3 lookahead denoising.
Official code: jjihwan/FIFO-Diffusion_public (b87ba5d) `videocrafter_main.py`, `scripts/evaluation/funcs.py`
(`prepare_latents`, `fifo_ddim_sampling`, `shift_latents`), `lvdm/models/samplers/ddim.py` (`fifo_onestep`,
`ddim_step`); "uniform" queue initialisation from the FIFO+ fork YCmove/FIFO-Diffusion_public (`unilatent` in
its `scripts/evaluation/funcs.py`, `prepare_latents`). docs/fifo.md explains each step ("The queue", "Lookahead
denoising", "Queue initialisation", "The FIFO step", "Window batching", "Warm-up iterations").

The queue `[L, C, h, w]` (model-space latents, frames as batch) holds L = S (+ f/2 with lookahead) frames at
increasing noise: slot 0 is the head (clean side), slot L-1 the tail at t = 999. With lookahead the first f/2
slots sit at level 0 and only serve as context. S = f * n DDIM levels, one per main slot. One iteration:

1. The 2n (n without lookahead) windows of f consecutive slots are denoised by the model, each frame at its
   own timestep (`[f]` timesteps per window). Window r covers `[r f/2, r f/2 + f)` and writes back only its
   noisier half `[r f/2 + f/2, r f/2 + f)` (without lookahead: `[r f, r f + f)`, all of it).
2. Every written frame takes one DDIM step at its own level (`samplers.ddim.ddim_step`, plain DDIM: the FIFO
   step does not apply VideoCrafter2's rescale).
3. The head frame (slot f/2, or 0) is popped: it is the output frame of this iteration.
4. The queue shifts one slot toward the head and fresh N(0, I) noise enters at the tail.

All windows of one iteration read the queue as it was before the iteration (the official code runs them tail
first, so no window reads a slot another one has written). Windows are therefore independent and are run in
groups of `window_batch` windows per model call, tail first, in place: any grouping gives the same numbers.
There are `N + S - f` iterations; the first `S - f` popped frames (warm-up) are discarded.

Because of that independence the windows of one iteration can also be spread over several workers (`FifoRun.workers`,
e.g. torch.distributed ranks): every worker holds the same queue and draws the same noise, computes the DDIM steps of
its share of the windows, and one exchange per iteration gives every worker all written frames (docs/fifo.md,
"Across devices and processes").
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from .ddim import DDIMSchedule, EpsModel, ddim_step, sample_base_clip
from .fifo_state import FifoState, FifoStateError, check_compatible, fifo_settings
from .prompt_schedule import PromptMix, PromptSchedule

QUEUE_INIT_MODES = ("official", "uniform")


class FifoError(ValueError):
    """Invalid FIFO settings or inputs; the message names the value and says what would work."""


class NoiseSource(Protocol):
    """Where every N(0, I) draw comes from: `noise(kind, index, shape) -> float32 tensor of that shape`.

    kinds (and shapes): "base_x_T" `[f, C, h, w]` (index 0); "base_step" `[f, C, h, w]` (index = base DDIM step
    i, only when sigma > 0); "queue_init" `[L, C, h, w]` (index 0: the noise mixed into each slot);
    "step" `[L, C, h, w]` (index = iteration: noise for the DDIM update of each slot, only eta > 0; slots that
    are not written ignore it); "append" `[1, C, h, w]` (index = iteration: the new tail frame).
    """
    def __call__(self, kind: str, index: int, shape: tuple[int, ...]) -> torch.Tensor: ...


class GeneratorNoise:
    """NoiseSource drawing from one seeded `torch.Generator` in call order (on the generator's device, then
    moved to `device`), so a seed gives the same video on every device."""

    def __init__(self, generator: torch.Generator | int, device: torch.device | str | None = None):
        if isinstance(generator, int):
            generator = torch.Generator("cpu").manual_seed(generator)
        self.generator = generator
        self.device = device

    def __call__(self, kind: str, index: int, shape: tuple[int, ...]) -> torch.Tensor:
        noise = torch.randn(shape, generator=self.generator, dtype=torch.float32, device=self.generator.device)
        return noise if self.device is None else noise.to(self.device)

    def get_state(self) -> torch.Tensor:
        """The generator's state (uint8 tensor), for FIFO state files."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state.to("cpu", torch.uint8))


class WindowWorkers(Protocol):
    """Workers sharing the windows of each iteration (`parallel.transport.DistributedTransport` and
    `InProcessTransport` are such; the core only relies on these four methods).

    `participants()`: how many workers. `run(count, work, device, signature, share_errors)`: calls `work(endpoint)`
    for this process's worker(s), where `endpoint.share` is the `range` of window positions (in the tail-first order
    of `FifoOptions.windows()`) that worker computes (contiguous, sizes differing by at most one), and returns every
    worker's output `[1, its windows, ...]` in worker order on `device`; `signature` (integers) must be equal on every
    worker, and with `share_errors` a worker whose `work` raises makes every worker raise its error.
    `share_failure(error)`: this worker failed outside `run` (e.g. in the base clip); the others raise at their next
    `run`. `finish()`: the end of the run (a worker failing after the last iteration still stops the others).
    """
    def participants(self) -> int: ...

    def run(self, count: int, work: Callable, device, signature: tuple = (), share_errors: bool = False) -> list: ...

    def share_failure(self, error: BaseException) -> None: ...

    def finish(self) -> None: ...


@dataclass(frozen=True)
class Window:
    """One model call's slice of the queue: reads slots `[start, end)` (f frames), writes `[write_start, end)`."""
    rank: int
    start: int
    write_start: int
    end: int


@dataclass(frozen=True)
class FifoOptions:
    """FIFO settings (official CLI names in brackets).

    video_length: f, frames per model call, the model's training length [--video_length 16].
    num_partitions: n, latent partitions; S = f * n DDIM levels [-n 4].
    lookahead: lookahead denoising (2n half-overlapping windows, f/2 context slots) [on; `-ld` turns it off].
    eta: DDIM eta of both the base clip and the FIFO step [--eta 1.0].
    window_batch: windows per model call (0 = all of one iteration); only speed and memory change.
    queue_init: "official" (base frame 0 repeated for the first S - f + 1 slots) or "uniform" (FIFO+
        `unilatent`: each base frame repeated n times).
    rescale: apply VideoCrafter2's `scale_arr` in the queue and every FIFO step, as its own DDIM does for the base
        clip (slots noised as `sqrt(a) s_t z + sqrt(1 - a) eps`; `ddim_step(rescale=True)`). The official FIFO
        omits it (plain DDIM, so below t ~ 400 the signal stays at the 0.7 scale the model was trained to see only
        at high noise; docs/videocrafter2.md, "The rescaled schedule"). Off = the official numbers.
    A field's `metadata` is the range (or the choices) the nodes offer for it: the one source of the node
    schemas (`nodes/inputs.option_input`).
    """
    video_length: int = field(default=16, metadata={"min": 1, "max": 256})
    num_partitions: int = field(default=4, metadata={"min": 1, "max": 64})
    lookahead: bool = True
    eta: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})
    window_batch: int = field(default=0, metadata={"min": 0, "max": 128})
    queue_init: str = field(default="official", metadata={"options": QUEUE_INIT_MODES})
    rescale: bool = False

    def __post_init__(self):
        f, n = self.video_length, self.num_partitions
        if f < 1:
            raise FifoError(f"video_length f = {f}: a window needs at least 1 frame (VideoCrafter2: 16)")
        if self.lookahead and f % 2:
            raise FifoError(f"video_length f = {f} is odd: lookahead denoising splits each window into two halves "
                            f"of f/2 frames, so f must be even (use {f - 1 if f > 1 else 2} or {f + 1}, or turn "
                            f"lookahead off)")
        if n < 1:
            raise FifoError(f"num_partitions n = {n}: need at least 1 partition (official default 4)")
        if f * n > 1000:
            raise FifoError(f"f * n = {f} * {n} = {f * n} DDIM levels: at most 1000 (one per training timestep)")
        if self.eta < 0:
            raise FifoError(f"eta = {self.eta}: must be >= 0 (0 = deterministic DDIM, 1 = the official default)")
        if self.window_batch < 0:
            raise FifoError(f"window_batch = {self.window_batch}: use 0 (all windows in one call) or a positive count")
        if self.queue_init not in QUEUE_INIT_MODES:
            raise FifoError(f"queue_init = {self.queue_init!r}: choose one of {', '.join(QUEUE_INIT_MODES)}")

    @property
    def steps(self) -> int:
        """S = f * n DDIM levels (the official code forces num_inference_steps to this)."""
        return self.video_length * self.num_partitions

    @property
    def lookahead_slots(self) -> int:
        return self.video_length // 2 if self.lookahead else 0

    @property
    def queue_length(self) -> int:
        """L = S + f/2 with lookahead, else S."""
        return self.steps + self.lookahead_slots

    @property
    def head(self) -> int:
        """Slot of the frame popped each iteration (f/2 with lookahead, else 0)."""
        return self.lookahead_slots

    @property
    def warmup(self) -> int:
        """S - f iterations whose popped frames are discarded."""
        return self.steps - self.video_length

    @property
    def num_windows(self) -> int:
        return 2 * self.num_partitions if self.lookahead else self.num_partitions

    @property
    def windows_per_call(self) -> int:
        return self.windows_per_call_of(self.num_windows)

    def windows_per_call_of(self, windows: int) -> int:
        """Windows in one model call of a worker that computes `windows` of them: window_batch (0: all), at most
        `windows`."""
        return windows if self.window_batch == 0 else min(self.window_batch, windows)

    def iterations(self, num_frames: int) -> int:
        """N + S - f iterations for N output frames."""
        return num_frames + self.warmup

    def check_num_frames(self, num_frames: int) -> None:
        if num_frames < 1:
            raise FifoError(f"frames N = {num_frames}: generate at least 1 frame")

    def windows(self) -> list[Window]:
        """The windows of one iteration, tail first (official order: rank 2n-1 .. 0)."""
        f = self.video_length
        out = []
        for rank in reversed(range(self.num_windows)):
            if self.lookahead:
                start = rank * (f // 2)
                out.append(Window(rank, start, start + f // 2, start + f))
            else:
                out.append(Window(rank, rank * f, rank * f, rank * f + f))
        return out

    def window_groups(self, windows: list[Window] | None = None) -> list[list[Window]]:
        """`windows` (default: all of `windows()`) cut into model calls of `window_batch` windows (0: one call)."""
        windows = self.windows() if windows is None else windows
        size = self.windows_per_call_of(len(windows))
        return [windows[i:i + size] for i in range(0, len(windows), size)]


def queue_levels(options: FifoOptions, schedule: DDIMSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slot `(timesteps [L], ddim_indices [L])`, int64: main slot i has level i; lookahead slots level 0."""
    if schedule.steps != options.steps:
        raise FifoError(f"the DDIM grid has {schedule.steps} levels but the queue needs f * n = "
                        f"{options.video_length} * {options.num_partitions} = {options.steps}")
    indices = torch.cat([torch.zeros(options.lookahead_slots, dtype=torch.int64),
                         torch.arange(options.steps, dtype=torch.int64)])
    return schedule.timesteps[indices], indices


def check_base_clip(base_clip: torch.Tensor, options: FifoOptions, frame_shape: tuple[int, ...] | None = None) -> None:
    """Raise FifoError unless `base_clip` is `[f, C, h, w]` (and `[C, h, w]` equals `frame_shape` if given)."""
    if base_clip.ndim != 4:
        raise FifoError(f"the base clip must be a latent [frames, channels, h, w]; got shape {tuple(base_clip.shape)}")
    if base_clip.shape[0] != options.video_length:
        raise FifoError(f"the base clip has {base_clip.shape[0]} frames but video_length f = {options.video_length}: "
                        f"the queue is initialised from one clip of exactly f frames")
    if frame_shape is not None and tuple(base_clip.shape[1:]) != tuple(frame_shape):
        c, h, w = base_clip.shape[1:]
        raise FifoError(f"the base clip's latent frames are {c}x{h}x{w} (channels x h x w) but the video's are "
                        f"{'x'.join(str(s) for s in frame_shape)}: use a base clip of the same size "
                        f"(latent h, w = pixels / 8)")


def base_frame_of_slot(slot: int, options: FifoOptions) -> int:
    """Base-clip frame a main slot i (0..S-1) is initialised from: official `max(0, i - (S - f))`; uniform
    (FIFO+ `unilatent`) `i // n`, i.e. each base frame repeated n times."""
    if options.queue_init == "uniform":
        return slot // options.num_partitions
    return max(0, slot - options.warmup)


def init_queue(base_clip: torch.Tensor, schedule: DDIMSchedule, options: FifoOptions,
               init_noise: torch.Tensor) -> torch.Tensor:
    """The initial queue `[L, C, h, w]` from a base clip `[f, C, h, w]` (official `prepare_latents`; docs/fifo.md,
    "Queue initialisation").

    Lookahead slot j < f/2: `sqrt(a_0) z[0] + sqrt(1 - a_0) init_noise[j]`; main slot i at position f/2 + i:
    `sqrt(a_i) z[src(i)] + sqrt(1 - a_i) init_noise[f/2 + i]`, a_i = abar(tau_i), src from `base_frame_of_slot`.
    init_noise: `[L, C, h, w]` N(0, I). float32 throughout, as the official code. With `options.rescale` each z is
    first multiplied by `scale_arr[tau_i]` (VideoCrafter2's rescaled forward process).
    """
    check_base_clip(base_clip, options)
    length = options.queue_length
    if tuple(init_noise.shape) != (length, *base_clip.shape[1:]):
        raise FifoError(f"init_noise has shape {tuple(init_noise.shape)}; expected {(length, *base_clip.shape[1:])}")
    z = base_clip.to(torch.float32)
    init_noise = init_noise.to(device=z.device, dtype=torch.float32)
    scales = schedule.scales if options.rescale else torch.ones_like(schedule.scales)

    def noised(level: int, frame: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a, s = schedule.alphas[level].to(z.device), scales[level].to(z.device)
        return a ** 0.5 * s * frame + (1 - a) ** 0.5 * noise

    lookahead = [noised(0, z[0], init_noise[j]) for j in range(options.lookahead_slots)]
    main = [noised(i, z[base_frame_of_slot(i, options)], init_noise[options.lookahead_slots + i])
            for i in range(options.steps)]
    return torch.stack(lookahead + main)


def denoise_windows(queue: torch.Tensor, eps_model: EpsModel, schedule: DDIMSchedule, timesteps: torch.Tensor,
                    indices: torch.Tensor, options: FifoOptions, step_noise: torch.Tensor | None = None,
                    workers: WindowWorkers | None = None, signature: tuple = ()) -> torch.Tensor:
    """Steps 1-2 of one iteration (paper section 3: diagonal denoising of the n partitions, with lookahead the
    2n half-overlapping windows), in place on `queue` `[L, C, h, w]`; returns it.

    timesteps, indices: `[L]` per-slot levels (`queue_levels`). step_noise: `[L, C, h, w]` N(0, I) per slot
    (needed when eta > 0; slot p's update uses `step_noise[p]`). Each model call gets the windows of one group
    concatenated, `x [W*f, C, h, w]` with `timesteps [W*f]`; groups run tail first and each group reads before
    it writes, so every window sees the pre-iteration queue (see module docstring).
    workers: spread the windows over several workers (`WindowWorkers`): this one computes its share (cut into calls
    of `window_batch` windows, 0 = its whole share in one call), then every worker's written frames are written
    back, so the queue ends the same on every worker. `signature` is passed on to the workers' agreement check.
    """
    if workers is None:
        for window, stepped in _stepped_windows(queue, options.windows(), eps_model, schedule, timesteps, indices,
                                                options, step_noise):
            queue[window.write_start:window.end] = stepped
        return queue
    windows = options.windows()

    def work(endpoint) -> torch.Tensor:
        share = [windows[position] for position in endpoint.share]
        stepped = [s for _, s in _stepped_windows(queue, share, eps_model, schedule, timesteps, indices, options,
                                                  step_noise)]
        return torch.stack(stepped).unsqueeze(0)          # [1, its windows, written frames, C, h, w]

    written = torch.cat(workers.run(len(windows), work, queue.device, signature=signature, share_errors=True), 1)[0]
    for window, stepped in zip(windows, written):
        queue[window.write_start:window.end] = stepped.to(queue.device, queue.dtype)
    return queue


def _stepped_windows(queue, windows: list[Window], eps_model, schedule, timesteps, indices, options, step_noise):
    """Yields `(window, its written frames after one DDIM step)` for `windows`, one model call per group of
    `options.window_groups(windows)`; a group's frames are read before any of its results is yielded."""
    f = options.video_length
    timesteps_device = timesteps.to(queue.device)
    for group in options.window_groups(windows):
        x = torch.cat([queue[w.start:w.end] for w in group])
        t = torch.cat([timesteps_device[w.start:w.end] for w in group])
        eps = eps_model(x, t)
        if tuple(eps.shape) != tuple(x.shape):
            raise FifoError(f"the model returned {tuple(eps.shape)} for input {tuple(x.shape)}")
        results = []
        for g, w in enumerate(group):
            keep = slice(g * f + (w.write_start - w.start), (g + 1) * f)
            written = slice(w.write_start, w.end)
            noise = None if step_noise is None else step_noise[written]
            stepped, _ = ddim_step(x[keep], eps[keep], indices[written], schedule, noise=noise,
                                   rescale=options.rescale)
            results.append((w, stepped))
        yield from results


@dataclass(frozen=True)
class FifoRun:
    """What to sample: N output frames of one latent frame shape with these options, noise and DDIM grid.

    options: the FIFO settings. num_frames: N output frames (>= 1). frame_shape: `(C, h, w)` of one latent frame.
    noise: the NoiseSource ("base_x_T", "base_step", "queue_init", then per iteration "step" (eta > 0) and
        "append"); to resume or write states it must also have `get_state()` / `set_state(state)` (GeneratorNoise).
    schedule: the DDIM grid (default `DDIMSchedule.build(S, eta)`; its eta is used), S = f * n levels.
    prompt_schedule: several prompts over the video (official multi-prompt semantics, `samplers.prompt_schedule`);
        it must cover the N frames. device: where the queue lives; output_device: where the N output frames are
        kept (default: `device`). workers: spread each iteration's windows over several workers (`WindowWorkers`,
        at most one per window; None: every window here). Each worker runs the same FifoRun with the same noise
        seed; the frames do not depend on the number of workers (bit for bit when each model call holds the same
        windows, e.g. window_batch 1).

    Every check of these values runs here, once: FifoError (or PromptScheduleError) names the value.
    """
    options: FifoOptions
    num_frames: int
    frame_shape: tuple[int, ...]
    noise: NoiseSource
    schedule: DDIMSchedule | None = None
    prompt_schedule: PromptSchedule | None = None
    device: torch.device | str = "cpu"
    output_device: torch.device | str | None = None
    workers: WindowWorkers | None = None

    def __post_init__(self):
        self.options.check_num_frames(self.num_frames)
        if self.workers is not None and self.workers.participants() > self.options.num_windows:
            windows = "2n" if self.options.lookahead else "n"
            raise FifoError(f"{self.workers.participants()} workers (devices or ranks) but an iteration has only "
                            f"{self.options.num_windows} windows ({windows}, n = {self.options.num_partitions}): use "
                            f"at most {self.options.num_windows} workers, or more partitions")
        object.__setattr__(self, "frame_shape", tuple(int(s) for s in self.frame_shape))
        if self.schedule is None:
            object.__setattr__(self, "schedule", DDIMSchedule.build(self.options.steps, self.options.eta))
        queue_levels(self.options, self.schedule)          # the grid has one level per main slot
        if self.prompt_schedule is not None:
            self.prompt_schedule.check_covers(self.num_frames)
        if self.output_device is None:
            object.__setattr__(self, "output_device", self.device)

    @property
    def iterations(self) -> int:
        return self.options.iterations(self.num_frames)

    def settings(self) -> dict:
        """What a FIFO state of this run depends on (`samplers.fifo_state.fifo_settings`)."""
        return fifo_settings(self.options, self.schedule.timesteps.to(torch.int64).cpu(), self.frame_shape)

    def model_at(self, eps_model: Callable[..., torch.Tensor], iteration: int) -> Callable[..., torch.Tensor]:
        """`eps(x, timesteps)` for one iteration: with a prompt schedule, `eps_model` gets that iteration's
        `PromptMix` as third argument (the base clip, iteration < 0 here, uses prompt 0 alone)."""
        if self.prompt_schedule is None:
            return eps_model
        mix: PromptMix = self.prompt_schedule.mix_at_iteration(iteration, self.options.warmup)
        return lambda x, t: eps_model(x, t, mix)


@dataclass(frozen=True)
class FifoHooks:
    """What the caller is told during a run, and when (all optional).

    on_base_step: `on_base_step(i, S, pred_x0 [f, C, h, w])` after each DDIM step of the base clip.
    on_frame: `on_frame(iteration, iterations, popped [1, C, h, w])` after each iteration's pop, before the shift
        (raise from it to stop, e.g. on user interruption).
    on_state: called with a FifoState every `state_every` output frames (0: never on a count), after the last
        iteration, and, if the run stops with an exception (interruption, a crash in the model), with the state
        before the iteration that failed, before the exception propagates. A resumed run continues exactly. A
        queue that turns non-finite (NaN or inf from the model) raises FifoError naming the iteration, with that
        same state written first (nothing already sampled is lost).
    seeding: latent seeding (FIFO+ `t2v_seed`, docs/consistency.md): `seeding(latent [1, C, h, w])` is called once
        the queue is built with queue slot 0 (base frame 0 at the lowest noise level, as the fork) and must make the
        model condition on it from then on (the caller embeds it as an image; the core only decides when and on
        what). reseed_every > 0: every that many output frames, seeding is called again with the frame just popped,
        so the anchor follows the video (the fork's unfinished `t2v_seed_ar`, without its growing context: the caller
        replaces the seed, it does not add one). A resumed run re-applies the state's seed latent; the base clip is
        sampled without seeding.
    """
    on_base_step: Callable[[int, int, torch.Tensor], None] | None = None
    on_frame: Callable[[int, int, torch.Tensor], None] | None = None
    on_state: Callable[[FifoState], None] | None = None
    state_every: int = 0
    seeding: Callable[[torch.Tensor], None] | None = None
    reseed_every: int = 0

    def __post_init__(self):
        if self.state_every < 0:
            raise FifoError(f"state_every = {self.state_every}: use 0 (no periodic state) or a number of frames")
        if self.reseed_every < 0:
            raise FifoError(f"reseed_every = {self.reseed_every}: use 0 (seed once, as FIFO+) or a number of frames")

    def wants_state(self, iteration: int, iterations: int, done: int) -> bool:
        """Whether a state is written after `iteration` (0-based), `done` output frames being finished."""
        return self.on_state is not None and (
            iteration == iterations - 1 or bool(self.state_every and done > 0 and done % self.state_every == 0))

    def wants_reseed(self, iteration: int, iterations: int, done: int) -> bool:
        return (self.seeding is not None and bool(self.reseed_every) and done > 0 and done % self.reseed_every == 0
                and iteration < iterations - 1)


NO_HOOKS = FifoHooks()


@dataclass
class _Progress:
    """The mutable part of a run: the queue `[L, C, h, w]`, the next iteration, the seed latent, the output."""
    queue: torch.Tensor
    start: int
    seed_latent: torch.Tensor | None
    output: torch.Tensor

    def state(self, run: FifoRun, iteration: int, queue: torch.Tensor, noise_state, seed) -> FifoState:
        done = max(0, iteration - run.options.warmup)
        return FifoState(iteration=iteration, queue=queue.cpu().clone(), frames=self.output[:done].cpu().clone(),
                         noise_state=noise_state, settings=run.settings(),
                         seed_latent=None if seed is None else seed.cpu().clone())


def _start(run: FifoRun, base_clip: torch.Tensor | None, resume: FifoState | None, hooks: FifoHooks) -> _Progress:
    """The queue, start iteration and seed latent of a new run (from `base_clip`) or of a resumed one."""
    output = torch.empty((run.num_frames, *run.frame_shape), dtype=torch.float32, device=run.output_device)
    if resume is None:
        if base_clip is None:
            raise FifoError("fifo_sample needs a base clip [f, C, h, w] or a FIFO state to resume from")
        check_base_clip(base_clip, run.options, run.frame_shape)
        init_noise = run.noise("queue_init", 0, (run.options.queue_length, *run.frame_shape))
        queue = init_queue(base_clip.to(run.device), run.schedule, run.options, init_noise)
        seed_latent = queue[0:1].clone() if hooks.seeding is not None else None
        return _Progress(queue, 0, seed_latent, output)
    if tuple(resume.queue.shape[1:]) != run.frame_shape:
        raise FifoError(f"the FIFO state's latent frames are {tuple(resume.queue.shape[1:])} (channels, h, w) "
                        f"but this video's are {run.frame_shape}: resume with the size of the run that wrote it")
    check_compatible(resume, run.settings())
    if hooks.seeding is not None and resume.seed_latent is None:
        raise FifoStateError("the FIFO state was written by a run without latent seeding; resume it without "
                             "seeding (or start a new run)")
    if resume.noise_state is not None:
        run.noise.set_state(resume.noise_state)
    if resume.frames_done:
        done = min(resume.frames_done, run.num_frames)
        output[:done] = resume.frames[:done].to(output.device, torch.float32)
    seed_latent = resume.seed_latent if hooks.seeding is not None else None
    queue = resume.queue.to(device=run.device, dtype=torch.float32, copy=True)    # the state itself stays as it was
    return _Progress(queue, resume.iteration, seed_latent, output)


def _iterate(eps_model: Callable[..., torch.Tensor], run: FifoRun, queue: torch.Tensor, i: int,
             stochastic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Iteration i on `queue`: denoise its windows, check it, pop the head. Returns (popped `[1, C, h, w]`, the
    denoised queue before the shift)."""
    options = run.options
    step_noise = run.noise("step", i, (options.queue_length, *run.frame_shape)) if stochastic else None
    denoise_windows(queue, run.model_at(eps_model, i), run.schedule, *queue_levels(options, run.schedule), options,
                    step_noise, run.workers, signature=(i, options.num_windows, *run.frame_shape))
    if not torch.isfinite(queue).all():
        raise FifoError(
            f"the model output turned non-finite (NaN or inf) at iteration {i} of {run.iterations} (output frame "
            f"{i - options.warmup}): nothing more can be sampled from this queue. Check cfg, eta and the "
            f"model's dtype (fp16 can overflow); a state file keeps the state before this iteration")
    return queue[options.head:options.head + 1].clone(), queue


@torch.no_grad()   # without it, the autograd graph through the queue keeps every iteration alive (memory grows with N)
def fifo_sample(eps_model: Callable[..., torch.Tensor], run: FifoRun, base_clip: torch.Tensor | None = None,
                resume: FifoState | None = None, hooks: FifoHooks = NO_HOOKS) -> torch.Tensor:
    """Run FIFO-Diffusion from a base clip (paper section 3; official `fifo_ddim_sampling`); returns the N output
    frames `[N, C, h, w]` float32 (model space) on `run.output_device`.

    eps_model: `eps(x [W*f, C, h, w], timesteps [W*f] int64) -> [W*f, C, h, w]`, W windows of f frames each
        (frames as batch, CFG applied by the caller); with a prompt schedule it is called as
        `eps(x, timesteps, mix)` where `mix` is the iteration's `PromptMix`.
    base_clip: `[f, C, h, w]` clean clip the queue is built from (`sample_base_clip` or a user's latent); may be
        None when resuming. resume: a FifoState (`samplers.fifo_state`) to continue from instead of building the
        queue (`base_clip` is then ignored); its frames are the first frames of the output; if it already holds N
        frames or more, its first N are returned. hooks: see `FifoHooks`.

    Raises FifoError for bad shapes or settings, FifoStateError (a ValueError) for a state made with other
    settings. With `run.workers`, an error on any worker is raised on every worker (`WindowWorkers`).
    """
    with _together(run.workers):
        return _sample(eps_model, run, base_clip, resume, hooks)


@contextmanager
def _together(workers: WindowWorkers | None):
    """Around a whole run on several workers: a failure here is shared with the others; the end is agreed on."""
    if workers is None:
        yield
        return
    try:
        yield
    except Exception as error:
        workers.share_failure(error)
        raise
    workers.finish()


def _sample(eps_model, run: FifoRun, base_clip, resume, hooks: FifoHooks) -> torch.Tensor:
    options, noise = run.options, run.noise
    progress = _start(run, base_clip, resume, hooks)
    if resume is not None and resume.frames_done >= run.num_frames:
        return progress.output
    queue, seed_latent, output = progress.queue, progress.seed_latent, progress.output
    if hooks.seeding is not None:
        hooks.seeding(seed_latent.to(device=run.device, dtype=torch.float32))
    stochastic = bool((run.schedule.sigmas > 0).any())
    iterations = run.iterations
    for i in range(progress.start, iterations):
        before = (queue.clone(), noise.get_state(), seed_latent) if hooks.on_state is not None else None
        try:
            popped, queue = _iterate(eps_model, run, queue, i, stochastic)
            if i >= options.warmup:
                output[i - options.warmup] = popped[0].to(output.device)
            if hooks.on_frame is not None:
                hooks.on_frame(i, iterations, popped)
            tail = noise("append", i, (1, *run.frame_shape)).to(device=queue.device, dtype=torch.float32)
            queue = torch.cat([queue[1:], tail])
        except BaseException:
            if before is not None:
                hooks.on_state(progress.state(run, i, *before))
            raise
        done = i + 1 - options.warmup
        if hooks.wants_reseed(i, iterations, done):
            seed_latent = popped.to(torch.float32)
            hooks.seeding(seed_latent)
        if hooks.wants_state(i, iterations, done):
            hooks.on_state(progress.state(run, i + 1, queue, noise.get_state(), seed_latent))
    return output


@torch.no_grad()   # without it, the autograd graph through the queue keeps every iteration alive (memory grows with N)
def fifo_generate(eps_model: Callable[..., torch.Tensor], run: FifoRun, base_clip: torch.Tensor | None = None,
                  resume: FifoState | None = None, hooks: FifoHooks = NO_HOOKS) -> torch.Tensor:
    """The whole pipeline: base clip (sampled with VideoCrafter2's own rescaled DDIM unless given), queue, FIFO.

    Without `base_clip` and `resume`, the base clip `[f, C, h, w]` is sampled from "base_x_T" noise with the
    run's grid and eta (official `base_ddim_sampling`), conditioned on prompt 0 of a prompt schedule, reporting
    to `hooks.on_base_step`. With `resume`, no base clip is sampled or used. Arguments and result as
    `fifo_sample`.
    """
    with _together(run.workers):
        if resume is None and base_clip is None:
            x_T = run.noise("base_x_T", 0, (run.options.video_length, *run.frame_shape))
            base_clip = sample_base_clip(run.model_at(eps_model, -1), x_T.to(device=run.device, dtype=torch.float32),
                                         run.schedule, rescale=True, callback=hooks.on_base_step,
                                         step_noise=lambda i, s: run.noise("base_step", i, s).to(run.device))
        return _sample(eps_model, run, None if resume is not None else base_clip, resume, hooks)
