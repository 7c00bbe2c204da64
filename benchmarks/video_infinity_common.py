"""Shared bits of the Video-Infinity benchmarks: paths, the results file and a note on the machine."""

from __future__ import annotations

import os
import re

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(PACK_DIR, "benchmarks", "results", "video_infinity.md")
# the host and fixture paths are the FIFO benchmarks' (same folder)
from fifo_common import DEFAULT_COMFYUI, reference_dir  # noqa: E402,F401


def machine_note() -> str:
    import torch
    load = os.getloadavg()
    return (f"Machine: {os.cpu_count()} CPU cores shared with other jobs, torch {torch.__version__}; load average at "
            f"the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, so absolute times are noisy.")


def write_section(name: str, text: str) -> str:
    """Replace (or append) the section `name` of benchmarks/results/video_infinity.md; returns the path."""
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    body = open(RESULTS).read() if os.path.exists(RESULTS) else \
        "# Video-Infinity benchmarks (tiny reference VideoCrafter2, CPU)\n"
    block = f"<!-- {name} -->\n{text.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    body = pattern.sub(lambda _: block, body) if pattern.search(body) else body.rstrip() + "\n\n" + block + "\n"
    with open(RESULTS, "w") as f:
        f.write(body)
    return RESULTS
