// The blind A/B page: asks the judge's name once (kept in the URL as ?judge=NAME), then shows
// one pair at a time. The server draws and records which answer is on the left; this script only
// sends "left", "right", "tie" or "skip" and never learns whose answer is whose.
"use strict";

const KEYS = {
  ArrowLeft: "left", 1: "left",
  ArrowRight: "right", 2: "right",
  t: "tie", T: "tie", 3: "tie",
  s: "skip", S: "skip",
  u: "undo", U: "undo",
};
const SAID = {
  left: "Saved: the left answer is better.",
  right: "Saved: the right answer is better.",
  tie: "Saved: a tie.",
  skip: "Skipped.",
  undo: "Your last vote is undone: its pair is back.",
};
const byId = (id) => document.getElementById(id);
const judge = new URLSearchParams(location.search).get("judge");
let state = null;
let busy = false;

function say(text, isError = false) {
  byId("status").textContent = text;
  byId("status").classList.toggle("error", isError);
}

function updateButtons() {
  const pair = state && state.pair;
  for (const button of byId("buttons").querySelectorAll("button")) {
    const isUndo = button.dataset.choice === "undo";
    button.disabled = busy || !state || (isUndo ? state.judged === 0 : !pair);
  }
}

function render(next) {
  const shownBefore = state && state.pair && state.pair.prompt_id;
  state = next;
  const progress = byId("progress");
  progress.max = Math.max(state.total, 1);
  progress.value = state.judged;
  byId("progress-label").textContent = `${state.judged} of ${state.total} pairs judged`;
  const pair = state.pair;
  byId("pair").hidden = !pair;
  byId("done").hidden = Boolean(pair);
  if (pair) {
    byId("pair").dataset.promptId = pair.prompt_id;
    byId("category").textContent = `Prompt ${pair.prompt_id} (${pair.category})`;
    byId("expect").hidden = !pair.expect;
    byId("expect").textContent = pair.expect ? `A good answer ${pair.expect}.` : "";
    const conversation = byId("conversation");
    conversation.replaceChildren();
    for (const message of pair.messages) {
      const turn = document.createElement("div");
      turn.className = "turn";
      const role = document.createElement("h3");
      role.textContent = message.role;
      const text = document.createElement("pre");
      text.textContent = message.content; // textContent: shown as text, never as HTML
      turn.append(role, text);
      conversation.append(turn);
    }
    byId("left").textContent = pair.left;
    byId("right").textContent = pair.right;
    if (pair.prompt_id !== shownBefore) window.scrollTo(0, 0);
  }
  updateButtons();
}

async function request(method, url, body) {
  busy = true;
  updateButtons();
  let data = null;
  let ok = false;
  try {
    const options = { method, headers: {} };
    if (body) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    data = await response.json();
    ok = response.ok;
  } catch (error) {
    say(`The page got no answer (${error.message}): is lit-dpo judge still running?`, true);
  }
  busy = false;
  if (data && !ok) say(data.error, true);
  const next = ok ? data : data && data.state;
  if (next) render(next);
  else updateButtons();
  return ok;
}

async function act(choice) {
  if (busy || !state) return;
  if (choice === "undo") {
    if (state.judged === 0) return;
    if (await request("POST", "/api/undo", { judge })) say(SAID.undo);
    return;
  }
  if (!state.pair) return;
  const vote = { judge, prompt_id: state.pair.prompt_id, choice };
  if (await request("POST", "/api/vote", vote)) say(SAID[choice]);
}

function start() {
  if (!judge) {
    byId("welcome").hidden = false;
    byId("name-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = byId("judge-name").value.trim();
      if (name) location.search = `?judge=${encodeURIComponent(name)}`;
    });
    byId("judge-name").focus();
    return;
  }
  byId("judging").hidden = false;
  byId("judge-shown").textContent = judge;
  document.title = `lit-dpo judge: ${judge}`;
  for (const button of byId("buttons").querySelectorAll("button")) {
    button.addEventListener("click", () => act(button.dataset.choice));
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest && event.target.closest("input, textarea, select")) return;
    const choice = KEYS[event.key];
    if (!choice) return;
    event.preventDefault();
    act(choice);
  });
  request("GET", `/api/state?judge=${encodeURIComponent(judge)}`);
}

start();
