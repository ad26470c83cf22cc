// The emorec page: send a file or a microphone recording to /v1/predict, then draw the calibrated
// probabilities as bars. Long input comes back windowed over its speech: the answer is the
// duration-weighted mean of the segments listed under it, the same ones `emorec predict` gives.
// Plain JS, no build step, no CDN.
"use strict";
const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function render(result) {
  $("error").hidden = true;
  const entries = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  $("top-emotion").textContent = result.label;
  $("top-confidence").textContent = `(${Math.round(100 * result.probabilities[result.label])} %)`;
  const how = result.segments && result.segments.length
    ? ` · ${result.method} (${result.segments.length} segment${result.segments.length === 1 ? "" : "s"})` : "";
  $("duration").textContent = `${result.duration.toFixed(1)} s of audio · model ${result.model}${how}`;
  const bars = $("bars");
  bars.replaceChildren(...entries.map(([name, p]) => {
    const item = document.createElement("li");
    item.dataset.emotion = name;
    const label = document.createElement("span");
    label.textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", `${name} ${Math.round(100 * p)} percent`);
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.textContent = `${(100 * p).toFixed(1)} %`;
    item.append(label, bar, value);
    return item;
  }));
  $("result").hidden = false;
}

function renderTimeline(result) {
  $("whole-how").textContent = result.segments && result.segments.length
    ? `The answer above is the ${result.method} (${result.segments.length} segments), not the clip model over the whole file.`
    : "The answer above is the model on the whole clip; its speech segments are below.";
}

// ---- Files: a player, a colour band of segments (choose one to hear it), downloads.
let playUntil = null;
function playSegment(start, end) {
  const player = $("player");
  player.currentTime = start;
  playUntil = end;
  player.play().catch((err) => showError(`Cannot play: ${err.message}`));
}
$("player").addEventListener("timeupdate", () => {
  if (playUntil !== null && $("player").currentTime >= playUntil) { $("player").pause(); playUntil = null; }
});

function download(id, name, text, type) {
  const link = $(id);
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
}

function vttTime(seconds) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, w) => String(n).padStart(w, "0");
  return `${pad(Math.floor(ms / 3600000), 2)}:${pad(Math.floor(ms / 60000) % 60, 2)}:${pad(Math.floor(ms / 1000) % 60, 2)}.${pad(ms % 1000, 3)}`;
}

function renderFileTimeline(timeline, audio, result) {
  const segments = timeline.segments || [];
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = audio instanceof Blob ? URL.createObjectURL(audio) : "";
  const band = $("file-band");
  const duration = Math.max(timeline.duration, 1e-3);
  band.replaceChildren(...segments.map((s) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "segment";
    button.style.left = `${(100 * s.start) / duration}%`;
    button.style.width = `${(100 * (s.end - s.start)) / duration}%`;
    button.style.background = COLOURS[s.label] || "#adb5bd";
    const detail = Object.entries(s.probabilities).sort((a, b) => b[1] - a[1])
      .map(([name, p]) => `${name} ${Math.round(100 * p)} %`).join(", ");
    button.title = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ${detail}`;
    button.setAttribute("aria-label", `play ${s.start.toFixed(1)} to ${s.end.toFixed(1)} seconds: ${detail}`);
    button.addEventListener("click", () => playSegment(s.start, s.end));
    return button;
  }));
  $("legend").replaceChildren(...timeline.classes.map((name) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[name] || "#adb5bd";
    item.append(swatch, document.createTextNode(name));
    return item;
  }));
  $("segments").replaceChildren(...segments.map((s) => {
    const item = document.createElement("li");
    item.textContent = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ${s.label} (${Math.round(100 * s.probabilities[s.label])} %)`;
    return item;
  }));
  const csv = [["start", "end", "label", ...timeline.classes].join(",")].concat(segments.map((s) =>
    [s.start.toFixed(3), s.end.toFixed(3), s.label, ...timeline.classes.map((c) => s.probabilities[c].toFixed(5))].join(",")));
  const vtt = ["WEBVTT", "", `NOTE emotion captions by emorec (${timeline.model}), calibrated probabilities`, ""];
  segments.forEach((s, i) => vtt.push(String(i + 1), `${vttTime(s.start)} --> ${vttTime(s.end)}`,
    `${s.label} (${Math.round(100 * s.probabilities[s.label])}%)`, ""));
  download("download-csv", "timeline.csv", `${csv.join("\n")}\n`, "text/csv");
  download("download-json", "timeline.json", JSON.stringify({ ...timeline, answer: result }, null, 1), "application/json");
  download("download-vtt", "timeline.vtt", vtt.join("\n"), "text/vtt");
  $("timeline-block").hidden = false;
}

