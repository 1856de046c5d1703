// The page of `jobgpt serve`: no build step, no libraries. It calls the same OpenAI-compatible
// API as any client, with stream: true, and reads the server-sent events from the response
// body as they arrive (fetch + ReadableStream). "중지" aborts the fetch; the server sees the
// connection close and frees the request's slot at its next decoding step.
"use strict";

const $ = (id) => document.getElementById(id);
const FIELD_LABELS = {
  company: "회사", position: "포지션", location: "위치", employment: "고용형태",
  salary: "급여", deadline: "마감일",
};
const REASONS = { stop: "끝까지 생성", length: "길이 제한에 도달" };
let controller = null; // the running request's AbortController

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = "status " + kind;
}

function addCardRow(term, value) {
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = value;
  $("card").append(dt, dd);
}

async function loadCard() {
  try {
    const health = await (await fetch("/health")).json();
    $("key-row").hidden = !health.auth;
    const res = await fetch("/v1/models", { headers: headers() });
    const body = await res.json();
    if (!res.ok) {
      $("card-status").textContent = body.error ? body.error.message : "정보 없음";
      return;
    }
    const m = body.data[0];
    const t = m.training || {};
    $("card").replaceChildren();
    addCardRow("크기", `${(m.parameters / 1e6).toFixed(2)}M 파라미터 · ${m.layers}층`);
    addCardRow("문맥", `${m.context} 토큰 · 어휘 ${m.vocab_size.toLocaleString()}`);
    if (t.train_tokens) addCardRow("데이터", `학습 ${t.train_tokens.toLocaleString()} 토큰`);
    if (t.steps != null) addCardRow("학습", `${t.steps.toLocaleString()} 스텝`);
    if (t.val_loss != null) addCardRow("검증 손실", t.val_loss.toFixed(4));
    addCardRow("장치", health.device);
  } catch (err) {
    $("card-status").textContent = "서버에 연결할 수 없습니다";
  }
}

function showFields(fields) {
  const rows = [];
  for (const [key, label] of Object.entries(FIELD_LABELS)) {
    if (fields[key]) rows.push([label, fields[key]]);
  }
  for (const [label, value] of Object.entries(fields.contacts || {})) rows.push([label, value]);
  const body = $("fields").tBodies[0];
  body.replaceChildren(...rows.map(([label, value]) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    const td = document.createElement("td");
    th.textContent = label;
    td.textContent = value;
    tr.append(th, td);
    return tr;
  }));
  $("fields").hidden = rows.length === 0;
}

// One server-sent event ("data: {...}"): append its text, note the end and the usage.
function handleEvent(event, run) {
  for (const line of event.split("\n")) {
    if (!line.startsWith("data: ")) continue;
    const data = line.slice(6);
    if (data === "[DONE]") { run.done = true; continue; }
    const chunk = JSON.parse(data);
    if (chunk.error) { run.error = chunk.error.message; continue; }
    if (chunk.usage) run.tokens = chunk.usage.completion_tokens;
    for (const choice of chunk.choices || []) {
      const text = choice.text ?? (choice.delta && choice.delta.content) ?? "";
      if (text) run.output.appendData(text);
      if (choice.finish_reason) run.reason = choice.finish_reason;
      if (choice.answer_fields) showFields(choice.answer_fields);
    }
  }
}

async function stream(url, body) {
  if (controller) controller.abort();
  controller = new AbortController();
  const run = { output: document.createTextNode(""), done: false, reason: null, tokens: null };
  $("output").replaceChildren(run.output);
  $("fields").hidden = true;
  $("stop").disabled = false;
  setStatus("생성 중…", "busy");
  const mine = controller;
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
      signal: mine.signal,
    });
    if (!res.ok) {
      const err = await res.json().catch(() => null);
      setStatus(`오류 ${res.status}: ${err && err.error ? err.error.message : res.statusText}`, "error");
      return;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder(); // {stream: true} keeps a character split across reads
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, cut), run);
        buffer = buffer.slice(cut + 2);
      }
    }
    if (run.error) setStatus("오류: " + run.error, "error");
    else {
      const tokens = run.tokens != null ? ` · 토큰 ${run.tokens}개` : "";
      setStatus(`완료${tokens} · ${REASONS[run.reason] || run.reason || ""}`, "done");
    }
  } catch (err) {
    if (err.name === "AbortError") setStatus("중지됨 (요청을 취소했습니다)", "stopped");
    else setStatus("오류: " + err.message, "error");
  } finally {
    if (controller === mine) {
      controller = null;
      $("stop").disabled = true;
    }
  }
}

function sampling() {
  return {
    temperature: Number($("temperature").value),
    max_tokens: Math.max(1, Math.min(10000, Number($("length").value) || 200)),
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = $("temperature").value;
  });
  $("api-key").addEventListener("change", loadCard);
  $("complete-form").addEventListener("submit", (e) => {
    e.preventDefault();
    stream("/v1/completions", { prompt: $("prompt").value, ...sampling() });
  });
  $("qa-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const question = $("question").value.trim() || "이 구인 정보를 요약해줘.";
    stream("/v1/chat/completions", {
      messages: [{ role: "user", content: question }],
      posting: $("posting").value,
      ...sampling(),
    });
  });
  $("stop").addEventListener("click", () => { if (controller) controller.abort(); });
  loadCard();
});
