// soundscape review page: one clip at a time; every verdict is POSTed (and saved) at once.
"use strict";

const $ = (id) => document.getElementById(id);
let items = [];
let pos = 0;
let busy = false;
let audioRoot = "";
let shownId = null;

function shortName(file) {  // recordings under the audio root are shown relative to it
  const root = audioRoot.endsWith("/") ? audioRoot : audioRoot + "/";
  return audioRoot && file.startsWith(root) ? file.slice(root.length) : file;
}  // a verdict is on its way: keys wait for it (no double answers)

function query(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&");
}

function mediaParams(item) {
  return {path: item.file, start: item.start_time, end: item.end_time};
}

function imageUrl(item) {
  return "/image?" + query({...mediaParams(item), low_f: item.low_f, high_f: item.high_f});
}

function fmt(x, digits) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function showProgress(progress) {
  $("progress").textContent = progress.reviewed + " / " + progress.total + " reviewed";
}

function show() {
  const msg = $("message");
  msg.textContent = "";
  if (!items.length) {
    $("position").textContent = "no clips to review";
    return;
  }
  pos = Math.max(0, Math.min(pos, items.length - 1));
  const item = items[pos];
  $("position").textContent = "clip " + (pos + 1) + " of " + items.length;
  if (item.item_id !== shownId) {  // a new clip: its picture and sound (not on a refresh)
    shownId = item.item_id;
    $("spectrogram").src = imageUrl(item);
    const player = $("player");
    player.src = "/audio?" + query(mediaParams(item));
    player.load();
  }
  $("class").textContent = item.annotation;
  $("score").textContent = fmt(item.score, 3);
  $("file").textContent = shortName(item.file);
  $("file").title = item.file;
  $("time").textContent = fmt(item.start_time, 2) + " – " + fmt(item.end_time, 2) + " s";
  const verdict = $("verdict");
  verdict.textContent = item.verdict ? item.verdict + (item.verdict === "other" ? ": " + item.other_class : "") : "not reviewed";
  verdict.className = item.verdict || "";
  $("note").value = item.note || "";
  $("other-class").value = item.verdict === "other" ? item.other_class : "";
  for (const b of document.querySelectorAll("#buttons button")) {
    b.classList.toggle("chosen", b.dataset.verdict === item.verdict);
  }
  if (pos + 1 < items.length) { new Image().src = imageUrl(items[pos + 1]); }  // prefetch
}

async function load(keepPosition) {
  const response = await fetch("/api/items", {cache: "no-store"});
  const state = await response.json();
  items = state.items;
  $("table-path").textContent = state.review_table;
  audioRoot = state.audio_root;
  const list = $("classes");
  list.innerHTML = "";
  for (const c of state.classes) {
    const option = document.createElement("option");
    option.value = c;
    list.appendChild(option);
  }
  showProgress(state.progress);
  if (!keepPosition) { pos = state.progress.next === null ? 0 : state.progress.next; }
  show();
}

function nextOpen(from) {
  for (let i = from + 1; i < items.length; i++) { if (!items[i].verdict) return i; }
  for (let i = 0; i <= from && i < items.length; i++) { if (!items[i].verdict) return i; }
  return -1;
}

async function answer(verdict) {
  if (!items.length || busy) return;
  const item = items[pos];
  const body = {item_id: item.item_id, verdict: verdict, note: $("note").value};
  if (verdict === "other") {
    body.other_class = $("other-class").value.trim();
    if (!body.other_class) {
      $("message").textContent = "type the class it really is, then press Enter";
      $("other-class").focus();
      return;
    }
  }
  busy = true;
  let response, result;
  try {
    response = await fetch("/api/verdict", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    result = await response.json();
  } catch (error) {
    $("message").textContent = "not saved (is the review server still running?): " + error;
    return;
  } finally {
    busy = false;
  }
  if (!response.ok) {
    $("message").textContent = "not saved: " + (result.detail || response.status);
    return;
  }
  items[pos] = result.item;
  showProgress(result.progress);
  document.activeElement.blur();
  if (pos + 1 < items.length) { pos += 1; }
  show();
}

function play() {
  const player = $("player");
  if (player.paused) { player.play().catch(() => {}); } else { player.pause(); }
}

for (const b of document.querySelectorAll("#buttons button")) {
  b.addEventListener("click", () => answer(b.dataset.verdict));
}
$("prev").addEventListener("click", () => { pos -= 1; show(); });
$("next").addEventListener("click", () => { pos += 1; show(); });
$("next-open").addEventListener("click", () => { const i = nextOpen(pos); if (i >= 0) { pos = i; show(); } });
$("play").addEventListener("click", play);
$("other-class").addEventListener("keydown", (e) => {
  if (e.key === "Enter") { e.preventDefault(); answer("other"); }
  if (e.key === "Escape") { e.target.blur(); }
});
$("note").addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === "Escape") { e.preventDefault(); e.target.blur(); }
});
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const keys = {y: () => answer("yes"), n: () => answer("no"), u: () => answer("unsure"),
    o: () => $("other-class").focus(), t: () => $("note").focus(), " ": play,
    j: () => { pos += 1; show(); }, ArrowRight: () => { pos += 1; show(); },
    k: () => { pos -= 1; show(); }, ArrowLeft: () => { pos -= 1; show(); },
    g: () => { const i = nextOpen(pos); if (i >= 0) { pos = i; show(); } }};
  const action = keys[e.key];
  if (action) { e.preventDefault(); action(); }
});
// another tab may have answered meanwhile: refresh the verdicts when this tab comes back
window.addEventListener("focus", () => load(true));
load(false);
