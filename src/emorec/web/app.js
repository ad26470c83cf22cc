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
  const segments = result.segments || [];
  const list = $("segments");
  list.replaceChildren(...segments.map((s) => {
    const item = document.createElement("li");
    item.textContent = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ${s.label} (${Math.round(100 * s.probabilities[s.label])} %)`;
    return item;
  }));
  $("timeline-block").hidden = segments.length === 0;
}

async function post(path, body, type) {
  const response = await fetch(path, { method: "POST", body, headers: type ? { "Content-Type": type } : {} });
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
  return data;
}

async function recognise(blob, type) {
  $("send").disabled = true;
  $("record-state").textContent = "Recognising…";
  try {
    const result = await post("/v1/predict", blob, type);
    render(result);
    renderTimeline(result);
    $("record-state").textContent = "";
  } catch (err) {
    showError(err.message);
    $("record-state").textContent = "";
  } finally {
    $("send").disabled = false;
  }
}

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) { showError("Choose a file first."); return; }
  const form = new FormData();
  form.append("file", file);
  recognise(form, null);
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

fetch("/v1/model").then((r) => r.json()).then((card) => { $("model").textContent = card.model_id; })
  .catch(() => { $("model").textContent = "unknown"; });
