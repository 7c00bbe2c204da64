"""Shared bits of the Video-Infinity benchmarks: paths, the results file and a note on the machine (the host,
fixture paths, machine note and section writer are the FIFO benchmarks', in the same folder)."""

from __future__ import annotations

import functools

import fifo_common
from fifo_common import DEFAULT_COMFYUI, machine_note, reference_dir  # noqa: F401

PACK_DIR = fifo_common.PACK_DIR
write_section = functools.partial(fifo_common.write_section, filename="video_infinity.md",
                                  title="# Video-Infinity benchmarks (tiny reference VideoCrafter2, CPU)")
