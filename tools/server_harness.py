"""A real ComfyUI server (its own `main.py --cpu`) over HTTP: the tests' `server` fixture and `make demo`
(tools/demo.py) both use it. The tests import it from here (tests/conftest.py puts tools/ on sys.path);
nothing outside tests/ imports from tests/.

The pack reaches the server through the host's `custom_nodes/fifo-infinity` link made by
tools/setup_env.sh; models come from a temporary `extra_model_paths.yaml`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """Start with `start()`, stop with `stop()`; `post_prompt`, `wait`, `interrupt`, `get` talk HTTP."""

    def __init__(self, comfy_root: str, work_dir: str, model_folders: dict[str, str], python: str | None = None,
                 frontend: bool = False, startup_timeout: float = 180.0):
        self.comfy_root = comfy_root
        self.work_dir = work_dir
        self.output_dir = os.path.join(work_dir, "output")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.python = python or os.environ.get("FIFO_PYTHON") or sys.executable
        self.model_folders = model_folders
        self.frontend = frontend
        self.startup_timeout = startup_timeout
        self.process = None
        self.log_path = os.path.join(work_dir, "server.log")

    def start(self) -> "ComfyServer":
        os.makedirs(self.output_dir, exist_ok=True)
        paths = os.path.join(self.work_dir, "paths.yaml")
        with open(paths, "w") as f:
            f.write("fifo_infinity_tests:\n")
            for folder, path in self.model_folders.items():
                f.write(f"  {folder}: {path}\n")
        command = [self.python, os.path.join(self.comfy_root, "main.py"), "--cpu", "--listen", "127.0.0.1",
                   "--port", str(self.port), "--output-directory", self.output_dir,
                   "--extra-model-paths-config", paths, "--disable-auto-launch"]
        if not self.frontend:
            empty = os.path.join(self.work_dir, "no_frontend")
            os.makedirs(empty, exist_ok=True)
            command += ["--front-end-root", empty]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=self.comfy_root, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + self.startup_timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at start-up:\n{self.tail()}")
            try:
                if requests.get(self.url + "/object_info/FIFOInfinityCheckpointLoader", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {self.startup_timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        with open(self.log_path) as f:
            return "".join(f.readlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def get(self, path: str):
        response = requests.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def post_prompt(self, prompt: dict) -> requests.Response:
        return requests.post(self.url + "/prompt", json={"prompt": prompt, "client_id": str(uuid.uuid4())}, timeout=30)

    def queue(self, prompt: dict) -> str:
        response = self.post_prompt(prompt)
        if response.status_code != 200:
            raise AssertionError(f"prompt refused ({response.status_code}): {json.dumps(response.json())[:2000]}")
        return response.json()["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        """The history entry of a finished prompt (raises on timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} not finished after {timeout} s:\n{self.tail()}")

    def interrupt(self) -> None:
        requests.post(self.url + "/interrupt", timeout=10)

    def output_files(self, entry: dict, node_id: str, kind: str = "images") -> list[str]:
        files = entry["outputs"][node_id][kind]
        return [os.path.join(self.output_dir, f.get("subfolder", ""), f["filename"]) for f in files]
