"""Multi-prompt schedules for the FIFO queue (pure Python, no ComfyUI).

Official semantics (jjihwan/FIFO-Diffusion_public `scripts/evaluation/funcs.py`, `fifo_ddim_sampling_multiprompts`;
docs/fifo.md, "Multi-prompt schedules"): prompt j
covers `frame_counts[j]` output frames; at FIFO iteration i the *whole queue* is conditioned on the prompt of
the frame popped at that iteration, output frame `u = i - (S - f)` (warm-up iterations, u < 0, use prompt 0).

Ours on top: a transition of K frames at each boundary. The first K frames of a new prompt's range are
conditioned on a linear interpolation of the two prompts' text embeddings, weight `(u - B + 1) / (K + 1)` for
the new prompt at output frame u >= B (the boundary); K = 0 is exactly the official switch. Boundaries closer
than K frames blend three or more prompts; the weights always sum to 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PromptMix = tuple[tuple[int, float], ...]
"""`((prompt index, weight), ...)`, weights > 0 summing to 1; one entry except inside a transition."""


class PromptScheduleError(ValueError):
    """A schedule that cannot be used; the message names the value."""


@dataclass(frozen=True)
class PromptSchedule:
    """`frame_counts[j]` output frames for prompt j, consecutive from output frame 0.

    transition: K frames of blending at every boundary (an int), or one K per boundary (J - 1 ints: the K of
    boundary j is the blend from prompt j into prompt j + 1).
    """
    frame_counts: tuple[int, ...]
    transition: int | tuple[int, ...] = 0
    transitions: tuple[int, ...] = field(init=False, default=())   # one K per boundary (derived)

    def __post_init__(self):
        counts = tuple(int(c) for c in self.frame_counts)
        object.__setattr__(self, "frame_counts", counts)
        if not counts:
            raise PromptScheduleError("the prompt schedule has no prompts")
        for j, count in enumerate(counts):
            if count < 1:
                raise PromptScheduleError(f"prompt {j + 1} of the schedule has frames = {count}; each prompt needs >= 1 frame")
        if isinstance(self.transition, int):
            transitions = (self.transition,) * (len(counts) - 1)
        else:
            transitions = tuple(int(k) for k in self.transition)
            if len(transitions) != len(counts) - 1:
                raise PromptScheduleError(f"{len(transitions)} transitions for {len(counts)} prompts: give one per "
                                          f"boundary ({len(counts) - 1})")
        for j, k in enumerate(transitions):
            if k < 0:
                raise PromptScheduleError(f"transition = {k} frames into prompt {j + 2}: must be >= 0")
        object.__setattr__(self, "transitions", transitions)

    @property
    def total_frames(self) -> int:
        return sum(self.frame_counts)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """First output frame of prompts 1..J-1 (the cumulative frame counts, last one dropped)."""
        out, acc = [], 0
        for count in self.frame_counts[:-1]:
            acc += count
            out.append(acc)
        return tuple(out)

    def check_covers(self, num_frames: int) -> None:
        """Raise unless the schedule covers output frames 0..num_frames-1."""
        if self.total_frames < num_frames:
            counts = " + ".join(str(c) for c in self.frame_counts)
            raise PromptScheduleError(
                f"the prompt schedule's frame counts sum to {self.total_frames} ({counts}), fewer than the "
                f"{num_frames} frames to generate: add frames to the prompts or lower the frame count")

    def mix(self, frame: int) -> PromptMix:
        """Prompt weights for output frame `frame` (negative = warm-up: prompt 0)."""
        weights = [0.0] * len(self.frame_counts)
        weights[0] = 1.0
        for j, boundary in enumerate(self.boundaries):
            w = min(1.0, max(0.0, (frame - boundary + 1) / (self.transitions[j] + 1)))
            if w > 0.0:
                weights = [(1.0 - w) * v for v in weights]
                weights[j + 1] += w
        return tuple((j, v) for j, v in enumerate(weights) if v > 0.0)

    def mix_at_iteration(self, iteration: int, warmup: int) -> PromptMix:
        """Weights for FIFO iteration `iteration` (it pops output frame `iteration - warmup`, warmup = S - f)."""
        return self.mix(iteration - warmup)
