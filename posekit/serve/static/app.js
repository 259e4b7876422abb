// posekit's page: send an image (or webcam frames) to POST /v1/pose, draw every person's skeleton
// on a canvas over it, with a legend, and list the joints. Limbs, colours and the low-confidence
// threshold come from GET /v1/skeleton. Plain JavaScript, no libraries, no network but this server.
"use strict";
const $ = (id) => document.getElementById(id);
const imageCanvas = $("image"), overlay = $("overlay"), video = $("video"), statusEl = $("status");
const tableHead = document.querySelector("#joints thead tr"), tableBody = document.querySelector("#joints tbody");
const defaultHead = [...tableHead.children].map((th) => th.textContent);
let skeleton = null, stream = null, busy = false;
let ticket = 0; // bumped by every new upload or webcam start; an answer for an older ticket is dropped

async function getJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

async function init() {
  skeleton = await getJson("/v1/skeleton");
  drawLegend([]);
  const models = await getJson("/v1/models");
  $("model").textContent = `${models.loaded.name} (${models.loaded.backend})`;
}
const ready = init();
ready.catch((e) => setStatus(`Cannot reach the pose service: ${e.message}`, true));

function setStatus(text, isError) {
  statusEl.textContent = text;
  statusEl.className = isError ? "error" : "";
}

const num = (v, digits) => (Number.isFinite(v) ? v.toFixed(digits) : "–");
// A score and the threshold it is held to, as posekit predict prints them: 2 decimals, or as many
// more (up to 4) as it takes for a score under the threshold to read as under it (0.3152 against
// 0.32: "0.315" and "0.32", not "0.32" and "0.32"), the threshold's trailing zeros dropped past 2.
function scoreAgainst(score, threshold) {
  if (!Number.isFinite(score) || !Number.isFinite(threshold)) return [num(score, 2), num(threshold, 2)];
  let d = 2;
  while (d < 4 && (Number(score.toFixed(d)) < Number(threshold.toFixed(d))) !== (score < threshold)) d += 1;
  const t = threshold.toFixed(d);
  return [score.toFixed(d), t.slice(0, t.length - d + 2) + t.slice(t.length - d + 2).replace(/0+$/, "")];
}
const isLow = (joint) => !(joint.score >= skeleton.low_score);
// a person's number is the answer's own "person" (0, 1, ...: the API's and the CLI's numbering)
const personIndex = (person, i) => (Number.isInteger(person.person) ? person.person : i);
const personColor = (person, i) => skeleton.person_colors[personIndex(person, i) % skeleton.person_colors.length];

// The people in an answer of POST /v1/pose. An older server's answer (joints at the top level,
// no "people") counts as one person found.
function peopleOf(result) {
  if (Array.isArray(result.people)) return result.people;
  return Array.isArray(result.joints) ? [{ person: 0, score: null, box: null, joints: result.joints }] : [];
}

function drawImage(source, w, h) {
  for (const c of [imageCanvas, overlay]) if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  $("stage").style.setProperty("--aspect", w / h); // a tall image is shown smaller (style.css)
  imageCanvas.getContext("2d").drawImage(source, 0, 0, w, h);
}

// One person: limbs and joints coloured by side. Several: each person's limbs (and box) in its own
// colour, joints still by side. A low-score joint is a hollow ring; its limbs are thin, dashed and
// stop at the ring.
function drawPoses(people) {
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  const s = Math.max(overlay.width, overlay.height), several = people.length > 1;
  const lw = Math.max(2, s / 120), r = Math.max(2.5, s / 90), ring = Math.max(1.5, r / 3);
  const ok = (p) => Number.isFinite(p.x) && Number.isFinite(p.y);
  ctx.lineCap = "round";
  people.forEach((person, i) => {
    const own = personColor(person, i), j = person.joints;
    if (person.box) {
      ctx.setLineDash([]);
      ctx.lineWidth = Math.max(1, s / 400);
      ctx.strokeStyle = own;
      ctx.strokeRect(...person.box);
    }
    for (const [a, b] of skeleton.limbs) {
      if (!ok(j[a]) || !ok(j[b])) continue;
      const sa = skeleton.sides[a], sb = skeleton.sides[b], la = isLow(j[a]), lb = isLow(j[b]);
      const dx = j[b].x - j[a].x, dy = j[b].y - j[a].y, n = Math.hypot(dx, dy);
      const cutA = la ? r + ring : 0, cutB = lb ? r + ring : 0;
      if (n <= cutA + cutB) continue;
      ctx.strokeStyle = several ? own : skeleton.colors[sa === sb ? sa : "center"];
      ctx.lineWidth = la || lb ? lw / 2 : lw;
      ctx.setLineDash(la || lb ? [lw * 1.5, lw * 1.5] : []);
      ctx.beginPath();
      ctx.moveTo(j[a].x + (dx * cutA) / n, j[a].y + (dy * cutA) / n);
      ctx.lineTo(j[b].x - (dx * cutB) / n, j[b].y - (dy * cutB) / n);
      ctx.stroke();
    }
  });
  ctx.setLineDash([]);
  ctx.lineWidth = ring;
  for (const person of people) {
    person.joints.forEach((p, i) => {
      if (!ok(p)) return;
      ctx.fillStyle = ctx.strokeStyle = skeleton.colors[skeleton.sides[i]];
      ctx.beginPath();
      ctx.arc(p.x, p.y, r, 0, 2 * Math.PI);
      if (isLow(p)) ctx.stroke(); else ctx.fill();
    });
  }
}

