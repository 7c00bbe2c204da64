"""The development scripts' side of the host plumbing (tests, tools, benchmarks): the pack's `host_bootstrap.py`
loaded once, by file path, as the module `fifo_infinity_host_bootstrap` (the pack's folder must not go on
sys.path, where its `nodes/` package would shadow ComfyUI's `nodes.py`), and where the reference fixture
folders are. Use: `from pack_bootstrap import bootstrap, find_reference` with this folder on sys.path
(tests/conftest.py appends it; scripts in tools/ have it as their own folder)."""

import importlib.util
import os
import sys

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "fifo_infinity_host_bootstrap"


def _load():
    if NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(NAME, os.path.join(PACK_DIR, "host_bootstrap.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[NAME]


bootstrap = _load()

REFERENCE_VARIABLES = {
    "vc2_tiny": "FIFO_REFERENCE_DIR",
    "video_infinity": "VIDEO_INFINITY_REFERENCE_DIR",
    "vc1_i2v_tiny": "FIFO_I2V_REFERENCE_DIR",
}
"""The reference fixture folders the tests and benchmarks use, and the environment variable that overrides each."""


class ReferenceNotFound(FileNotFoundError):
    """A reference fixture folder is in none of the places looked at."""


def reference_candidates(leaf: str, variable: str | None = None) -> list[str]:
    """Where `find_reference` looks for the fixture folder `leaf`: only $`variable` when it is set, else
    `../shared/reference/<leaf>` next to the clone, then `/work/shared/reference/<leaf>`."""
    variable = variable or REFERENCE_VARIABLES.get(leaf)
    if variable and os.environ.get(variable):
        return [os.environ[variable]]
    return [os.path.join(PACK_DIR, "..", "shared", "reference", leaf), os.path.join("/work", "shared", "reference", leaf)]


def find_reference(leaf: str, variable: str | None = None) -> str:
    """The absolute path of the reference fixture folder `leaf` (e.g. "vc2_tiny"); `variable` overrides the
    environment variable of `REFERENCE_VARIABLES`. Raises ReferenceNotFound naming the places tried and the variable.
    """
    variable = variable or REFERENCE_VARIABLES.get(leaf)
    candidates = reference_candidates(leaf, variable)
    for path in candidates:
        if os.path.isdir(path):
            return os.path.abspath(path)
    hint = f"; set {variable}" if variable else ""
    raise ReferenceNotFound(f"reference fixtures not found (tried {candidates}){hint}")
