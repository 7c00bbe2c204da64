"""Live FIFO queue messages for the browser (web/js/fifo_infinity.js draws them on the FIFO nodes).

Event "fifo_infinity.queue", sent to the client that queued the prompt, at most every `interval` seconds
and always on the last iteration:
  node          the FIFO node to draw on (the all-in-one node, or the FIFO Sampler SAMPLER node)
  timesteps     [L] each queue slot's timestep (0-999), head first
  windows       [[start, end), ...] the queue slots of the windows in the model call running now
  popped_slot   the slot whose frame is output each iteration
  iteration, iterations, frames_done, frames_total, seconds_left
"""

from __future__ import annotations

import time


class QueueProgress:
    def __init__(self, node_id: str | None, timesteps: list[int], popped_slot: int, iterations: int,
                 frames_total: int, interval: float = 0.25):
        self.node_id = node_id
        self.timesteps = [int(t) for t in timesteps]
        self.popped_slot = popped_slot
        self.iterations = iterations
        self.frames_total = frames_total
        self.interval = interval
        self.started = time.monotonic()
        self.last_sent = 0.0
        self.server = None
        try:
            from server import PromptServer
            self.server = PromptServer.instance
        except Exception:   # no server (headless use of the nodes): nothing to send to
            self.server = None

    def payload(self, iteration: int, frames_done: int, windows) -> dict:
        elapsed = time.monotonic() - self.started
        done_fraction = (iteration + 1) / max(1, self.iterations)
        return {"node": self.node_id, "timesteps": self.timesteps, "windows": [list(w) for w in windows],
                "popped_slot": self.popped_slot, "iteration": iteration, "iterations": self.iterations,
                "frames_done": frames_done, "frames_total": self.frames_total,
                "seconds_left": elapsed / done_fraction - elapsed if done_fraction > 0 else None}

    def update(self, iteration: int, frames_done: int, windows=()) -> dict | None:
        """Send the state if `interval` has passed (or this is the last iteration); returns what was sent."""
        now = time.monotonic()
        last = iteration >= self.iterations - 1
        if self.server is None or self.node_id is None or (now - self.last_sent < self.interval and not last):
            return None
        self.last_sent = now
        message = self.payload(iteration, frames_done, windows)
        self.server.send_sync("fifo_infinity.queue", message, self.server.client_id)
        return message
