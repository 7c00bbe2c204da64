"""The pack's `host_bootstrap.py` for the development scripts (tests, tools, benchmarks): loaded once, by file
path, as the module `fifo_infinity_host_bootstrap` (the pack's folder must not go on sys.path, where its
`nodes/` package would shadow ComfyUI's `nodes.py`). Use: `from pack_bootstrap import bootstrap` with this
folder on sys.path (tests/conftest.py appends it; scripts in tools/ have it as their own folder)."""

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
