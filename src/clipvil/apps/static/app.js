// clipvil serve's page: pick or upload an image, ask; each served part fills its own box.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { blob: null, name: null, info: null, token: 0 };

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return `${response.status}: ${body.detail}`;
    if (Array.isArray(body.detail)) return `${response.status}: ${body.detail.map((d) => d.msg).join("; ")}`;
  } catch (e) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

function form(fields) {
  const data = new FormData();
  data.append("image", state.blob, state.name || "image");
  for (const [k, v] of Object.entries(fields)) data.append(k, v);
  return data;
}

async function post(path, fields) {
  const t0 = performance.now();
  const response = await fetch(path, { method: "POST", body: form(fields) });
  const roundTrip = performance.now() - t0;
  if (!response.ok) throw new Error(await errorText(response));
  return { response, roundTrip };
}

function timeText(serverMs, roundTripMs) {
  return `${Math.round(serverMs)} ms model · ${Math.round(roundTripMs)} ms round trip`;
}

function chooseImage(blob, name, question, phrase) {
  state.blob = blob;
  state.name = name;
  state.token += 1;
  const url = URL.createObjectURL(blob);
  const img = $("preview");
  img.onload = () => URL.revokeObjectURL(url);
  img.src = url;
  img.hidden = false;
  $("boxes").hidden = true;
  if (question) $("question").value = question;
  if (phrase) $("phrase").value = phrase;
  $("ask").disabled = false;
  for (const id of ["answers", "caption", "notes"]) $(id).textContent = "";
  $("grounding").textContent = "the box is drawn on the image";
  $("heatmap").hidden = true;
  if (state.info.parts.caption) runCaption(state.token);
}

async function runCaption(token) {
  $("caption").textContent = "…";
  try {
    const { response, roundTrip } = await post("/api/caption", {});
    const body = await response.json();
    if (token !== state.token) return;
    $("caption").textContent = body.caption;
    $("caption-time").textContent = timeText(body.elapsed_ms, roundTrip);
  } catch (err) {
    if (token === state.token) $("caption").textContent = String(err.message);
  }
}

async function runVqa(question, token) {
  const { response, roundTrip } = await post("/api/vqa", { question, top_k: "5" });
  const body = await response.json();
  if (token !== state.token) return;
  const list = $("answers");
  list.textContent = "";
  for (const { answer, score } of body.answers) {
    const li = document.createElement("li");
    const name = document.createElement("strong");
    name.textContent = answer;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(2, Math.round(score * 160))}px`;
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = score.toFixed(3);
    li.append(name, bar, value);
    list.append(li);
  }
  $("notes").textContent = body.notes.join("; ");
  $("vqa-time").textContent = timeText(body.elapsed_ms, roundTrip);
}

async function runExplain(question, token) {
  const { response, roundTrip } = await post("/api/explain", { question });
  const blob = await response.blob();
  if (token !== state.token) return;
  const img = $("heatmap");
  const url = URL.createObjectURL(blob);
  img.onload = () => URL.revokeObjectURL(url);
  img.src = url;
  img.hidden = false;
  img.dataset.answer = decodeURIComponent(response.headers.get("X-Answer") || "");
  $("explain-time").textContent = timeText(Number(response.headers.get("X-Elapsed-Ms")), roundTrip);
}

function drawBox(box, size) {
  const img = $("preview");
  const canvas = $("boxes");
  canvas.width = img.clientWidth;
  canvas.height = img.clientHeight;
  canvas.hidden = false;
  const sx = img.clientWidth / size[0];
  const sy = img.clientHeight / size[1];
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "lime";
  ctx.lineWidth = 3;
  ctx.strokeRect(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy);
}

async function runGrounding(phrase, token) {
  const { response, roundTrip } = await post("/api/ground", { phrase });
  const body = await response.json();
  if (token !== state.token) return;
  drawBox(body.box, body.image_size);
  const where = body.box.map((v) => Math.round(v)).join(", ");
  const notes = body.notes.length ? ` — ${body.notes.join("; ")}` : "";
  $("grounding").textContent = `“${phrase}”: box [x, y, w, h] = [${where}], cell probability ${body.score.toFixed(3)}${notes}`;
  $("grounding-time").textContent = timeText(body.elapsed_ms, roundTrip);
}

async function ask(event) {
  event.preventDefault();
  const parts = state.info.parts;
  const question = parts.vqa ? $("question").value.trim() : "";
  const phrase = parts.grounding ? $("phrase").value.trim() : "";
  if (!state.blob || (!question && !phrase)) {
    setStatus(parts.vqa ? "choose an image and type a question" : "choose an image and type a phrase", true);
    return;
  }
  const token = state.token;
  setStatus("thinking…", false);
  const jobs = [];  // sent in this order: the quick answers first, the Grad-CAM map (slowest) last
  if (question) jobs.push(runVqa(question, token));
  if (phrase) jobs.push(runGrounding(phrase, token));
  if (question) jobs.push(runExplain(question, token));
  const results = await Promise.allSettled(jobs);
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  if (token !== state.token) return;
  setStatus(failed.length ? failed.join(" · ") : "done", failed.length > 0);
}

async function loadSample(sample, button) {
  const response = await fetch(sample.url);
  const blob = await response.blob();
  for (const b of document.querySelectorAll(".samples button")) b.classList.remove("chosen");
  button.classList.add("chosen");
  chooseImage(blob, sample.name, sample.question, sample.phrase);
  setStatus(`sample ${sample.name} — the scene's answer: ${sample.answer}`, false);
}

async function start() {
  const response = await fetch("/api/info");
  state.info = await response.json();
  $("version").textContent = `clipvil ${state.info.version}`;
  const parts = state.info.parts;
  $("vqa-part").hidden = !parts.vqa;
  $("explain-part").hidden = !parts.vqa;
  $("caption-part").hidden = !parts.caption;
  $("grounding-part").hidden = !parts.grounding;
  $("phrase-row").hidden = !parts.grounding;
  $("question").hidden = !parts.vqa;
  for (const sample of state.info.samples) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = sample.question;
    const img = document.createElement("img");
    img.src = sample.url;
    img.alt = sample.name;
    button.append(img);
    button.addEventListener("click", () => loadSample(sample, button));
    $("samples").append(button);
  }
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (!file) return;
    if (file.size > state.info.limits.max_upload_bytes) {
      setStatus(`${file.name}: larger than the ${state.info.limits.max_upload_bytes} byte limit`, true);
      return;
    }
    for (const b of document.querySelectorAll(".samples button")) b.classList.remove("chosen");
    chooseImage(file, file.name, null, null);
    setStatus(`${file.name} (${Math.round(file.size / 1024)} KB)`, false);
  });
  $("ask-form").addEventListener("submit", ask);
  setStatus(`ready: ${Object.keys(parts).filter((k) => parts[k]).join(", ") || "no model"}`, false);
}

start().catch((err) => setStatus(`cannot reach the server: ${err.message}`, true));
