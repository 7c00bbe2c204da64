"""The inputs the pack's nodes share, and the checks that keep declared ranges true.

`option_input` builds a node input from a field of an options dataclass (its default and its range come from
the dataclass, the one source); `size_inputs` gives the width/height pair every sized node uses.

Declared ranges always hold: the checks every validator of the pack runs on the inputs it names.

ComfyUI skips its own min/max checks for every input a node's `validate_inputs` names (core `execution.py`
`validate_inputs`), and its range check lets NaN through (comparisons with NaN are false). So a validator
calls `check_declared` for the inputs it names: the range the node declares, finite floats, and for pixel
sizes a multiple of 64. Linked inputs reach a validator as None (their value exists only at execution; both
v0.3.75 and v0.33 pass None) and are skipped; `require_declared` runs the same checks at execution, where the
values of linked inputs are known (docs/architecture.md, "Inputs and errors").

ComfyUI shows a validator's message under every input the validator names, so validators name only the
inputs they must check (the floats, the sizes, the inputs of cross-input rules); every other input keeps
ComfyUI's own per-input range check.
"""

from __future__ import annotations

import dataclasses
import math

from comfy_api.latest import io

from ..parallel.transport import DISTRIBUTED, DISTRIBUTED_NEEDS_RANKS, distributed_ready, parse_devices
from ..videocrafter.unet import DEFAULT_FPS

SIZE_MULTIPLE = 64   # 8 (VAE) x 2**3 (the UNet's three downsamplings)
PIXEL_SIZES = ("width", "height")   # the pack's pixel-size inputs (positive multiples of SIZE_MULTIPLE)
VIDEOCRAFTER2_SIZE = (512, 320)     # width, height in pixels VideoCrafter2 was trained at
MAX_PIXELS = 4096


def option_input(options_class, field_name: str, tooltip: str, name: str | None = None, **extra):
    """A node input for one field of an options dataclass (FifoOptions, ...): the default is the field's default,
    the range (`min` / `max`) or the choices (`options`) its `metadata`, the widget type its annotation (int,
    float, bool, str with choices). `name`: the input's name if it differs from the field's. `extra`: more
    widget options (step, round, optional...)."""
    field = {f.name: f for f in dataclasses.fields(options_class)}[field_name]
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    settings = dict(default=default, tooltip=tooltip, **extra)
    if "options" in field.metadata:
        return io.Combo.Input(name or field_name, options=list(field.metadata["options"]), **settings)
    widget = {"int": io.Int, "float": io.Float, "bool": io.Boolean, "str": io.String}[kind]
    settings.update({key: field.metadata[key] for key in ("min", "max") if key in field.metadata})
    return widget.Input(name or field_name, **settings)


def fps_input(tooltip: str):
    """The `fps` input: the frames-per-second value VideoCrafter2 is conditioned on (its scripts use 8), 1-120."""
    return io.Int.Input("fps", default=DEFAULT_FPS, min=1, max=120, tooltip=tooltip)


def devices_input(units: str, split: str):
    """The optional `devices` input of the nodes that can spread their work (`units`: "clips" or "windows"; `split`:
    what a device list splits), parsed by `parallel.transport.parse_devices`."""
    return io.String.Input(
        "devices", default="", optional=True,
        tooltip=f"Where the {units} run. Empty or 'auto': one call on the model's device, or torch.distributed when "
                f"the workflow runs under torchrun (the pack's run.py). A comma-separated list of torch devices "
                f"('cuda:0,cuda:1'; repeats allowed, 'cpu,cpu' = two groups taking turns on the CPU): {split} "
                f"'distributed': one rank per process (needs the headless runner).")


def devices_error(devices) -> str | None:
    """Why a `devices` value cannot work here (a device that does not exist, 'distributed' without a process group),
    or None; None for a linked input (checked when the node runs)."""
    if devices is None:
        return None
    try:
        parsed = parse_devices(devices)
    except ValueError as error:
        return str(error)
    if parsed == DISTRIBUTED and not distributed_ready():
        return DISTRIBUTED_NEEDS_RANKS
    return None


