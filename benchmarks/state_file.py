#!/usr/bin/env python3
"""Cost of FIFO state files (resume): write and read time and file size against the number of frames so far.

A state holds the queue (f*n + f/2 latent frames) and every output frame so far, all float32; each periodic
write rewrites the whole file (atomically: temporary file + rename). This measures `save_state` / `load_state`
(`samplers/fifo_state.py`) for VideoCrafter2's latent size (320x512 px -> [4, 40, 64]) and the official queue
(f 16, n 4, lookahead: 72 slots), for N frames done; best of `--repeat` runs, in a temporary folder on the
same disk as the output folder would be (`--dir`, default the system's temporary folder).

Writes the `state_file` section of benchmarks/results/fifo.md.

    python benchmarks/state_file.py [--frames 256 1024 4096 10000] [--repeat 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import DEFAULT_COMFYUI, load_host, machine_note, write_section  # noqa: E402


def measure(frames: int, repeat: int, folder: str, fifo_state) -> dict:
    shape = (4, 40, 64)
    state = fifo_state.FifoState(iteration=frames + 48, queue=torch.randn(72, *shape),
                                 frames=torch.randn(frames, *shape), noise_state=torch.Generator().get_state(),
                                 settings={"video_length": 16, "num_partitions": 4})
    path = os.path.join(folder, f"state_{frames}.safetensors")
    writes, reads = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        fifo_state.save_state(path, state)
        writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        loaded = fifo_state.load_state(path)
        reads.append(time.perf_counter() - start)
        assert torch.equal(loaded.frames, state.frames)
    size = os.path.getsize(path)
    os.remove(path)
    return {"frames": frames, "mb": size / 2 ** 20, "write": min(writes), "read": min(reads)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[256, 1024, 4096, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="folder to write the states in")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    load_host(args.comfyui)
    from fifo_infinity.samplers import fifo_state
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        rows = [measure(n, args.repeat, folder, fifo_state) for n in args.frames]
    lines = ["## State files (resume)", "",
             "`python benchmarks/state_file.py " + shlex.join(argv if argv is not None else sys.argv[1:]) + "`", "",
             "VideoCrafter2 latents (320x512 px -> 4x40x64), official queue (72 slots), float32; best of "
             f"{args.repeat}. Each periodic write rewrites the whole file.", "",
             "| frames done | file (MB) | write (s) | read (s) |", "|---|---|---|---|"]
    lines += [f"| {r['frames']} | {r['mb']:.1f} | {r['write']:.3f} | {r['read']:.3f} |" for r in rows]
    lines += ["", machine_note() + "."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print("written to", write_section("state_file", text))


if __name__ == "__main__":
    main()
