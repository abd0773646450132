// Image page: set the image's ground truth with PATCH /v1/images/{id} (only loaded when the
// server has that route). Server messages only ever go into textContent.
"use strict";

(function () {
  const form = document.getElementById("truth");
  if (!form) return;
  const input = document.getElementById("truth-label");
  const status = document.getElementById("truth-status");
  const shown = document.getElementById("truth-value");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const label = input.value.trim();
    status.textContent = "Saving…";
    const { body, error } = await imgestApi.sendJson(form.dataset.url, "PATCH", { label: label || null });
    if (error) {
      status.textContent = error;
      return;
    }
    const value = body && "label" in body ? body.label : label;
    shown.textContent = "";
    if (value) {
      const strong = document.createElement("strong");
      strong.textContent = value;
      shown.append(strong);
    } else {
      const none = document.createElement("span");
      none.className = "muted";
      none.textContent = "not set";
      shown.append(none);
    }
    status.textContent = "Saved.";
  });
})();
