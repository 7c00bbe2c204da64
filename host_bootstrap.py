"""One way to import a ComfyUI host and load this pack into it, for run.py, the tests, the tools and the benchmarks.

This file is loadable on its own, before the pack is importable: it imports nothing from ComfyUI and nothing
from the pack at module level (only the standard library). run.py imports it as the module beside it; the
development scripts (tests, tools, benchmarks) load it once by file path through `tools/pack_bootstrap.py`.

Never put the pack's folder at the front of sys.path: its `nodes/` package would shadow ComfyUI's `nodes.py`
(`import_comfyui` puts ComfyUI's root first). The pack is reached as the package `fifo_infinity`
(`register_pack`) or, as ComfyUI itself does it, through `nodes.load_custom_node(PACK_DIR)` (`load_pack`).

The usual sequence (what `load_host` does):

    root = find_comfyui()                # explicit root, else $FIFO_COMFYUI_ROOT, else $COMFYUI_PATH
    nodes = import_comfyui(root)         # ComfyUI's `nodes` module, CPU mode
    load_builtin_nodes(nodes)            # comfy_extras: SamplerCustom, CFGGuider, ...
    register_pack()                      # `import fifo_infinity...` works
    load_pack(nodes)                     # the pack's nodes in nodes.NODE_CLASS_MAPPINGS

The module keeps no state of its own: whether the pack is loaded is read from ComfyUI's own records
(`pack_loaded`), so loading this file twice under different names is harmless.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import os
import sys

PACK_DIR = os.path.dirname(os.path.abspath(__file__))
"""The pack's folder (this file's folder), whatever the clone is called."""

PACKAGE = "fifo_infinity"
"""The name `register_pack` gives the pack by default."""

ROOT_VARIABLES = ("FIFO_COMFYUI_ROOT", "COMFYUI_PATH")
"""Environment variables that name the ComfyUI root, in the order they are read (tools/run_tests.sh sets the first)."""



class ComfyUINotFound(FileNotFoundError):
    """No ComfyUI root given, or the one given has no `comfy/` package."""


class PackLoadError(RuntimeError):
    """ComfyUI's `load_custom_node` did not load the pack (ComfyUI logs the reason as a warning)."""


# ---------------------------------------------------------------------------------------------------
# The pack as a package
# ---------------------------------------------------------------------------------------------------

def register_pack(name: str = PACKAGE, run_init: bool = True):
    """Make the pack importable as the package `name` (default `fifo_infinity`), whatever its folder is called.

    With `run_init` the pack's `__init__.py` is executed (it imports nothing ComfyUI-specific at module level);
    without it `name` is a bare package whose `__path__` is the pack folder, so only the submodules actually
    imported are run (tools/train_tiny_model.py uses this for the `videocrafter/` code alone).
    Returns the package module; a name already in `sys.modules` is returned as it is.
    """
    if name in sys.modules:
        return sys.modules[name]
    if run_init:
        spec = importlib.util.spec_from_file_location(name, os.path.join(PACK_DIR, "__init__.py"),
                                                      submodule_search_locations=[PACK_DIR])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    else:
        module = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(name, None, is_package=True))
        module.__path__ = [PACK_DIR]
        sys.modules[name] = module
    return module


# ---------------------------------------------------------------------------------------------------
# The ComfyUI host
# ---------------------------------------------------------------------------------------------------

def find_comfyui(root: str | None = None) -> str:
    """The absolute path of the ComfyUI root: `root` if given, else $FIFO_COMFYUI_ROOT, else $COMFYUI_PATH.

    Raises ComfyUINotFound (a FileNotFoundError) when none is set, or when the folder has no `comfy/` package;
    the message names the variables.
    """
    source = "the root given"
    if not root:
        for variable in ROOT_VARIABLES:
            if os.environ.get(variable):
                root, source = os.environ[variable], f"${variable}"
                break
    if not root:
        raise ComfyUINotFound(f"no ComfyUI host: pass its root folder, or set {' or '.join(ROOT_VARIABLES)} "
                              f"(`make test` / tools/run_tests.sh set {ROOT_VARIABLES[0]})")
    root = os.path.abspath(root)
    if not os.path.isdir(os.path.join(root, "comfy")):
        raise ComfyUINotFound(f"{root} ({source}) is not a ComfyUI root: it has no comfy/ folder "
                              f"(set {' or '.join(ROOT_VARIABLES)} to the folder with ComfyUI's main.py)")
    return root


