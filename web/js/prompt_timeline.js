// FIFO-Infinity prompt-schedule editor: on every FIFO Prompt Schedule node, a timeline of the whole chain of
// prompts (first to last), one segment per prompt with its text and frame count, the transitions as blends,
// and the total length in frames and seconds at the fps of the FIFO sampler the chain feeds (8 if it has none).
// Drag the boundary at the end of a segment to change that prompt's frame count (its node's `frames` widget);
// the widget is display-only and adds nothing to the saved workflow or the prompt. It is a DOM widget
// (display_widget.js): the same element shows in the classic canvas and in the Vue "Nodes 2.0" renderer, and
// it repaints itself when the chain changes (another node's frames, a prompt text, a new link).
import { app } from "../../../scripts/app.js";
import { addDisplayWidget } from "./display_widget.js";

const SCHEDULE_NODE = "FIFOInfinityFIFOPromptSchedule";
const WIDGET = "fifo_prompt_timeline";
const DEFAULT_FPS = 8;
const MARGIN = 4, BAR_HEIGHT = 34, HEIGHT = 70, GRAB_PIXELS = 6;
const SEGMENT_COLORS = ["#3d6fb6", "#b6703d", "#4f9a5b", "#8c57b0", "#b0a13d", "#3da5b0"];

function widgetValue(node, name) {
  return node?.widgets?.find((w) => w.name === name)?.value;
}

function inputNode(node, name) {
  const slot = node?.findInputSlot?.(name);
  return slot === undefined || slot < 0 ? null : node.getInputNode(slot);
}

function targets(node) {
  const out = [];
  const graph = node?.graph ?? app.graph;
  for (const output of node?.outputs ?? []) {
    for (const linkId of output.links ?? []) {
      const link = graph.links instanceof Map ? graph.links.get(linkId) : graph.links[linkId];
      const target = link && graph.getNodeById(link.target_id);
      if (target) out.push(target);
    }
  }
  return out;
}

// The prompt text feeding a schedule node: the nearest upstream node with a `text` widget (CLIPTextEncode),
// following the first input at each step; the node's title otherwise.
function promptText(node) {
  let current = inputNode(node, "conditioning");
  for (let depth = 0; current && depth < 6; depth++) {
    const text = widgetValue(current, "text");
    if (typeof text === "string") return text || "(empty prompt)";
    current = current.inputs?.length ? current.getInputNode(0) : null;
  }
  return current?.title ?? "(not connected)";
}

// The chain of schedule nodes through `node`, first prompt first, and the fps of the sampler it feeds.
export function collectSchedule(node) {
  let first = node;
  const seen = new Set([node.id]);
  for (let up = inputNode(first, "previous"); up && up.type === SCHEDULE_NODE && !seen.has(up.id); up = inputNode(first, "previous")) {
    seen.add(up.id);
    first = up;
  }
  const chain = [first];
  for (let next = targets(first).find((t) => t.type === SCHEDULE_NODE); next && !chain.includes(next);
       next = targets(next).find((t) => t.type === SCHEDULE_NODE)) {
    chain.push(next);
  }
  const consumers = targets(chain[chain.length - 1]).filter((t) => t.type !== SCHEDULE_NODE);
  const fpsNode = consumers.find((t) => typeof widgetValue(t, "fps") === "number");
  const fps = fpsNode ? widgetValue(fpsNode, "fps") : DEFAULT_FPS;
  const segments = [];
  let start = 0;
  chain.forEach((n, index) => {
    const frames = Math.max(1, Number(widgetValue(n, "frames")) || 1);
    const transition = index === 0 ? 0 : Math.max(0, Number(widgetValue(n, "transition")) || 0);
    segments.push({ node: n.id, text: promptText(n), frames, transition, start });
    start += frames;
  });
  return { segments, total: start, fps, seconds: start / fps, fps_from_sampler: !!fpsNode };
}

function layout(schedule, width) {
  const usable = width - 2 * MARGIN;
  const perFrame = usable / Math.max(1, schedule.total);
  return { perFrame, x: (frame) => MARGIN + frame * perFrame };
}

// The x position (widget CSS pixels, from its left edge) of frame `frame` of the chain through `node` in a
// timeline `width` pixels wide.
export function frameX(node, frame, width) {
  return layout(collectSchedule(node), width).x(frame);
}

function clipText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let cut = text;
  while (cut.length > 1 && ctx.measureText(cut + "…").width > width) cut = cut.slice(0, -1);
  return cut.length > 1 ? cut + "…" : "";
}

