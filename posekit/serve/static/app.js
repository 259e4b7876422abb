// posekit's page: send an image (or webcam frames) to POST /v1/pose, draw the skeleton on a
// canvas over it and list the 14 joints. Plain JavaScript, no libraries, no network but this server.
"use strict";
const COLORS = { left: "#3182ce", right: "#e53e3e", center: "#38a169" };
const $ = (id) => document.getElementById(id);
const imageCanvas = $("image"), overlay = $("overlay"), video = $("video"), statusEl = $("status");
let skeleton = null, stream = null, busy = false;

async function init() {
  skeleton = await (await fetch("/v1/skeleton")).json();
  const models = await (await fetch("/v1/models")).json();
  $("model").textContent = `${models.loaded.name} (${models.loaded.backend})`;
}

function setStatus(text, isError) {
  statusEl.textContent = text;
  statusEl.className = isError ? "error" : "";
}

function drawImage(source, w, h) {
  for (const c of [imageCanvas, overlay]) { c.width = w; c.height = h; }
  imageCanvas.getContext("2d").drawImage(source, 0, 0, w, h);
  overlay.getContext("2d").clearRect(0, 0, w, h);
}

function drawPose(result) {
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  const j = result.joints, s = Math.max(overlay.width, overlay.height);
  ctx.lineWidth = Math.max(2, s / 120);
  ctx.lineCap = "round";
  for (const [a, b] of skeleton.limbs) {
    const sa = skeleton.sides[a], sb = skeleton.sides[b];
    ctx.strokeStyle = COLORS[sa === sb ? sa : "center"];
    ctx.beginPath(); ctx.moveTo(j[a].x, j[a].y); ctx.lineTo(j[b].x, j[b].y); ctx.stroke();
  }
  j.forEach((p, i) => {
    ctx.fillStyle = COLORS[skeleton.sides[i]];
    ctx.beginPath(); ctx.arc(p.x, p.y, Math.max(2.5, s / 90), 0, 2 * Math.PI); ctx.fill();
  });
}

function fillTable(result) {
  const body = document.querySelector("#joints tbody");
  body.replaceChildren(...result.joints.map((p) => {
    const tr = document.createElement("tr");
    for (const v of [p.name, p.x.toFixed(1), p.y.toFixed(1), p.score.toFixed(2)]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
}

async function sendBlob(blob, name) {
  const form = new FormData();
  form.append("image", blob, name);
  const t0 = performance.now();
  const r = await fetch("/v1/pose", { method: "POST", body: form });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : `HTTP ${r.status}`);
  body.roundTripMs = performance.now() - t0;
  return body;
}

$("file").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  if (stream) stopWebcam();
  try {
    const bitmap = await createImageBitmap(file);
    drawImage(bitmap, bitmap.width, bitmap.height);
    setStatus("Estimating…");
    const result = await sendBlob(file, file.name);
    drawPose(result);
    fillTable(result);
    setStatus(`${file.name}: ${result.width}×${result.height}, server ${result.latency_ms} ms, round trip ${result.roundTripMs.toFixed(0)} ms`);
  } catch (e) {
    setStatus(`Could not estimate the pose: ${e.message}`, true);
  }
});

async function webcamLoop() {
  if (!stream) return;
  if (!busy && video.videoWidth) {
    busy = true;
    const w = video.videoWidth, h = video.videoHeight;
    drawImage(video, w, h);
    imageCanvas.toBlob(async (blob) => {
      try {
        const result = await sendBlob(blob, "frame.jpg");
        if (stream) { drawPose(result); fillTable(result); setStatus(`webcam: server ${result.latency_ms} ms`); }
      } catch (e) {
        setStatus(`webcam: ${e.message}`, true);
      } finally {
        busy = false;
      }
    }, "image/jpeg", 0.85);
  }
  requestAnimationFrame(webcamLoop);
}

function stopWebcam() {
  stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("webcam").textContent = "Start webcam";
  $("webcam").classList.remove("on");
}

$("webcam").addEventListener("click", async () => {
  if (stream) { stopWebcam(); return; }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    setStatus(`Webcam unavailable: ${e.message}`, true);
    return;
  }
  video.srcObject = stream;
  await video.play();
  $("webcam").textContent = "Stop webcam";
  $("webcam").classList.add("on");
  webcamLoop();
});

init().catch((e) => setStatus(`Cannot reach the pose service: ${e.message}`, true));
