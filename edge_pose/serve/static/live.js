// Live view: polls the newest frame (JPEG) and poses, draws skeletons on a canvas, shows stats.
// Polling (not EventSource) because EventSource cannot send the Authorization header a token needs.
// The token comes from the URL fragment (#token=...), which browsers never send to the server.
// After each draw the page writes what it drew into <body data-*> so tools (and tests) can read it.
"use strict";

const EDGE = [255, 0, 255];   // skeleton edges: pure magenta, rare in photos
const JOINT = [0, 255, 255];  // joints: cyan
const MIN_SCORE = Number(new URLSearchParams(location.search).get("min_score") || 0.3);
const PERIOD_MS = Number(new URLSearchParams(location.search).get("period_ms") || 200);
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const headers = token ? { Authorization: "Bearer " + token } : {};
const canvas = document.getElementById("view");
const ctx = canvas.getContext("2d", { willReadFrequently: true });
let skeleton = [];
let keypointNames = [];

function rgb(c) { return `rgb(${c[0]},${c[1]},${c[2]})`; }

async function getJSON(path) {
  const r = await fetch(path, { headers, cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function setMessage(text) { document.getElementById("message").textContent = text; }

function showStats(pose, health) {
  const rows = [];
  if (pose) {
    rows.push(["result", pose.seq], ["frame", pose.frame], ["people", pose.people.length],
              ["image", `${pose.image.width}x${pose.image.height}`]);
    for (const [stage, ms] of Object.entries(pose.timings_ms || {})) rows.push([stage + " ms", ms.toFixed(1)]);
  }
  if (health) {
    const s = health.source || {}, p = health.pipeline || {};
    rows.push(["source", `${s.state} (${s.kind})`], ["frames read", s.frames_read], ["frames dropped", s.frames_dropped],
              ["reconnects", s.reconnects], ["fps", p.fps]);
    for (const [name, st] of Object.entries(health.sinks || {})) {
      rows.push([name, st.connected === false ? "disconnected" : "ok"], [name + " dropped", st.dropped]);
    }
  }
  const body = document.querySelector("#stats tbody");
  body.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    for (const t of [k, v]) { const td = document.createElement("td"); td.textContent = t === undefined ? "" : String(t); tr.append(td); }
    return tr;
  }));
}

function countColour(c) {
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - c[0]) < 40 && Math.abs(data[i + 1] - c[1]) < 40 && Math.abs(data[i + 2] - c[2]) < 40) n++;
  }
  return n;
}

function draw(bitmap, pose) {
  if (bitmap && (canvas.width !== bitmap.width || canvas.height !== bitmap.height)) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  if (bitmap) ctx.drawImage(bitmap, 0, 0);
  let edges = 0, joints = 0;
  const scale = bitmap && pose ? canvas.width / pose.image.width : 1;
  ctx.lineWidth = Math.max(2, canvas.width / 160);
  ctx.lineCap = "round";
  for (const person of (pose ? pose.people : [])) {
    const kp = person.keypoints;
    ctx.strokeStyle = rgb(EDGE);
    for (const [a, b] of skeleton) {
      if (!kp[a] || !kp[b] || kp[a][2] < MIN_SCORE || kp[b][2] < MIN_SCORE) continue;
      ctx.beginPath();
      ctx.moveTo(kp[a][0] * scale, kp[a][1] * scale);
      ctx.lineTo(kp[b][0] * scale, kp[b][1] * scale);
      ctx.stroke();
      edges++;
    }
    ctx.fillStyle = rgb(JOINT);
    for (const [x, y, s] of kp) {
      if (s < MIN_SCORE) continue;
      ctx.beginPath();
      ctx.arc(x * scale, y * scale, ctx.lineWidth * 1.2, 0, 2 * Math.PI);
      ctx.fill();
      joints++;
    }
    if (person.id !== undefined) {
      ctx.fillStyle = "#fff";
      ctx.font = "14px sans-serif";
      ctx.fillText("#" + person.id, person.box[0] * scale + 4, person.box[1] * scale + 16);
    }
  }
  const d = document.body.dataset;
  d.state = "drawn";
  d.seq = pose ? pose.seq : "";
  d.people = pose ? pose.people.length : 0;
  d.edges = edges;
  d.joints = joints;
  d.skeletonPixels = countColour(EDGE);
  d.draws = Number(d.draws || 0) + 1;
}

async function frameBitmap() {
  const r = await fetch("/v1/frame.jpg", { headers, cache: "no-store" });
  if (!r.ok) throw new Error(`/v1/frame.jpg: HTTP ${r.status}`);
  return createImageBitmap(await r.blob());
}

async function tick() {
  try {
    if (!skeleton.length) await loadInfo();
    const [bitmap, pose] = await Promise.all([frameBitmap(), getJSON("/v1/poses/latest")]);
    draw(bitmap, pose);
    setMessage("");
    const health = await getJSON("/healthz").catch(e => null);
    if (health) {
      const h = document.getElementById("health");
      h.textContent = "health: " + health.status + (health.problems.length ? " (" + health.problems.join("; ") + ")" : "");
      h.className = health.status === "ok" ? "ok" : "bad";
    }
    showStats(pose, health);
  } catch (err) {
    document.body.dataset.state = "error";
    document.body.dataset.error = String(err.message || err);
    setMessage(String(err.message || err) + (String(err).includes("401") ? " (add #token=... to the URL)" : ""));
  }
  setTimeout(tick, PERIOD_MS);
}

async function loadInfo() {
  try {
    const info = await getJSON("/v1/info");
    skeleton = (info.model && info.model.skeleton) || [];
    keypointNames = (info.model && info.model.keypoints) || [];
    document.getElementById("model").textContent = "model: " + ((info.model && info.model.name) || "?");
    const b = info.backend || {};
    document.getElementById("backend").textContent =
      "backend: " + [b.backend, b.accelerator || b.device || b.delegate, b.execution_precision].filter(Boolean).join(" ");
  } catch (err) {
    setMessage(String(err.message || err));
  }
}

async function start() {
  await loadInfo();
  tick();
}

start();