def use_comfyui(root: str, cpu: bool = True) -> str:
    """The light step: put `root` at the front of sys.path (once) and set ComfyUI's `args.cpu` to `cpu`.

    Enough for code that imports `comfy.*` but not ComfyUI's `nodes` (spawned workers, the training tool).
    Must run before `comfy.model_management` is first imported for `cpu` to take effect. Returns `root`.
    """
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args
    args.cpu = cpu
    return root


def import_comfyui(root: str, cpu: bool = True):
    """Import ComfyUI from `root` in-process (CPU mode unless `cpu=False`) and return its `nodes` module.

    `use_comfyui`, then ComfyUI's top-level `utils` package (`utils.install_util`) before `nodes.py` is
    imported: nodes.py puts `comfy/` (which has a `utils.py`) first on sys.path, which would shadow it.
    After this, `folder_paths`, `execution`, `utils.extra_config`, ... import normally. Repeated calls are cheap.
    Raises ImportError when the host's dependencies are missing from this interpreter.
    """
    use_comfyui(root, cpu)
    import utils.install_util  # noqa: F401  ComfyUI's `utils` package, before nodes.py shadows it
    import nodes
    return nodes


def load_builtin_nodes(nodes) -> None:
    """ComfyUI's built-in extra nodes (comfy_extras: SamplerCustomAdvanced, CFGGuider, ...), once per process."""
    if "SamplerCustomAdvanced" not in nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(nodes.init_builtin_extra_nodes())


def init_extra_nodes(nodes, custom_nodes: bool = False) -> None:
    """What ComfyUI's main.py runs at start-up, without the API nodes: the built-in extra nodes, and with
    `custom_nodes` every pack in the host's custom_nodes folders (this one included if it is installed there)."""
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=custom_nodes, init_api_nodes=False))


def pack_loaded(nodes) -> bool:
    """Whether ComfyUI has loaded this pack's folder and registered nodes from it, by `load_pack` or from its
    custom_nodes folder (a link to this clone counts). Read from ComfyUI's records (`LOADED_MODULE_DIRS` and each
    node class's `RELATIVE_PYTHON_MODULE`), so it does not depend on the pack's node ids."""
    here = os.path.realpath(PACK_DIR)
    names = [name for name, folder in getattr(nodes, "LOADED_MODULE_DIRS", {}).items()
             if os.path.realpath(folder) == here]
    if not names:
        return False
    modules = {f"custom_nodes.{name}" for name in names}
    return any(getattr(cls, "RELATIVE_PYTHON_MODULE", None) in modules for cls in nodes.NODE_CLASS_MAPPINGS.values())


def load_pack(nodes) -> bool:
    """Load the pack through ComfyUI's own `nodes.load_custom_node(PACK_DIR)` unless it is loaded already.

    Returns True when the pack's nodes are registered, False when ComfyUI failed to load it (ComfyUI logs why).
    """
    if pack_loaded(nodes):
        return True
    return bool(asyncio.run(nodes.load_custom_node(PACK_DIR)))


def load_host(root: str | None = None, cpu: bool = True, pack: bool = True):
    """ComfyUI's `nodes` module with its built-in extra nodes and the pack importable as `fifo_infinity`; with
    `pack` (default) the pack also loaded by ComfyUI's `load_custom_node`, as a ComfyUI server would.

    `root`: as for `find_comfyui`. Raises ComfyUINotFound, ImportError, or PackLoadError when ComfyUI does not
    load the pack.
    """
    nodes = import_comfyui(find_comfyui(root), cpu)
    load_builtin_nodes(nodes)
    register_pack()
    if pack and not load_pack(nodes):
        raise PackLoadError(f"ComfyUI failed to load the pack from {PACK_DIR} (see ComfyUI's warnings above)")
    return nodes