function drawTimeline(ctx, node, width, schedule) {
  const { perFrame, x } = layout(schedule, width);
  ctx.fillStyle = "#0d1420";
  ctx.fillRect(MARGIN, 0, width - 2 * MARGIN, HEIGHT);
  ctx.font = "11px sans-serif";
  schedule.segments.forEach((segment, index) => {
    const left = x(segment.start), segmentWidth = segment.frames * perFrame;
    ctx.fillStyle = SEGMENT_COLORS[index % SEGMENT_COLORS.length];
    ctx.globalAlpha = segment.node === node.id ? 1.0 : 0.55;
    ctx.fillRect(left, 4, Math.max(1, segmentWidth - 1), BAR_HEIGHT);
    if (segment.transition > 0 && index > 0) {   // the blend from the previous prompt over `transition` frames
      const previous = SEGMENT_COLORS[(index - 1) % SEGMENT_COLORS.length];
      const blend = ctx.createLinearGradient(left, 0, left + segment.transition * perFrame, 0);
      blend.addColorStop(0, previous);
      blend.addColorStop(1, SEGMENT_COLORS[index % SEGMENT_COLORS.length]);
      ctx.fillStyle = blend;
      ctx.fillRect(left, 4, Math.min(segmentWidth - 1, segment.transition * perFrame), BAR_HEIGHT);
    }
    ctx.globalAlpha = 1.0;
    ctx.fillStyle = "#ffffff";
    ctx.fillText(clipText(ctx, segment.text, segmentWidth - 6), left + 3, 18);
    ctx.fillText(clipText(ctx, `${segment.frames} f`, segmentWidth - 6), left + 3, 32);
    ctx.fillStyle = "#ffd24a";                  // the draggable boundary at the segment's end
    ctx.fillRect(left + segmentWidth - 2, 4, 2, BAR_HEIGHT);
  });
  ctx.fillStyle = "#dde6f5";
  ctx.font = "12px sans-serif";
  const source = schedule.fps_from_sampler ? "" : " (no sampler fps: default)";
  ctx.fillText(`${schedule.segments.length} prompts · ${schedule.total} frames · ` +
               `${schedule.seconds.toFixed(1)} s at ${schedule.fps} fps${source}`, MARGIN + 4, HEIGHT - 12);
}

// Index of the segment whose end boundary is under `x` (widget CSS pixels), or -1.
export function boundaryAt(node, x, widgetWidth) {
  const schedule = collectSchedule(node);
  const { x: toX } = layout(schedule, widgetWidth);
  return schedule.segments.findIndex((s) => Math.abs(toX(s.start + s.frames) - x) <= GRAB_PIXELS);
}

function setFrames(graph, nodeId, frames) {
  const target = graph.getNodeById(nodeId);
  const widget = target?.widgets?.find((w) => w.name === "frames");
  if (!widget) return;
  const { min, max } = widget.options ?? {};
  if (typeof max === "number") frames = Math.min(frames, max);
  if (typeof min === "number") frames = Math.max(frames, min);
  if (widget.value === frames) return;
  widget.value = frames;
  widget.callback?.(frames, app.canvas, target);
  target.setDirtyCanvas?.(true, true);
}

function addTimelineWidget(node) {
  let drag = null;   // { node, start, perFrame, pointer } while a boundary is being dragged
  const onPointer = (event, x, y, view) => {
    const width = view.element.clientWidth;
    if (event.type === "pointerdown") {
      if (event.button !== 0) return false;
      const index = boundaryAt(node, x, width);
      if (index < 0) return false;
      const schedule = collectSchedule(node);
      const segment = schedule.segments[index];
      drag = { node: segment.node, start: segment.start, perFrame: layout(schedule, width).perFrame, pointer: event.pointerId };
      view.canvas.setPointerCapture?.(event.pointerId);
      return true;
    }
    if (!drag) {
      if (event.type === "pointermove") view.canvas.style.cursor = boundaryAt(node, x, width) >= 0 ? "ew-resize" : "";
      return false;
    }
    if (event.type !== "pointercancel") {   // a cancelled drag keeps the frames of its last move
      setFrames(node.graph ?? app.graph, drag.node, Math.max(1, Math.round((x - MARGIN) / drag.perFrame - drag.start)));
      view.refresh();
    }
    if (event.type === "pointerup" || event.type === "pointercancel") {
      view.canvas.releasePointerCapture?.(drag.pointer);
      drag = null;
    }
    return true;
  };
  addDisplayWidget(node, {
    name: WIDGET,
    height: HEIGHT + 4,
    paint: (ctx, width) => drawTimeline(ctx, node, width, collectSchedule(node)),
    signature: () => JSON.stringify(collectSchedule(node)),
    follow: true,
    onPointer,
  });
  node.setSize([Math.max(node.size[0], 420), node.computeSize()[1]]);
}

app.registerExtension({
  name: "fifo_infinity.prompt_timeline",

  async setup() {
    window.fifoInfinity = { ...(window.fifoInfinity ?? {}), collectSchedule, boundaryAt, frameX };
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== SCHEDULE_NODE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addTimelineWidget(this);
      return result;
    };
  },
});
