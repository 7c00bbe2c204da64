"""Conditioning plumbing of the FIFO sampler: the prompt-schedule value the nodes chain, and the guider's processed
conds swapped per iteration (a schedule's prompts and their text-embedding blends).

The schedule's semantics (which prompt each iteration uses, the blend weights) are `samplers/prompt_schedule.py`;
this module only turns them into the processed conds ComfyUI's guider calls the model with. docs/fifo.md,
"Multi-prompt schedules".
"""

from __future__ import annotations

import torch

import comfy.conds
import comfy.sampler_helpers
import comfy.samplers
import node_helpers

from ..samplers.fifo import FifoError
from ..samplers.prompt_schedule import PromptMix, PromptSchedule


class FifoPromptList:
    """An immutable chain of `(CONDITIONING, frames, transition)` entries (the FIFO_PROMPT_SCHEDULE value).

    frames: output frames the prompt covers; transition: frames over which its text embedding blends in from the
    previous prompt's (0 = the official hard switch; ignored for the first prompt).
    """

    def __init__(self, entries=()):
        self.entries = tuple(entries)

    def appended(self, conditioning, frames: int, transition: int) -> "FifoPromptList":
        """A longer chain; raises PromptScheduleError (a ValueError) if the schedule it makes is invalid."""
        chain = FifoPromptList(self.entries + ((conditioning, int(frames), int(transition)),))
        chain.schedule()
        return chain

    @property
    def conditionings(self) -> list:
        return [entry[0] for entry in self.entries]

    def schedule(self) -> PromptSchedule:
        return PromptSchedule(tuple(entry[1] for entry in self.entries),
                              transition=tuple(entry[2] for entry in self.entries[1:]))

    def with_values(self, values: dict) -> "FifoPromptList":
        """A copy whose conditionings carry `values` (e.g. fps)."""
        return FifoPromptList((node_helpers.conditioning_set_values(c, values), frames, k)
                              for c, frames, k in self.entries)


def with_contexts(entries: list, contexts: list[torch.Tensor]) -> list:
    """Copies of processed cond entries (ComfyUI's `process_conds` output) whose `c_crossattn` is replaced, entry i
    by `contexts[i]` `[B, tokens, C]`; everything else in each entry is shared."""
    out = []
    for entry, context in zip(entries, contexts):
        entry = entry.copy()
        entry["model_conds"] = dict(entry["model_conds"], c_crossattn=comfy.conds.CONDCrossAttn(context))
        out.append(entry)
    return out


def text_contexts(entries: list) -> list[torch.Tensor]:
    """The `c_crossattn` tensors `[B, tokens, C]` of processed cond entries."""
    return [entry["model_conds"]["c_crossattn"].cond for entry in entries]


class PromptConds:
    """The processed positive conds of each prompt of a schedule, and their text-embedding blends for a PromptMix.

    Built once per sampling (after the guider has processed its own conds: same model, noise and seed);
    `self(mix)` gives the entries one iteration's model calls use. Raises FifoError when a transition would
    blend embeddings of different shapes.
    """

    def __init__(self, prompts: FifoPromptList, schedule: PromptSchedule, model, noise, device, latent_image, seed):
        self.processed = []
        for conditioning in prompts.conditionings:
            conds = {"positive": comfy.sampler_helpers.convert_cond(conditioning)}
            conds = comfy.samplers.process_conds(model, noise, conds, device, latent_image, None, seed)
            self.processed.append(conds["positive"])
        for j, k in enumerate(schedule.transitions):
            if k > 0:
                self._check_blendable(j, j + 1)
        self.cache = {}

    def _check_blendable(self, a, b):
        shapes_a = [tuple(e.shape) for e in text_contexts(self.processed[a])]
        shapes_b = [tuple(e.shape) for e in text_contexts(self.processed[b])]
        if shapes_a != shapes_b:
            raise FifoError(f"prompts {a + 1} and {b + 1} of the FIFO prompt schedule have text embeddings of shapes "
                            f"{shapes_a} and {shapes_b}; a transition blends them, so they must match (keep both "
                            f"prompts within 75 tokens, or set that transition to 0)")

    def __call__(self, mix: PromptMix | None) -> list:
        if mix is None:
            mix = ((0, 1.0),)
        if len(mix) == 1:
            return self.processed[mix[0][0]]
        if mix not in self.cache:
            dominant = max(mix, key=lambda item: item[1])[0]
            contexts = [sum(w * text_contexts(self.processed[j])[i] for j, w in mix)
                        for i in range(len(self.processed[dominant]))]
            self.cache = {mix: with_contexts(self.processed[dominant], contexts)}     # one iteration's mix at a time
        return self.cache[mix]