function drawLegend(people) {
  const items = [["left", skeleton.colors.left, "box"], ["right", skeleton.colors.right, "box"],
    ["centre", skeleton.colors.center, "box"], [`low confidence (score < ${skeleton.low_score})`, null, "ring"]];
  if (people.length > 1) people.forEach((p, i) => items.push([`person ${personIndex(p, i)}`, personColor(p, i), "line"]));
  $("legend").replaceChildren(...items.map(([label, color, mark]) => {
    const li = document.createElement("li"), sw = document.createElement("span");
    sw.className = `mark ${mark}`;
    if (color) sw.style.backgroundColor = color;
    li.append(sw, label);
    return li;
  }));
}

function fillTable(people) {
  const several = people.length > 1;
  const head = several ? ["person", ...defaultHead] : defaultHead;
  tableHead.replaceChildren(...head.map((h) => { const th = document.createElement("th"); th.textContent = h; return th; }));
  const rows = [];
  people.forEach((person, i) => person.joints.forEach((p) => {
    const tr = document.createElement("tr");
    const cells = [p.name, num(p.x, 1), num(p.y, 1), num(p.score, 2)];
    if (several) cells.unshift(String(personIndex(person, i)));
    for (const v of cells) { const td = document.createElement("td"); td.textContent = v; tr.appendChild(td); }
    if (several) tr.firstChild.style.borderLeft = `4px solid ${personColor(person, i)}`;
    if (isLow(p)) tr.classList.add("low");
    if (p.in_image === false) { tr.classList.add("outside"); tr.title = "outside the image"; }
    rows.push(tr);
  }));
  tableBody.replaceChildren(...rows);
}

function show(result) {
  const people = peopleOf(result);
  drawPoses(people);
  fillTable(people);
  drawLegend(people);
  return people;
}

function clearPose() {
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  fillTable([]);
  if (skeleton) drawLegend([]);
}

function clearAll() {
  imageCanvas.getContext("2d").clearRect(0, 0, imageCanvas.width, imageCanvas.height);
  clearPose();
}

function describe(result, people) {
  if (!people.length) {
    // a person must both be detected and reach the threshold: a score at or over it means nobody was detected
    const why = result.score >= result.threshold ? ", but no person detected" : "";
    const [score, threshold] = scoreAgainst(result.score, result.threshold);
    return `No person found (score ${score}, threshold ${threshold}${why})`;
  }
  const who = people.length === 1
    ? (Number.isFinite(people[0].score) ? `1 person (score ${num(people[0].score, 2)})` : "1 person")
    : `${people.length} people`;
  return `${result.width}×${result.height}, ${who}, server ${result.latency_ms} ms`;
}

async function sendBlob(blob, name) {
  const form = new FormData();
  form.append("image", blob, name);
  const t0 = performance.now();
  const r = await fetch("/v1/pose", { method: "POST", body: form });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(body && body.error ? body.error.message : `HTTP ${r.status}`);
  if (!body) throw new Error("the answer is not JSON");
  body.roundTripMs = performance.now() - t0;
  return body;
}

$("file").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  ev.target.value = ""; // so that choosing the same file again is a new upload
  if (!file) return;
  if (stream) stopWebcam();
  const mine = ++ticket;
  clearAll();
  try {
    await ready;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      throw new Error("the browser cannot decode this file as an image");
    }
    if (mine !== ticket) return;
    drawImage(bitmap, bitmap.width, bitmap.height);
    setStatus(`${file.name}: estimating…`);
    const result = await sendBlob(file, file.name);
    if (mine !== ticket) return;
    const people = show(result);
    setStatus(`${file.name}: ${describe(result, people)}, round trip ${result.roundTripMs.toFixed(0)} ms`);
  } catch (e) {
    if (mine !== ticket) return;
    clearAll();
    setStatus(`Could not estimate the pose in ${file.name}: ${e.message}`, true);
  }
});

async function webcamLoop() {
  if (!stream) return;
  if (!busy && video.videoWidth) {
    busy = true;
    const mine = ticket, w = video.videoWidth, h = video.videoHeight;
    drawImage(video, w, h); // the previous skeleton stays until this frame's answer replaces it
    imageCanvas.toBlob(async (blob) => {
      try {
        const result = await sendBlob(blob, "frame.jpg");
        if (stream && mine === ticket) { const people = show(result); setStatus(`webcam: ${describe(result, people)}`); }
      } catch (e) {
        if (stream && mine === ticket) { clearPose(); setStatus(`webcam: ${e.message}`, true); }
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
    await ready;
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    setStatus(`Webcam unavailable: ${e.message}`, true);
    return;
  }
  ++ticket;
  clearAll();
  video.srcObject = stream;
  await video.play();
  $("webcam").textContent = "Stop webcam";
  $("webcam").classList.add("on");
  webcamLoop();
});
