#!/usr/bin/env python3
"""`make demo`: the bundled tiny model makes a long video through a real, headless ComfyUI server.

Starts ComfyUI's own `main.py --cpu` (the host found by tools/setup_env.sh, this pack linked into its
custom_nodes), posts `example_workflows/api/fifo_tiny_demo.json` (the bundled tiny VideoCrafter2-format
model, a prompt, the FIFO sampler, 256 frames), waits for it, and leaves an mp4 (PyAV, H.264) and an
animated webp in `output/` of this clone. Prints where they are and how long each stage took.

    python tools/demo.py --comfyui <host root> [--frames 256] [--prompt "a red ball bouncing"] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_types import number  # noqa: E402

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW = os.path.join(PACK_DIR, "example_workflows", "api", "fifo_tiny_demo.json")
MODEL_NAME = "fifo_infinity_tiny_vc2.safetensors"


def load_harness():
    """tools/server_harness.py (a real `main.py` server over HTTP), shared with the tests' `server` fixture."""
    import server_harness
    return server_harness


def load_workflow(path: str = WORKFLOW) -> dict:
    with open(path) as f:
        return json.load(f)


def nodes_of(workflow: dict, class_type: str) -> list[dict]:
    return [node for node in workflow.values() if node["class_type"] == class_type]


def configure(workflow: dict, frames: int | None = None, prompt: str | None = None, seed: int | None = None,
              prefix: str | None = None) -> dict:
    """A copy of the demo workflow with the number of output frames, the prompt, the seed or the file prefix changed.

    Frames live in the FIFO Sampler (all-in-one)'s `frames` when the workflow uses it, else in the Empty Video Latent.
    """
    workflow = json.loads(json.dumps(workflow))
    if frames is not None:
        targets = nodes_of(workflow, "FIFOInfinityFIFOSamplerAllInOne") or nodes_of(workflow, "FIFOInfinityEmptyVideoLatent")
        if not targets:
            raise ValueError("the demo workflow has no frame count to set (no FIFO Sampler (all-in-one), no Empty Video Latent)")
        for node in targets:
            node["inputs"]["frames"] = int(frames)
    if prompt is not None:
        for node in workflow.values():
            if node["class_type"] == "CLIPTextEncode" and node.get("_meta", {}).get("title") == "Prompt":
                node["inputs"]["text"] = prompt
    if seed is not None:
        for node in workflow.values():
            for key in ("seed", "noise_seed"):
                if key in node["inputs"] and not isinstance(node["inputs"][key], list):
                    node["inputs"][key] = int(seed)
    if prefix is not None:
        for node in workflow.values():
            if "filename_prefix" in node["inputs"]:
                node["inputs"]["filename_prefix"] = prefix
    return workflow


def saved_files(server, entry: dict) -> list[str]:
    """Every file the finished prompt saved (images, animated images, videos), as paths."""
    paths = []
    for node_id, output in entry.get("outputs", {}).items():
        for kind in ("images", "animated", "gifs", "videos"):
            for item in output.get(kind, []) or []:
                if isinstance(item, dict) and "filename" in item:
                    paths.append(os.path.join(server.output_dir, item.get("subfolder", ""), item["filename"]))
    return sorted(set(paths))


def run_demo(comfyui: str, python: str | None, output_dir: str, frames: int | None = None, prompt: str | None = None,
             seed: int | None = None, prefix: str = "fifo_tiny_demo/video", timeout: float = 3600.0,
             log=print) -> dict:
    """Start the server, run the demo workflow, stop the server. Returns {"files", "stages", "entry"}.

    Raises SystemExit when the bundled model is missing, RuntimeError when the host does not load this pack,
    does not offer the model, or the workflow fails; on any failure the server log is kept as
    `<output_dir>/demo_server.log`.
    """
    harness = load_harness()
    model = os.path.join(PACK_DIR, "models", MODEL_NAME)
    if not os.path.isfile(model):
        raise SystemExit(f"the bundled model {model} is missing (git lfs? a partial clone?)")
    stages = {}
    work = tempfile.mkdtemp(prefix="fifo_demo_")
    server = None
    try:
        started = time.time()
        server = harness.ComfyServer(comfyui, work, {"videocrafter": os.path.join(PACK_DIR, "models")}, python=python)
        server.output_dir = os.path.abspath(output_dir)
        server.start()
        stages["start ComfyUI"] = time.time() - started
        log(f"[demo] ComfyUI answered on {server.url} after {stages['start ComfyUI']:.1f} s")
        try:
            info = server.get("/object_info/FIFOInfinityCheckpointLoader")
            if "FIFOInfinityCheckpointLoader" not in info:
                raise RuntimeError(f"the ComfyUI at {comfyui} did not load this pack (no VideoCrafter2 Checkpoint "
                                   f"Loader node): is it in that ComfyUI's custom_nodes folder?\n{server.tail()}")
            choices = info["FIFOInfinityCheckpointLoader"]["input"]["required"]["ckpt_name"]
            names = choices[0] if isinstance(choices[0], list) else choices[1].get("options", [])
            if MODEL_NAME not in names:
                raise RuntimeError(f"the loader does not offer {MODEL_NAME} (it offers {names})")
            workflow = configure(load_workflow(), frames=frames, prompt=prompt, seed=seed, prefix=prefix)
            started = time.time()
            try:
                prompt_id = server.queue(workflow)
            except AssertionError as refused:     # the harness's way of saying HTTP 400: invalid inputs
                raise RuntimeError(f"ComfyUI refused the demo workflow: {refused}") from None
            entry = server.wait(prompt_id, timeout=timeout)
            stages["generate and save"] = time.time() - started
            if entry["status"].get("status_str") != "success":
                messages = json.dumps(entry["status"].get("messages", []))[-3000:]
                raise RuntimeError(f"the demo workflow failed: {messages}\n{server.tail()}")
            files = saved_files(server, entry)
        finally:
            server.stop()
    except BaseException:
        if server is not None and os.path.isfile(server.log_path):
            kept = os.path.join(os.path.abspath(output_dir), "demo_server.log")
            os.makedirs(os.path.dirname(kept), exist_ok=True)
            shutil.copyfile(server.log_path, kept)
            log(f"[demo] the run failed; the server log is kept in {kept}")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"files": files, "stages": stages, "entry": entry}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=os.environ.get("FIFO_COMFYUI_ROOT") or os.environ.get("COMFYUI_PATH"),
                   help="ComfyUI root with this pack in custom_nodes (tools/setup_env.sh prints it)")
    p.add_argument("--python", default=os.environ.get("FIFO_PYTHON") or sys.executable)
    p.add_argument("--output-dir", default=os.path.join(PACK_DIR, "output"))
    p.add_argument("--frames", type=number(int, 1, what="a whole number of frames"), default=None,
                   help="output frames (the workflow's 256 by default)")
    p.add_argument("--prompt", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--timeout", type=float, default=3600.0)
    args = p.parse_args(argv)
    if not args.comfyui:
        raise SystemExit("no ComfyUI: pass --comfyui or run `make demo` (tools/demo.sh builds the environment)")
    result = run_demo(args.comfyui, args.python, args.output_dir, frames=args.frames, prompt=args.prompt,
                      seed=args.seed, timeout=args.timeout)
    for stage, seconds in result["stages"].items():
        print(f"[demo] {stage}: {seconds:.1f} s")
    if not result["files"]:
        raise SystemExit("[demo] the workflow finished but saved no file")
    for path in result["files"]:
        print(f"[demo] wrote {os.path.relpath(path, os.getcwd())} ({os.path.getsize(path) / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
