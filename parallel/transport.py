"""Transports for Video-Infinity's clips and FIFO's windows: where the units of one call run, how tensors move.

One small interface, three real implementations (no ComfyUI import, no home-made sockets):

- `InProcessTransport()`: every clip in one call on the model's device (one participant).
- `InProcessTransport(devices)`: the clips split into one contiguous group per listed torch device; each
  group runs in its own thread on its device (a device may be listed several times: its groups then take
  turns between exchanges, which bounds the per-layer transient memory to one group), and context tensors
  are copied between devices.
- `DistributedTransport(group)`: torch.distributed (gloo on CPU, NCCL on GPU), one participant per rank of
  the process group; context travels by `all_gather` (boundary frames and global frames in one collective
  per exchange; the official code's pairwise NCCL variant, Yuanshi9815/Video-Infinity
  `src/video_infinity/plugins.py` `pad_context`, is compared in docs/video_infinity.md, "Context exchange"),
  the clips' outputs are all-gathered so every rank ends the call with the whole video's output.

Where clips run and what each choice costs: docs/video_infinity.md, "Where clips run".

A transport's `run(clips, work, device)` calls `work(endpoint)` once per local participant; `work` returns
its clips' output `[chunks, clips, ...]` (clip-major), `run` returns every participant's output in clip
order. Inside `work`, the Video-Infinity layers call the endpoint's `all_gather` / `all_reduce_sum` (all
participants in the same order: they run the same network).

FIFO-Diffusion uses the same interface with windows as the units (`samplers.fifo.WindowWorkers`): each rank
computes the windows of `endpoint.share` and `run` all-gathers their written frames, one collective per
iteration (docs/fifo.md, "Across devices and processes"). Its `work` makes no collective of its own, so a rank
whose work raises can tell every rank (`share_errors`), and every rank stops with that error.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from typing import Callable

import torch

from ..attention.video_infinity import VideoInfinityError, partition_clips


class Endpoint(ABC):
    """One participant's side of a clip-parallel call: which clips it holds and how it reaches the others."""

    def __init__(self, index: int, sizes: list[int], device: torch.device):
        self.index = index
        self.sizes = list(sizes)
        self.device = torch.device(device)

    @property
    def participants(self) -> int:
        return len(self.sizes)

    @property
    def total_clips(self) -> int:
        return sum(self.sizes)

    @property
    def first_clip(self) -> int:
        return sum(self.sizes[:self.index])

    @property
    def local_clips(self) -> int:
        return self.sizes[self.index]

    @property
    def share(self) -> range:
        """The positions of this participant's units (clips, or FIFO windows) among all of them."""
        return range(self.first_clip, self.first_clip + self.local_clips)

    @abstractmethod
    def all_gather(self, tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Every participant's `tensors` (same count, shapes and dtypes everywhere), in participant order, on
        this participant's device."""

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over participants, added in participant order (so it is identical on every participant and
        does not depend on the transport's reduction algorithm)."""
        parts = [entry[0] for entry in self.all_gather([tensor])]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total


class LocalEndpoint(Endpoint):
    """The only participant: holds every clip; exchanges are local."""

    def __init__(self, clips: int, device):
        super().__init__(0, [clips], device)

    def all_gather(self, tensors):
        return [list(tensors)]

    def all_reduce_sum(self, tensor):
        return tensor


class Transport(ABC):
    """Runs the clips of one UNet call (see the module docstring)."""

    @abstractmethod
    def participants(self) -> int:
        """How many participants share the clips."""

    def sizes(self, clips: int) -> list[int]:
        return partition_clips(clips, self.participants())

    @abstractmethod
    def run(self, clips: int, work: Callable[[Endpoint], torch.Tensor], device, signature: tuple = (),
            share_errors: bool = False) -> list[torch.Tensor]:
        """Every participant's `work(endpoint)` output `[chunks, its clips, ...]`, in clip order, on `device`.

        `signature`: integers every participant must agree on (checked by the distributed transport).
        `share_errors`: `work` makes no collective of its own (FIFO windows), so a participant whose work raises
        makes every participant raise (its own error there, `RankFailure` naming it elsewhere). In process, the
        first error always ends the call."""

    def describe(self) -> str:
        return type(self).__name__

    def share_failure(self, failure: BaseException) -> None:
        """Tell the other participants that this one failed outside `run` (in process: they are this process)."""

    def finish(self) -> None:
        """The end of a run of several calls (see `DistributedTransport.finish`)."""


# ---------------------------------------------------------------------------------------------------
# In-process: one participant, or one thread per listed device
# ---------------------------------------------------------------------------------------------------

class InProcessTransport(Transport):
    """Clips in this process: all in one call (`devices` None or empty), or one group per listed device."""

    def __init__(self, devices: list | None = None):
        self.devices = [torch.device(d) for d in devices] if devices else []

    def participants(self) -> int:
        return max(1, len(self.devices))

    def describe(self):
        if not self.devices:
            return "in-process, one call"
        return "in-process groups on " + ", ".join(str(d) for d in self.devices)

    def run(self, clips, work, device, signature=(), share_errors=False):
        if not self.devices:
            return [work(LocalEndpoint(clips, device))]
        sizes = self.sizes(clips)
        board = _ThreadBoard(self.devices)
        endpoints = [ThreadEndpoint(i, sizes, self.devices[i], board) for i in range(len(sizes))]
        outputs = board.run([lambda e=e: work(e) for e in endpoints], [e.device for e in endpoints])
        return [out.to(device) for out in outputs]


def same_device(a: torch.device, b: torch.device) -> bool:
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type == "cpu":
        return True
    index = lambda d: d.index if d.index is not None else (torch.cuda.current_device() if d.type == "cuda" else 0)
    return index(a) == index(b)


class _ThreadBoard:
    """Rendezvous of the participant threads: a slot per participant, a barrier, a lock per device.

    A thread holds its device's lock while it computes and releases it while it waits, so groups that share
    a device take turns and groups on different devices run concurrently. Any failure aborts the barrier so
    no thread waits forever; the first real error is re-raised in the caller.
    """

    def __init__(self, devices):
        self.count = len(devices)
        self.barrier = threading.Barrier(self.count)
        self.slots = [None] * self.count
        self.locks = {}
        for d in devices:
            key = _device_key(d)
            self.locks.setdefault(key, threading.Lock())

    def lock_for(self, device):
        return self.locks[_device_key(device)]

    def exchange(self, index: int, value, device):
        lock = self.lock_for(device)
        self.slots[index] = value
        self._wait(lock)
        values = list(self.slots)
        self._wait(lock)
        return values

    def _wait(self, lock):
        lock.release()
        try:
            self.barrier.wait()
        finally:
            lock.acquire()

    def run(self, jobs, devices):
        results = [None] * self.count
        errors = [None] * self.count
        grad = torch.is_grad_enabled()
        inference = torch.is_inference_mode_enabled()

        def target(i):
            lock = self.lock_for(devices[i])
            try:
                with torch.inference_mode(inference), torch.set_grad_enabled(grad), _device_context(devices[i]):
                    with lock:
                        results[i] = jobs[i]()
            except BaseException as error:      # noqa: BLE001 - re-raised in the caller below
                errors[i] = error
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(i,), name=f"video-infinity-clips-{i}", daemon=True)
                   for i in range(1, self.count)]
        for thread in threads:
            thread.start()
        target(0)
        for thread in threads:
            thread.join()
        real = [e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)]
        if real:
            raise real[0]
        if any(e is not None for e in errors):
            raise next(e for e in errors if e is not None)
        return results