def size_inputs(what: str = "Frame") -> list:
    """The `width` and `height` inputs in pixels (multiples of 64, VideoCrafter2's 512x320 by default); a node
    with them passes `PIXEL_SIZES` to `check_declared` / `require_declared`."""
    return [io.Int.Input(name, default=default, min=SIZE_MULTIPLE, max=MAX_PIXELS, step=SIZE_MULTIPLE,
                         tooltip=f"{what} {name} in pixels, a multiple of {SIZE_MULTIPLE} (VideoCrafter2: {default}).")
            for name, default in zip(PIXEL_SIZES, VIDEOCRAFTER2_SIZE)]


def size_error(name: str, value: int) -> str | None:
    """None if `value` pixels is a size VideoCrafter2's UNet can take (a positive multiple of 64), else a message
    with the nearest valid sizes."""
    if value >= SIZE_MULTIPLE and value % SIZE_MULTIPLE == 0:
        return None
    low = max(SIZE_MULTIPLE, value // SIZE_MULTIPLE * SIZE_MULTIPLE)
    high = max(2 * SIZE_MULTIPLE, (value // SIZE_MULTIPLE + 1) * SIZE_MULTIPLE)
    return (f"{name} = {value} pixels cannot be used: VideoCrafter2's UNet downsamples the latent three times, so "
            f"{name} must be a positive multiple of {SIZE_MULTIPLE} pixels. Nearest valid values: {low} or {high}.")


def declared_inputs(node_class) -> dict[str, tuple[str, dict]]:
    """{input name: (type, options)} as the node declares them (V1 `INPUT_TYPES` form, which V3 nodes give too)."""
    declared = {}
    for section in node_class.INPUT_TYPES().values():
        if not isinstance(section, dict):
            continue
        for name, entry in section.items():
            kind = entry[0] if isinstance(entry, (list, tuple)) else entry
            options = entry[1] if isinstance(entry, (list, tuple)) and len(entry) > 1 and isinstance(entry[1], dict) else {}
            declared[name] = ("COMBO" if isinstance(kind, list) else kind, options)
    return declared


def _range_text(options: dict) -> str:
    low, high = options.get("min"), options.get("max")
    if low is not None and high is not None:
        return f"from {low} to {high}"
    if low is not None:
        return f"of at least {low}"
    return f"of at most {high}" if high is not None else "a finite number"


def input_error(name: str, value, kind: str, options: dict, size: bool = False) -> str | None:
    """The message for one widget value against its declaration (None if it holds)."""
    if kind not in ("INT", "FLOAT"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} = {value!r} is not a number: use a number {_range_text(options)}"
    if kind == "FLOAT" and not math.isfinite(value):
        return f"{name} = {value} is not a finite number: use a number {_range_text(options)}"
    low, high = options.get("min"), options.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{name} = {value} is outside its range: use a number {_range_text(options)}"
    if size:
        return size_error(name, value)
    return None


def check_declared(node_class, values: dict, sizes: tuple[str, ...] = ()) -> str | None:
    """The message of the first input in `values` ({name: widget value or None}) that breaks the node's
    declaration, or None. `sizes`: inputs that are pixel sizes (positive multiples of 64)."""
    declared = declared_inputs(node_class)
    for name, value in values.items():
        if value is None or name not in declared:
            continue
        kind, options = declared[name]
        message = input_error(name, value, kind, options, size=name in sizes)
        if message:
            return message
    return None


def require_declared(node_class, values: dict, sizes: tuple[str, ...] = ()) -> None:
    """`check_declared` at execution (linked inputs have values there); raises ValueError with its message."""
    message = check_declared(node_class, values, sizes)
    if message:
        raise ValueError(message)