async function post(path, body, type) {
  const response = await fetch(path, { method: "POST", body, headers: type ? { "Content-Type": type } : {} });
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
  return data;
}

async function recognise(blob, type, audio) {
  $("send").disabled = true;
  $("record-state").textContent = "Recognising…";
  try {
    // one request: the whole-file answer (for long input: the speech-weighted mean of its segments) and its timeline
    const result = await post("/v1/predict?timeline=true", blob, type);
    const { timeline } = result;
    delete result.timeline;
    render(result);
    renderTimeline(result);
    renderFileTimeline(timeline, audio || blob, result);
    $("record-state").textContent = "";
  } catch (err) {
    showError(err.message);
    $("record-state").textContent = "";
  } finally {
    $("send").disabled = false;
  }
}

function sendFile(file) {
  const form = new FormData();
  form.append("file", file);
  recognise(form, null, file);
}

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) { showError("Choose a file first."); return; }
  sendFile(file);
});

const drop = $("upload-form");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) sendFile(file);
});

let recorder = null;
$("record").addEventListener("click", async () => {
  const button = $("record");
  if (recorder && recorder.state === "recording") { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
    recorder.onstop = () => {
      stream.getTracks().forEach((track) => track.stop());
      button.textContent = "Record from microphone";
      button.setAttribute("aria-pressed", "false");
      const type = recorder.mimeType || "audio/webm";
      recognise(new Blob(chunks, { type }), type.split(";")[0]);
    };
    recorder.start();
    button.textContent = "Stop and recognise";
    button.setAttribute("aria-pressed", "true");
    $("record-state").textContent = "Recording… press again to stop.";
  } catch (err) {
    showError(`Microphone unavailable: ${err.message}`);
  }
});

fetch("/v1/model").then((r) => r.json()).then((card) => {
  $("model").textContent = card.model_id;
  $("about-classes").textContent = `Labels: ${card.classes.join(", ")} · ${card.sample_rate} Hz`;
  $("about-limits").textContent = `Uploads up to ${Math.round(card.limits.max_bytes / 1e6)} MB and `
    + `${Math.round(card.limits.max_seconds)} s; over ${card.limits.windowed_above_seconds} s the answer is windowed over the speech.`;
  $("about-card").textContent = card.card_markdown || "This model has no card.";
})
  .catch(() => { $("model").textContent = "unknown"; });

// ---- Live: the microphone at 16 kHz, 100 ms PCM16 blocks over WS /v1/stream, updates as they come.
const COLOURS = { neutral: "#8d99ae", calm: "#90be6d", happy: "#f9c74f", sad: "#577590", angry: "#d62828",
  fearful: "#9b5de5", disgust: "#6a994e", surprised: "#f3722c" };
const live = { socket: null, context: null, stream: null, pending: [], pendingSize: 0, sent: [] };
window.emorecLive = live;  // what was sent, for checking the timeline against the same audio

function bandSpan(start, end, label, probability, final) {
  const span = document.createElement("span");
  span.className = final ? "final" : "interim";
  span.style.background = COLOURS[label] || "#adb5bd";
  span.dataset.start = start;
  span.dataset.width = end - start;
  span.title = `${start.toFixed(1)}–${end.toFixed(1)} s: ${label} (${Math.round(100 * probability)} %)`;
  span.textContent = label;
  return span;
}

function layoutBand(band) {
  const spans = [...band.children];
  const total = Math.max(10, ...spans.map((s) => Number(s.dataset.start) + Number(s.dataset.width)));
  const from = Math.max(0, total - 30);  // the last 30 s scroll by
  for (const s of spans) {
    s.style.left = `${(100 * (Number(s.dataset.start) - from)) / (total - from)}%`;
    s.style.width = `${(100 * Number(s.dataset.width)) / (total - from)}%`;
    s.hidden = Number(s.dataset.start) + Number(s.dataset.width) < from;
  }
}