def _device_key(device) -> str:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def _device_context(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


class ThreadEndpoint(Endpoint):
    def __init__(self, index, sizes, device, board: _ThreadBoard):
        super().__init__(index, sizes, device)
        self.board = board

    def all_gather(self, tensors):
        values = self.board.exchange(self.index, list(tensors), self.device)
        return [[t.to(self.device) for t in entry] for entry in values]


# ---------------------------------------------------------------------------------------------------
# torch.distributed: one participant per rank
# ---------------------------------------------------------------------------------------------------

def distributed_ready() -> bool:
    """True if a torch.distributed default process group with more than one rank is initialised."""
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Traffic:
    """Tensor bytes this rank has exchanged through its endpoints' all_gathers (the data, not the small
    agreement checks): `sent` (its own buffers), `received` (everyone's, its own included)."""

    def __init__(self):
        self.sent = self.received = self.collectives = 0

    def add(self, buffer_bytes: int, ranks: int) -> None:
        self.sent += buffer_bytes
        self.received += buffer_bytes * ranks
        self.collectives += 1


class DistributedTransport(Transport):
    """One participant per rank of `group` (default: the default process group). Every rank runs the same
    sampling on the whole latent and computes only its own clips; see the module docstring."""

    def __init__(self, group=None):
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            raise VideoInfinityError(
                "the distributed transport needs a torch.distributed process group: start the workflow with "
                "the headless runner under torchrun (see run.py)")
        self.dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        backend = dist.get_backend(group)
        self.comm_device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        self.traffic = Traffic()
        self._shared_failure: BaseException | None = None

    def participants(self):
        return self.size

    def describe(self):
        return f"torch.distributed ({self.dist.get_backend(self.group)}), rank {self.rank} of {self.size}"

    def run(self, clips, work, device, signature=(), share_errors=False):
        self.check_agreement(tuple(signature) + (clips,))
        sizes = self.sizes(clips)
        endpoint = DistributedEndpoint(self.rank, sizes, device, self)
        if not share_errors:
            out = work(endpoint)
        else:
            try:
                out = work(endpoint)
            except Exception as error:          # noqa: BLE001 - re-raised on this rank by share_failure's caller
                self.share_failure(error)
                raise
            self.check_agreement(())            # every rank's work succeeded
        most = max(sizes)
        if out.shape[1] < most:
            out = torch.cat([out, out.new_zeros((out.shape[0], most - out.shape[1]) + tuple(out.shape[2:]))], 1)
        gathered = endpoint.all_gather([out])
        return [entry[0][:, :sizes[r]] for r, entry in enumerate(gathered)]

    def check_agreement(self, values: tuple, failure: BaseException | None = None):
        """All ranks must make the same call (same clip count, batch layout and shapes); a mismatch would
        pair unrelated collectives, so it is an error here rather than a hang later.

        The same small collective carries each rank's failure flag: if any rank passes a `failure`, every rank
        raises (that rank its own error, the others `RankFailure` with the first failing rank's message)."""
        if len(values) > 14:
            raise VideoInfinityError("internal: signature too long")
        flag = 0 if failure is None else 1
        mine = torch.tensor([flag, len(values)] + [int(v) for v in values] + [0] * (14 - len(values)),
                            dtype=torch.int64, device=self.comm_device)
        everyone = [torch.empty_like(mine) for _ in range(self.size)]
        self.dist.all_gather(everyone, mine, group=self.group)
        rows = [tuple(e.tolist()) for e in everyone]
        failed = [rank for rank, row in enumerate(rows) if row[0]]
        if failed:
            messages = [None] * self.size
            self.dist.all_gather_object(messages, None if failure is None else f"{type(failure).__name__}: {failure}",
                                        group=self.group)
            raised = failure if failure is not None else RankFailure(
                f"rank {failed[0]} of {self.size} stopped the run: {messages[failed[0]]}")
            self._shared_failure = raised
            raise raised
        if any(row[1:] != rows[0][1:] for row in rows):
            raise VideoInfinityError(
                "the ranks called the model differently (per rank: batch rows, cond/uncond chunks, clip length, "
                f"clips): {[row[2:2 + row[1]] for row in rows]}. Every rank must run the same workflow with the "
                "same inputs; if ComfyUI batched cond and uncond differently because free memory differs, give "
                "the ranks equal devices")

    def share_failure(self, failure: BaseException) -> None:
        """Tell every rank that this one failed with `failure` (unless a collective already did): the other ranks
        raise `RankFailure` at their next agreement check. Returns; the caller re-raises `failure`."""
        if failure is self._shared_failure:
            return
        try:
            self.check_agreement((), failure)
        except BaseException as raised:          # noqa: BLE001 - this rank's own failure, which the caller raises
            if raised is not failure:
                raise

    def finish(self) -> None:
        """The last agreement check of a run, so that a rank failing after the last exchange still stops the others."""
        self.check_agreement(())

    def gather_to_first(self, tensor: torch.Tensor, sizes: list[int], dim: int = 0) -> torch.Tensor | None:
        """Rank 0 gets every rank's `tensor` (rank r's has `sizes[r]` entries along `dim`) concatenated in rank
        order; the other ranks get None."""
        most = max(sizes)
        buf = tensor.to(self.comm_device)
        if buf.shape[dim] < most:
            shape = list(buf.shape)
            shape[dim] = most - buf.shape[dim]
            buf = torch.cat([buf, buf.new_zeros(shape)], dim=dim)
        buf = buf.contiguous()
        if self.rank == 0:
            parts = [torch.empty_like(buf) for _ in range(self.size)]
            self.dist.gather(buf, gather_list=parts, dst=self._global_rank(0), group=self.group)
            return torch.cat([p.narrow(dim, 0, sizes[r]) for r, p in enumerate(parts)], dim=dim).to(tensor.device)
        self.dist.gather(buf, gather_list=None, dst=self._global_rank(0), group=self.group)
        return None

    def _global_rank(self, group_rank: int) -> int:
        if self.group is None:
            return group_rank
        return self.dist.get_global_rank(self.group, group_rank)


class RankFailure(RuntimeError):
    """Another rank's work raised; the message names the rank and its error."""


class DistributedEndpoint(Endpoint):
    def __init__(self, index, sizes, device, transport: DistributedTransport):
        super().__init__(index, sizes, device)
        self.transport = transport

    def all_gather(self, tensors):
        dist = self.transport.dist
        comm = self.transport.comm_device
        results = [[None] * len(tensors) for _ in self.sizes]
        by_dtype: dict[torch.dtype, list[int]] = {}
        for position, t in enumerate(tensors):
            by_dtype.setdefault(t.dtype, []).append(position)
        for dtype, positions in by_dtype.items():
            flat = torch.cat([tensors[p].reshape(-1) for p in positions]).to(comm).contiguous()
            everyone = [torch.empty_like(flat) for _ in self.sizes]
            dist.all_gather(everyone, flat, group=self.transport.group)
            self.transport.traffic.add(flat.numel() * flat.element_size(), len(self.sizes))
            for rank, buf in enumerate(everyone):
                offset = 0
                for p in positions:
                    n = tensors[p].numel()
                    results[rank][p] = buf[offset:offset + n].view(tensors[p].shape).to(self.device)
                    offset += n
        return results


# ---------------------------------------------------------------------------------------------------
# Device lists (the Apply node's `devices` input)
# ---------------------------------------------------------------------------------------------------

AUTO = "auto"
DISTRIBUTED = "distributed"
DISTRIBUTED_NEEDS_RANKS = ("devices: 'distributed' needs a torch.distributed process group with several ranks: run "
                           "the workflow with the pack's run.py under torchrun, or leave devices empty")
"""Why `devices = 'distributed'` cannot work without the runner (the nodes' validators and the FIFO sampler)."""


def parse_devices(spec: str | None):
    """`""`/"auto" -> AUTO (torch.distributed when the runner initialised it, else one in-process call),
    "distributed" -> DISTRIBUTED, otherwise a comma-separated list of torch devices (repeats allowed:
    "cpu,cpu" = two groups on the CPU) -> list[torch.device]. Raises VideoInfinityError for devices that do
    not exist on this machine."""
    text = (spec or "").strip()
    if text.lower() in ("", AUTO):
        return AUTO
    if text.lower() in (DISTRIBUTED, "dist", "torch.distributed"):
        return DISTRIBUTED
    devices = []
    for entry in text.replace(";", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            device = torch.device(entry)
        except (RuntimeError, ValueError) as error:
            raise VideoInfinityError(f"devices: '{entry}' is not a torch device name ({error})") from None
        problem = device_problem(device)
        if problem:
            raise VideoInfinityError(f"devices: {problem}")
        devices.append(device)
    if not devices:
        raise VideoInfinityError(f"devices: no device in '{spec}'")
    return devices


def device_problem(device: torch.device) -> str | None:
    """None if `device` exists here, else why not (with the devices that do exist)."""
    if device.type == "cpu":
        return None
    available = available_devices()
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"'{device}' does not exist: this machine has no CUDA device (available: {', '.join(available)})"
        if device.index is not None and device.index >= count:
            return f"'{device}' does not exist: there are {count} CUDA device(s) (available: {', '.join(available)})"
        return None
    if device.type == "mps":
        return None if torch.backends.mps.is_available() else f"'{device}' does not exist (available: {', '.join(available)})"
    if device.type == "xpu":
        ok = hasattr(torch, "xpu") and torch.xpu.is_available()
        count = torch.xpu.device_count() if ok else 0
        if not ok or (device.index is not None and device.index >= count):
            return f"'{device}' does not exist (available: {', '.join(available)})"
        return None
    return f"'{device}': device type '{device.type}' is not supported for clip groups (available: {', '.join(available)})"


def available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        names.append("mps")
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        names += [f"xpu:{i}" for i in range(torch.xpu.device_count())]
    return names


def resolve_transport(spec) -> Transport:
    """The transport for a parsed device spec (see `parse_devices`), decided when the model is called."""
    parsed = parse_devices(spec) if isinstance(spec, (str, type(None))) else spec
    if parsed == AUTO:
        return DistributedTransport() if distributed_ready() else InProcessTransport()
    if parsed == DISTRIBUTED:
        return DistributedTransport()
    return InProcessTransport(parsed)
