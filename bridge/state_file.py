"""FIFO state files in ComfyUI's output folder: where a run writes its queue, noise state and frames so far, the
write probe that refuses an unwritable name before sampling, and the rescue of a final state that could not be
written. The file format itself is `samplers/fifo_state.py` (pure torch + safetensors); docs/fifo.md, "State files".
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from ..samplers.fifo_state import FifoState, FifoStateError, load_state, save_state, temporary_state_path
from .video_writer import safe_prefix

log = logging.getLogger("fifo_infinity")


@dataclass(frozen=True)
class StateFile:
    """Where and how often a FIFO run writes its state (`samplers.fifo_state`), and whether it resumes from it.

    path: absolute file path (inside ComfyUI's output folder, see `make_state_file`); every: output frames between
    writes (the state is also written after the last frame and when the run stops with an error or an
    interruption); resume: continue from the file instead of starting from the seed. The defaults and the range
    in `metadata` are those of the nodes' state_every / resume inputs.
    """
    path: str
    every: int = field(default=16, metadata={"min": 0, "max": 1000000})
    resume: bool = False

    def load(self) -> FifoState:
        try:
            return load_state(self.path)
        except FifoStateError as error:
            raise ValueError(f"resume: {error}. Run once with resume off to write it (state_every > 0), or "
                             f"correct state_file") from error

    def check_writable(self) -> None:
        """Raise ValueError (naming state_file) now, before sampling, if the state cannot be written: the exact
        temporary file `save_state` writes first (the longest name it uses) is created and removed once, so a
        name the file system refuses (too long, a NUL character) or a folder without write access is caught."""
        folder = os.path.dirname(self.path)
        probe = temporary_state_path(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            with open(probe, "xb"):
                pass
            os.remove(probe)
        except (OSError, ValueError) as error:      # ValueError: a name with a NUL character
            raise ValueError(f"state_file: cannot write the FIFO state {self.path!r} ({error}); choose another "
                             f"state_file (a shorter name in a writable folder under the output folder) or leave "
                             f"it empty") from error

    def writer(self, final_iteration: int):
        """on_state callback: writes each state. The first write of a fresh run (resume off) keeps a state file
        already there as `<name>.previous.safetensors` instead of overwriting it. A periodic write that fails
        (any error) is logged and the run goes on, the previous state file intact. The final write (iteration
        `final_iteration`, all frames done) must succeed: if it fails, the state is saved under
        `fifo_state_rescued/` in the output folder instead and the error names state_file and that file."""
        keep_previous = [not self.resume]

        def write(state: FifoState) -> None:
            try:
                if keep_previous[0] and os.path.exists(self.path):
                    previous = self.path[:-len(".safetensors")] + ".previous.safetensors"
                    os.replace(self.path, previous)
                    log.warning("FIFO: a new run writes %s; the state that was there is kept as %s",
                                self.path, previous)
                keep_previous[0] = False
                save_state(self.path, state)
            except Exception as error:       # noqa: BLE001 - a state write must never lose the run
                if state.iteration < final_iteration:
                    log.warning("FIFO: could not write the state file %s (%s); sampling continues", self.path, error)
                    return
                raise ValueError(f"state_file: the final state could not be written to {self.path!r} ({error}); "
                                 f"{_rescue_state(state)}") from error
        return write


def _rescue_state(state: FifoState) -> str:
    """Save `state` (all frames) under `<output>/fifo_state_rescued/` and say where, or say that it failed too."""
    import folder_paths
    name = f"fifo_state_rescued/state_{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}"
    path = os.path.join(folder_paths.get_output_directory(), name + ".safetensors")
    try:
        save_state(path, state)
    except Exception as error:               # noqa: BLE001
        return f"saving it to {path!r} failed too ({error})"
    return (f"the state with all {state.frames_done} frames is saved instead as {path!r}: queue again with "
            f"state_file {name!r} and resume on to get the video without sampling again")


def make_state_file(name: str, every: int, resume: bool) -> StateFile | None:
    """StateFile for the nodes' `state_file` input: a name under ComfyUI's output folder ('..' and absolute parts
    dropped, as the save nodes do; `.safetensors` added if missing), or None when the name is empty. The nodes
    call it when they run, before any sampling: a name that cannot be written raises ValueError naming
    state_file (`StateFile.check_writable`)."""
    name = (name or "").strip()
    if not name:
        if resume:
            raise ValueError("resume is on but state_file is empty: give the state file of the run to continue")
        return None
    if every < 0:
        raise ValueError(f"state_every = {every}: use 0 (only at the end and on interruption) or a frame count")
    relative = safe_prefix(name, default=None)
    if relative is None:
        raise ValueError(f"state_file = {name!r}: nothing is left of the name once '..' and absolute parts are "
                         f"dropped; give a name under the output folder such as fifo_state/my_video")
    import folder_paths
    if not relative.endswith(".safetensors"):
        relative += ".safetensors"
    state = StateFile(os.path.join(folder_paths.get_output_directory(), relative), every, resume)
    state.check_writable()
    return state