function onLiveUpdate(update) {
  const band = $("live-band");
  if (update.type === "window") {
    $("live-now").textContent = update.label;
    $("live-now-confidence").textContent = `(${Math.round(100 * update.probabilities[update.label])} %)`;
    $("live-now-line").hidden = false;
    band.append(bandSpan(Math.max(update.start, update.end - 1), update.end, update.label,
      update.probabilities[update.label], false));
  } else if (update.type === "segments") {
    for (const s of band.querySelectorAll(".interim")) {
      if (Number(s.dataset.start) < update.end + 1 && Number(s.dataset.start) >= update.start - 1) s.remove();
    }
    for (const s of update.segments) band.append(bandSpan(s.start, s.end, s.label, s.probabilities[s.label], true));
  } else if (update.type === "end") {
    live.timeline = update.timeline;
    renderLiveTimeline(update.timeline);
  } else if (update.type === "speech_start") {
    $("live-state").textContent = "Hearing speech…";
  }
  layoutBand(band);
}

function renderLiveTimeline(timeline) {
  const list = $("live-segments");
  list.replaceChildren(...timeline.segments.map((s) => {
    const item = document.createElement("li");
    item.textContent = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ${s.label} (${Math.round(100 * s.probabilities[s.label])} %)`;
    return item;
  }));
  $("live-timeline-block").hidden = false;
  $("live-state").textContent = `${timeline.duration.toFixed(1)} s listened · ${timeline.segments.length} segment(s)`;
}

function sendBlock(force) {
  if (!live.pendingSize || (!force && live.pendingSize < 1600)) return;
  const block = new Int16Array(live.pendingSize);
  let at = 0;
  for (const part of live.pending) {
    for (let i = 0; i < part.length; i += 1) block[at + i] = Math.max(-32768, Math.min(32767, Math.round(part[i] * 32767)));
    at += part.length;
  }
  live.pending = [];
  live.pendingSize = 0;
  live.sent.push(block);
  if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(block.buffer);
}

async function startLive() {
  $("error").hidden = true;
  $("live-band").replaceChildren();
  $("live-timeline-block").hidden = true;
  live.sent = [];
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  live.socket = new WebSocket(`${scheme}://${location.host}/v1/stream?format=pcm16&sample_rate=16000`);
  live.socket.onmessage = (event) => onLiveUpdate(JSON.parse(event.data));
  await new Promise((resolve, reject) => {  // every block sent is one the server hears
    live.socket.onopen = resolve;
    live.socket.onerror = () => reject(new Error("the server's live stream could not be opened"));
  });
  live.socket.onclose = (event) => {
    if (event.code !== 1000) showError(`Live stream closed: ${event.reason || `code ${event.code}`}`);
    stopCapture();
  };
  live.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  live.context = new AudioContext({ sampleRate: 16000 });
  await live.context.audioWorklet.addModule("/static/live-worklet.js");
  const source = live.context.createMediaStreamSource(live.stream);
  const capture = new AudioWorkletNode(live.context, "emorec-capture");
  capture.port.onmessage = (event) => {
    live.pending.push(event.data);
    live.pendingSize += event.data.length;
    sendBlock(false);
  };
  source.connect(capture);
  $("live").textContent = "Stop";
  $("live").setAttribute("aria-pressed", "true");
  $("live-state").textContent = "Listening… speak now.";
}

function stopCapture() {
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  if (live.context) live.context.close();
  live.stream = null;
  live.context = null;
  $("live").textContent = "Start live";
  $("live").setAttribute("aria-pressed", "false");
}

$("live").addEventListener("click", async () => {
  if (live.stream) {
    sendBlock(true);
    stopCapture();
    $("live-state").textContent = "Finishing…";
    if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify({ type: "end" }));
    return;
  }
  try {
    await startLive();
  } catch (err) {
    stopCapture();
    showError(`Live listening unavailable: ${err.message}`);
  }
});
