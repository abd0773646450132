// Gallery: select images and set their ground truth in one PATCH /v1/images. Server messages
// and labels only ever go into textContent.
"use strict";

(function () {
  const form = document.getElementById("bulk");
  if (!form) return;
  const input = document.getElementById("bulk-label");
  const count = document.getElementById("bulk-count");
  const status = document.getElementById("bulk-status");
  const submit = document.getElementById("bulk-set");
  const max = Number(form.dataset.max);
  const boxes = () => Array.from(document.querySelectorAll(".card .pick"));
  const picked = () => boxes().filter((box) => box.checked);

  // The rule of the list API's `disagrees` filter: ground truth names the top-1 class when it
  // equals its name or one of its comma-separated synonyms, ignoring case.
  function matches(truth, top) {
    const want = truth.trim().toLowerCase();
    const names = [top, ...top.split(",")].map((n) => n.trim().toLowerCase());
    return names.includes(want);
  }

  function refresh() {
    const n = picked().length;
    count.textContent = n + " selected";
    submit.disabled = n === 0;
    for (const box of boxes()) box.closest(".card").classList.toggle("picked", box.checked);
  }

  function show(card, label) {
    const value = card.querySelector(".truth-value");
    value.textContent = "";
    const shown = document.createElement(label ? "strong" : "span");
    shown.textContent = label || "not set";
    if (!label) shown.className = "muted";
    value.append(shown);
    const top = card.dataset.top;
    const disagrees = Boolean(label && top && !matches(label, top));
    card.classList.toggle("disagrees", disagrees);
    card.querySelector(".disagree-mark").hidden = !disagrees;
  }

  function say(text, kind) {
    status.textContent = text;
    status.className = "small " + kind;
  }

  document.addEventListener("change", (event) => {
    if (event.target.classList && event.target.classList.contains("pick")) refresh();
  });
  document.getElementById("bulk-all").addEventListener("click", () => {
    for (const box of boxes()) box.checked = true;
    refresh();
  });
  document.getElementById("bulk-none").addEventListener("click", () => {
    for (const box of boxes()) box.checked = false;
    refresh();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ids = picked().map((box) => box.value);
    if (ids.length === 0) return;
    if (ids.length > max) {
      say("Select at most " + max + " images at a time.", "bad");
      return;
    }
    const label = input.value.trim();
    submit.disabled = true;
    say("Saving…", "");
    const { body, error } = await imgestApi.sendJson(form.dataset.url, "PATCH", { ids: ids, label: label || null });
    if (error) {
      say(error, "bad");
      refresh();
      return;
    }
    const updated = new Set(body.updated);
    for (const card of document.querySelectorAll(".card")) {
      if (updated.has(card.dataset.id)) {
        show(card, body.label);
        card.querySelector(".pick").checked = false;
      }
    }
    let text = body.label
      ? "Set “" + body.label + "” on " + body.updated.length + " image" + (body.updated.length === 1 ? "" : "s") + "."
      : "Cleared the ground truth of " + body.updated.length + " image" + (body.updated.length === 1 ? "" : "s") + ".";
    if (body.not_found.length) text += " " + body.not_found.length + " no longer stored.";
    say(text, "ok");
    refresh();
  });

  refresh();
})();
