"""Headless runner: execute one API-format workflow with a real ComfyUI, in one process or on every rank.

Under torchrun every rank runs the same workflow, and the pack's parallel nodes (devices empty or "distributed")
share the work over torch.distributed (gloo on CPU, NCCL on GPU): a model patched by Apply Video-Infinity computes
only its rank's clips and exchanges context, and Video-Infinity VAE Decode gathers the frames on rank 0; the FIFO
samplers compute only their rank's windows of every iteration and exchange the written frames, so every rank ends
with the whole video (and only rank 0 writes the state file). Only rank 0's outputs are kept (the other ranks
write into temporary folders that are removed).

    torchrun --nproc-per-node 2 /path/to/fifo-infinity/run.py --workflow api.json \\
        --comfyui /path/to/ComfyUI --output-dir out [--extra-model-paths-config paths.yaml] [--cpu]
    python /path/to/fifo-infinity/run.py --workflow api.json ...          # one process

Several machines: the usual torchrun rendezvous (`--nnodes`, `--node-rank`, `--rdzv-endpoint`). Rank 0
prints a JSON summary (and writes it to --result-json): success, the executed nodes' UI outputs and the
files written. The exit code is 0 only if every rank succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

PACK_DIR = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflow", required=True, help="API-format workflow JSON (ComfyUI 'Export (API)').")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH") or _guess_comfyui(),
                        help="ComfyUI root (default: $COMFYUI_PATH, or the ComfyUI this pack is installed in).")
    parser.add_argument("--output-dir", default="output", help="Where rank 0's outputs go (default ./output).")
    parser.add_argument("--extra-model-paths-config", action="append", default=[],
                        help="extra_model_paths.yaml file(s), as for ComfyUI's main.py.")
    parser.add_argument("--cpu", action="store_true", help="Run on the CPU (gloo) even if CUDA is available.")
    parser.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"],
                        help="torch.distributed backend (auto: nccl with CUDA, else gloo).")
    parser.add_argument("--timeout-minutes", type=float, default=30.0,
                        help="torch.distributed timeout: a rank that fails leaves the others waiting this long at most.")
    parser.add_argument("--result-json", default=None, help="Also write rank 0's summary to this file.")
    parser.add_argument("--load-custom-nodes", action="store_true",
                        help="Also load every pack in ComfyUI's custom_nodes folders (default: only this pack).")
    parser.add_argument("--quiet", action="store_true", help="Less logging.")
    return parser.parse_args(argv)


def _guess_comfyui():
    parent = os.path.dirname(PACK_DIR)
    if os.path.basename(parent) == "custom_nodes" and os.path.exists(os.path.join(parent, "..", "main.py")):
        return os.path.abspath(os.path.join(parent, ".."))
    return None


class HeadlessServer:
    """The little of ComfyUI's PromptServer that the executor talks to; rank 0 logs progress."""

    def __init__(self, verbose: bool):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.verbose = verbose
        self.errors = []

    def send_sync(self, event, data, sid=None):
        if event == "execution_error":
            self.errors.append(data)
        if self.verbose and event in ("executing", "execution_error", "execution_success"):
            print(f"[run.py] {event}: {json.dumps(data, default=str)[:500]}", flush=True)

    def send_progress_text(self, *args, **kwargs):
        pass

    def queue_updated(self):
        pass


def main(argv=None) -> int:
    options = parse_args(argv)
    if not options.comfyui or not os.path.exists(os.path.join(options.comfyui, "comfy")):
        print("run.py: give the ComfyUI root with --comfyui (or set COMFYUI_PATH)", file=sys.stderr)
        return 2

    import torch
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not options.cpu
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist = None
    if world > 1:
        import torch.distributed as dist
        from datetime import timedelta
        backend = options.backend if options.backend != "auto" else ("nccl" if use_cuda else "gloo")
        dist.init_process_group(backend, timeout=timedelta(minutes=options.timeout_minutes))

    scratch = None
    if rank == 0:
        output_dir = os.path.abspath(options.output_dir)
    else:
        scratch = tempfile.mkdtemp(prefix=f"video-infinity-rank{rank}-")
        output_dir = scratch
    os.makedirs(output_dir, exist_ok=True)

    temp_dir = tempfile.mkdtemp(prefix=f"video-infinity-temp{rank}-")
    try:
        summary = _execute(options, output_dir, temp_dir, rank, use_cuda)
    except Exception as error:             # noqa: BLE001 - reported to every rank and turned into the exit code
        summary = {"success": False, "errors": [f"{type(error).__name__}: {error}"]}
    shutil.rmtree(temp_dir, ignore_errors=True)

    ok = bool(summary.get("success"))
    if dist is not None:
        flags = [None] * world
        dist.all_gather_object(flags, (ok, summary.get("errors", []), summary.get("seconds")))
        ok = all(flag for flag, _, _ in flags)
        summary["ranks"] = [{"rank": r, "success": flag, "errors": errs, "seconds": seconds}
                            for r, (flag, errs, seconds) in enumerate(flags)]
        dist.barrier()
        dist.destroy_process_group()
    summary["success"] = ok
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    if rank == 0:
        text = json.dumps(summary, indent=1, default=str)
        print(text, flush=True)
        if options.result_json:
            with open(options.result_json, "w") as f:
                f.write(text)
    return 0 if ok else 1


def _execute(options, output_dir: str, temp_dir: str, rank: int, use_cuda: bool) -> dict:
    import host_bootstrap as bootstrap    # beside this script (sys.path[0]); it puts ComfyUI's root first
    nodes = bootstrap.import_comfyui(os.path.abspath(options.comfyui), cpu=not use_cuda)
    from utils.extra_config import load_extra_path_config
    import folder_paths
    import execution

    for path in options.extra_model_paths_config:
        load_extra_path_config(path)
    folder_paths.set_output_directory(output_dir)
    folder_paths.set_temp_directory(temp_dir)

    bootstrap.init_extra_nodes(nodes, custom_nodes=options.load_custom_nodes)
    if not bootstrap.load_pack(nodes):
        return {"success": False, "errors": ["ComfyUI could not load the pack"]}

    with open(options.workflow) as f:
        prompt = json.load(f)
    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not valid:
        return {"success": False, "errors": [error], "node_errors": node_errors}

    server = HeadlessServer(verbose=rank == 0 and not options.quiet)
    # no caching; every key a host's main.py passes (v0.33 added "ram_inactive"; older hosts ignore it)
    executor = execution.PromptExecutor(server, cache_type=False, cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})
    started = time.perf_counter()
    executor.execute(prompt, prompt_id, {}, outputs)
    elapsed = time.perf_counter() - started
    history = getattr(executor, "history_result", {}) or {}
    files = []
    for node_output in history.get("outputs", {}).values():
        for entries in node_output.values():
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and "filename" in entry:
                    files.append(os.path.join(output_dir, entry.get("subfolder", ""), entry["filename"]))
    return {"success": bool(executor.success), "seconds": elapsed, "outputs": history.get("outputs", {}),
            "files": files, "errors": server.errors}


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and the process group is destroyed. Skip the interpreter's teardown: under load a
    # native worker thread still alive at exit can abort the process ("terminate called without an active
    # exception", SIGABRT), which torchrun would report as a failure of a run that succeeded.
    os._exit(code)
