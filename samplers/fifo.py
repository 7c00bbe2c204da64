"""FIFO-Diffusion: diagonal denoising over a queue of frames (pure torch, no ComfyUI).

Paper: Kim, Kang, Choi, Han, "FIFO-Diffusion: Generating Infinite Videos from Text without Training",
NeurIPS 2024 (arXiv 2405.11473), section 3 "FIFO-Diffusion": diagonal denoising, latent partitioning (n),
lookahead denoising.
Official code: jjihwan/FIFO-Diffusion_public (b87ba5d) `videocrafter_main.py`, `scripts/evaluation/funcs.py`
(`prepare_latents`, `fifo_ddim_sampling`, `shift_latents`), `lvdm/models/samplers/ddim.py` (`fifo_onestep`,
`ddim_step`). Spec `shared/specs/fifo_diffusion.md` sections 1.4-1.6; "uniform" queue initialisation from the
YCmove fork (`unilatent`, spec 3.4).

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
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol

import torch

from .ddim import DDIMSchedule, EpsModel, ddim_step, sample_base_clip
from .fifo_state import FifoState, FifoStateError, check_compatible, fifo_settings
from .schedule import PromptMix, PromptSchedule

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
        omits it (spec 1.5 and section 5, pitfall 4: plain DDIM, so below t ~ 400 the signal stays at the 0.7 scale the
        model was trained to see only at high noise). Off = the official numbers.
    """
    video_length: int = 16
    num_partitions: int = 4
    lookahead: bool = True
    eta: float = 1.0
    window_batch: int = 0
    queue_init: str = "official"
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
        return self.num_windows if self.window_batch == 0 else min(self.window_batch, self.num_windows)

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

    def window_groups(self) -> list[list[Window]]:
        """`windows()` cut into model calls of `windows_per_call` windows."""
        windows, size = self.windows(), self.windows_per_call
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
    """The initial queue `[L, C, h, w]` from a base clip `[f, C, h, w]` (official `prepare_latents`, spec 1.4).

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
                    indices: torch.Tensor, options: FifoOptions, step_noise: torch.Tensor | None = None) -> torch.Tensor:
    """Steps 1-2 of one iteration (paper section 3: diagonal denoising of the n partitions, with lookahead the
    2n half-overlapping windows), in place on `queue` `[L, C, h, w]`; returns it.

    timesteps, indices: `[L]` per-slot levels (`queue_levels`). step_noise: `[L, C, h, w]` N(0, I) per slot
    (needed when eta > 0; slot p's update uses `step_noise[p]`). Each model call gets the windows of one group
    concatenated, `x [W*f, C, h, w]` with `timesteps [W*f]`; groups run tail first and each group reads before
    it writes, so every window sees the pre-iteration queue (see module docstring).
    """
    f = options.video_length
    device = queue.device
    timesteps_device = timesteps.to(device)
    for group in options.window_groups():
        x = torch.cat([queue[w.start:w.end] for w in group])
        t = torch.cat([timesteps_device[w.start:w.end] for w in group])
        eps = eps_model(x, t)
        if tuple(eps.shape) != tuple(x.shape):
            raise FifoError(f"the model returned {tuple(eps.shape)} for input {tuple(x.shape)}")
        for g, w in enumerate(group):
            keep = slice(g * f + (w.write_start - w.start), (g + 1) * f)
            written = slice(w.write_start, w.end)
            noise = None if step_noise is None else step_noise[written]
            stepped, _ = ddim_step(x[keep], eps[keep], indices[written], schedule, noise=noise,
                                   rescale=options.rescale)
            queue[written] = stepped
    return queue


@torch.no_grad()   # without it, the autograd graph through the queue keeps every iteration alive (memory grows with N)
def fifo_sample(eps_model: Callable[..., torch.Tensor], base_clip: torch.Tensor | None, num_frames: int,
                options: FifoOptions, noise: NoiseSource, schedule: DDIMSchedule | None = None,
                prompt_schedule: PromptSchedule | None = None,
                on_frame: Callable[[int, int, torch.Tensor], None] | None = None,
                output_device: torch.device | str | None = None,
                resume: FifoState | None = None,
                on_state: Callable[[FifoState], None] | None = None, state_every: int = 0,
                seeding: Callable[[torch.Tensor], None] | None = None, reseed_every: int = 0) -> torch.Tensor:
    """Run FIFO-Diffusion from a base clip; returns the N output frames `[N, C, h, w]` float32 (model space).

    eps_model: `eps(x [W*f, C, h, w], timesteps [W*f] int64) -> [W*f, C, h, w]`, W windows of f frames each
        (frames as batch, CFG applied by the caller); with a `prompt_schedule` it is called as
        `eps(x, timesteps, mix)` where `mix` is the iteration's `PromptMix` (official multi-prompt semantics).
    base_clip: `[f, C, h, w]` clean clip the queue is built from (`sample_base_clip` or a user's latent); may be
        None when resuming.
    noise: the NoiseSource ("queue_init", then per iteration "step" (eta > 0) and "append"); with `resume` or
        `on_state` it must also have `get_state()` / `set_state(state)` (GeneratorNoise has them).
    schedule: the DDIM grid (default `DDIMSchedule.build(S, eta)`; its eta is used).
    on_frame: `on_frame(iteration, iterations, popped [1, C, h, w])` after each iteration's pop, before the
        shift (raise from it to stop, e.g. on user interruption).
    output_device: where the N output frames are kept (default: the queue's device).
    resume: a FifoState (`samplers.fifo_state`) to continue from instead of building the queue (`base_clip` is
        then ignored); its frames are the first frames of the output. If it already holds N frames or more,
        its first N are returned.
    on_state: called with a FifoState every `state_every` output frames (0: never on a count), after the last
        iteration, and, if the run stops with an exception (interruption, a crash in the model), with the state
        before the iteration that failed, before the exception propagates. A resumed run continues exactly.
        A queue that turns non-finite (NaN or inf from the model) raises FifoError naming the iteration, with
        that same state written first (nothing already sampled is lost).
    seeding: latent seeding (FIFO+ `t2v_seed`, spec 3.2): `seeding(latent [1, C, h, w])` is called once the queue
        is built with queue slot 0 (base frame 0 at the lowest noise level, as the fork) and must make the model
        condition on it from then on (the caller embeds it as an image; the core only decides when and on what).
        reseed_every > 0: every that many output frames, seeding is called again with the frame just popped, so
        the anchor follows the video (the fork's unfinished `t2v_seed_ar`, without its growing context: the
        caller replaces the seed, it does not add one). A resumed run re-applies the state's seed latent.

    Raises FifoError for bad shapes or settings, FifoStateError (a ValueError) for a state made with other
    settings.
    """
    options.check_num_frames(num_frames)
    if base_clip is None and resume is None:
        raise FifoError("fifo_sample needs a base clip [f, C, h, w] or a FIFO state to resume from")
    if base_clip is not None:
        check_base_clip(base_clip, options)
    if prompt_schedule is not None:
        prompt_schedule.check_covers(num_frames)
    if state_every < 0:
        raise FifoError(f"state_every = {state_every}: use 0 (no periodic state) or a number of frames")
    if reseed_every < 0:
        raise FifoError(f"reseed_every = {reseed_every}: use 0 (seed once, as FIFO+) or a number of frames")
    if schedule is None:
        schedule = DDIMSchedule.build(options.steps, options.eta)
    timesteps, indices = queue_levels(options, schedule)
    main_timesteps = schedule.timesteps.to(torch.int64).cpu()
    if resume is not None:                 # continue: the state's queue, iteration, noise and seed
        frame_shape, device = tuple(resume.queue.shape[1:]), resume.queue.device
        settings = fifo_settings(options, main_timesteps, frame_shape)
        check_compatible(resume, settings)
        if seeding is not None and resume.seed_latent is None:
            raise FifoStateError("the FIFO state was written by a run without latent seeding; resume it without "
                                 "seeding (or start a new run)")
        output_device = output_device if output_device is not None else device
        if resume.frames_done >= num_frames:
            return resume.frames[:num_frames].to(device=output_device, dtype=torch.float32)
        queue = resume.queue.to(torch.float32)
        if resume.noise_state is not None:
            noise.set_state(resume.noise_state)
        start = resume.iteration
        seed_latent = resume.seed_latent if seeding is not None else None
    else:                                  # a new run: the queue from the base clip
        frame_shape, device = tuple(base_clip.shape[1:]), base_clip.device
        settings = fifo_settings(options, main_timesteps, frame_shape)
        output_device = output_device if output_device is not None else device
        queue = init_queue(base_clip, schedule, options, noise("queue_init", 0, (options.queue_length, *frame_shape)))
        start = 0
        seed_latent = queue[0:1].clone() if seeding is not None else None
    if seeding is not None:
        seeding(seed_latent.to(device=device, dtype=torch.float32))
    output = torch.empty((num_frames, *frame_shape), dtype=torch.float32, device=output_device)
    if resume is not None and resume.frames_done:
        output[:resume.frames_done] = resume.frames.to(output.device, torch.float32)
    stochastic = bool((schedule.sigmas > 0).any())
    iterations = options.iterations(num_frames)

    def state_now(iteration, queue_now, noise_state, seed):
        done = max(0, iteration - options.warmup)
        return FifoState(iteration=iteration, queue=queue_now.cpu().clone(), frames=output[:done].cpu().clone(),
                         noise_state=noise_state, settings=settings,
                         seed_latent=None if seed is None else seed.cpu().clone())

    for i in range(start, iterations):
        before = (queue.clone(), noise.get_state(), seed_latent) if on_state is not None else None
        try:
            model = eps_model
            if prompt_schedule is not None:
                mix: PromptMix = prompt_schedule.mix_at_iteration(i, options.warmup)
                model = lambda x, t, _mix=mix: eps_model(x, t, _mix)
            step_noise = noise("step", i, (options.queue_length, *frame_shape)) if stochastic else None
            denoise_windows(queue, model, schedule, timesteps, indices, options, step_noise)
            if not torch.isfinite(queue).all():
                raise FifoError(
                    f"the model output turned non-finite (NaN or inf) at iteration {i} of {iterations} (output frame "
                    f"{i - options.warmup}): nothing more can be sampled from this queue. Check cfg, eta and the "
                    f"model's dtype (fp16 can overflow); a state file keeps the state before this iteration")
            popped = queue[options.head:options.head + 1].clone()
            if i >= options.warmup:
                output[i - options.warmup] = popped[0].to(output.device)
            if on_frame is not None:
                on_frame(i, iterations, popped)
            tail = noise("append", i, (1, *frame_shape)).to(device=device, dtype=torch.float32)
            queue = torch.cat([queue[1:], tail])
        except BaseException:
            if before is not None:
                on_state(state_now(i, *before))
            raise
        done = i + 1 - options.warmup
        if seeding is not None and reseed_every and done > 0 and done % reseed_every == 0 and i < iterations - 1:
            seed_latent = popped.to(torch.float32)
            seeding(seed_latent)
        if on_state is not None and (i == iterations - 1 or (state_every and done > 0 and done % state_every == 0)):
            on_state(state_now(i + 1, queue, noise.get_state(), seed_latent))
    return output


@torch.no_grad()   # without it, the autograd graph through the queue keeps every iteration alive (memory grows with N)
def fifo_generate(eps_model: Callable[..., torch.Tensor], num_frames: int, frame_shape: tuple[int, ...],
                  options: FifoOptions, noise: NoiseSource, base_clip: torch.Tensor | None = None,
                  prompt_schedule: PromptSchedule | None = None, device: torch.device | str = "cpu",
                  on_base_step: Callable[[int, int, torch.Tensor], None] | None = None,
                  on_frame: Callable[[int, int, torch.Tensor], None] | None = None,
                  output_device: torch.device | str | None = None,
                  schedule: DDIMSchedule | None = None, resume: FifoState | None = None,
                  on_state: Callable[[FifoState], None] | None = None, state_every: int = 0,
                  seeding: Callable[[torch.Tensor], None] | None = None, reseed_every: int = 0) -> torch.Tensor:
    """The whole pipeline: base clip (sampled with VideoCrafter2's own rescaled DDIM unless given), queue, FIFO.

    frame_shape: `(C, h, w)` of one latent frame; base_clip: `[f, C, h, w]` or None; the base clip is sampled
    from "base_x_T" noise with the same grid and eta as the FIFO step, conditioned on prompt 0 of a schedule.
    schedule: the DDIM grid (default `DDIMSchedule.build(S, eta)`). Returns `[N, C, h, w]` float32 (model space).
    resume, on_state, state_every, seeding, reseed_every: as `fifo_sample` (with `resume`, no base clip is
    sampled or used; seeding starts after the base clip, which is sampled without it).
    """
    options.check_num_frames(num_frames)
    if prompt_schedule is not None:
        prompt_schedule.check_covers(num_frames)
    if schedule is None:
        schedule = DDIMSchedule.build(options.steps, options.eta)
    if resume is not None:
        if tuple(resume.queue.shape[1:]) != tuple(frame_shape):
            raise FifoError(f"the FIFO state's latent frames are {tuple(resume.queue.shape[1:])} (channels, h, w) "
                            f"but this video's are {tuple(frame_shape)}: resume with the size of the run that wrote it")
        base_clip = None
        resume = replace(resume, queue=resume.queue.to(device))
    elif base_clip is None:
        base_model = eps_model
        if prompt_schedule is not None:
            first = prompt_schedule.mix(-1)
            base_model = lambda x, t: eps_model(x, t, first)
        shape = (options.video_length, *frame_shape)
        x_T = noise("base_x_T", 0, shape).to(device=device, dtype=torch.float32)
        base_clip = sample_base_clip(base_model, x_T, schedule,
                                     step_noise=lambda i, s: noise("base_step", i, s).to(device), rescale=True,
                                     callback=on_base_step)
    else:
        check_base_clip(base_clip, options, frame_shape)
        base_clip = base_clip.to(device=device, dtype=torch.float32)
    return fifo_sample(eps_model, base_clip, num_frames, options, noise, schedule=schedule,
                       prompt_schedule=prompt_schedule, on_frame=on_frame, output_device=output_device,
                       resume=resume, on_state=on_state, state_every=state_every, seeding=seeding,
                       reseed_every=reseed_every)
