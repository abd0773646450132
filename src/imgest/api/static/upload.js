// Upload page: queue files (picker or drag and drop), send each in its own POST /v1/images
// with upload progress, and show per file the rendition, the top-5 or the error in words.
// Untrusted strings (file names, labels, server messages) only ever go into textContent.
"use strict";

(function () {
  const CONCURRENCY = 2;
  const form = document.getElementById("upload");
  const input = document.getElementById("files");
  const drop = document.getElementById("drop");
  const list = document.getElementById("results");
  const summary = document.getElementById("summary");
  const clear = document.getElementById("clear");
  const queue = []; // entries: {file, row, state}

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function humanBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function percent(score) {
    return (100 * score).toFixed(1) + " %";
  }

  function addFiles(files) {
    for (const file of files) {
      const progress = el("progress", { max: "100", value: "0", "aria-label": "Upload of " + file.name });
      const state = el("span", { class: "state", text: "Waiting" });
      const body = el("div", { class: "result-body" }, [
        el("div", { class: "result-head" }, [
          el("span", { class: "result-name", text: file.name }),
          el("span", { class: "muted small", text: humanBytes(file.size) }),
        ]),
        el("div", { class: "result-progress" }, [progress, state]),
      ]);
      const thumb = el("div", { class: "thumb placeholder", "aria-hidden": "true" });
      const row = el("li", { class: "result waiting" }, [thumb, body]);
      list.append(row);
      queue.push({ file, row, thumb, body, progress, state, status: "waiting" });
    }
    updateSummary();
  }

  function updateSummary() {
    const count = (s) => queue.filter((e) => e.status === s).length;
    const done = count("created") + count("existing");
    const rejected = count("rejected");
    const pending = count("waiting") + count("sending");
    const parts = [];
    if (pending) parts.push(pending + " to upload");
    if (done) parts.push(done + " stored");
    if (rejected) parts.push(rejected + " rejected");
    summary.textContent = parts.join(" · ");
  }

  // What an upload of already-stored bytes did with this form's tags and description.
  function appliedText(applied) {
    if (!applied) return "";
    const parts = [];
    if (applied.tags_added.length) parts.push("Tags added: " + applied.tags_added.join(", "));
    if (applied.label === "set") parts.push("ground truth set");
    if (applied.label === "conflict") parts.push("ground truth kept (it has another one)");
    if (applied.fields_set.length) parts.push("set: " + applied.fields_set.join(", "));
    if (applied.fields_conflict.length) parts.push("kept its own " + applied.fields_conflict.join(", "));
    return parts.length ? parts.join(" · ") : "Nothing new to add: tags and description as stored.";
  }

  function showResult(entry, image) {
    entry.status = image.status;
    entry.row.className = "result " + image.status;
    entry.state.textContent = image.status === "created" ? "Stored" : "Already stored";
    entry.progress.value = 100;
    const renditions = image.renditions || {};
    const shown = renditions[form.dataset.pipeline] || Object.values(renditions)[0];
    if (shown) {
      const img = el("img", {
        src: shown.url,
        alt: "Rendition of " + image.filename,
        width: String(shown.width),
        height: String(shown.height),
      });
      const link = el("a", { href: "/images/" + image.id, class: "thumb" }, [img]);
      entry.thumb.replaceWith(link);
      entry.thumb = link;
    }
    const prediction = (image.predictions || [])[0];
    if (prediction) {
      const minScore = Number(form.dataset.minScore);
      const items = prediction.top.slice(0, 5).map((t, i) => {
        const meter = el("meter", { min: "0", max: "1", value: String(t.score), "aria-label": t.label + " score" });
        const unsure = i === 0 && t.score < minScore;
        // The mark sits beside the label, not in it: the label's text stays the class name.
        const name = el("span", { class: "top-name" }, [el("span", { class: "top-label", text: t.label, title: t.label })]);
        if (unsure) {
          name.append(el("span", { class: "unsure-mark", title: "Low confidence: below " + percent(minScore), text: "?" }));
        }
        return el("li", unsure ? { class: "unsure" } : {}, [
          name,
          meter,
          el("span", { class: "top-score", text: percent(t.score) }),
        ]);
      });
      entry.body.append(el("ol", { class: "top", "aria-label": "Top 5 for " + image.filename }, items));
    }
    if (image.status === "existing") entry.body.append(el("p", { class: "applied small", text: appliedText(image.applied) }));
    entry.body.append(
      el("p", { class: "small" }, [
        el("a", { href: "/images/" + image.id, text: "Open image page" }),
        el("span", {
          class: "muted",
          text: " · " + (image.format || "").toUpperCase() + " " + image.width + " × " + image.height,
        }),
      ]),
    );
  }

  function showError(entry, title, detail) {
    entry.status = "rejected";
    entry.row.className = "result rejected";
    entry.state.textContent = "Rejected";
    entry.progress.hidden = true;
    entry.body.append(
      el("p", { class: "problem", role: "alert" }, [
        el("strong", { text: title + ": " }),
        el("span", { text: detail }),
      ]),
    );
  }

  function handleResponse(entry, xhr) {
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch (e) {
      body = null;
    }
    if (xhr.status >= 200 && xhr.status < 300 && body && body.images && body.images.length) {
      const image = body.images[0];
      if (image.status === "rejected" && image.error) {
        showError(entry, "Rejected", image.error.detail);
      } else {
        showResult(entry, image);
      }
    } else if (body && body.title) {
      // problem+json: the per-file error is the request's own when the only file was rejected
      showError(entry, body.title, body.detail || "");
    } else {
      showError(entry, "HTTP " + xhr.status, "The server answered without an explanation.");
    }
  }

  function send(entry) {
    return new Promise((resolve) => {
      const data = new FormData();
      data.append("file", entry.file, entry.file.name);
      const description = form.elements.description.value.trim();
      const tags = form.elements.tags.value.trim();
      if (description) data.append("description", description);
      if (tags) data.append("tags", tags);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) {
          const pct = Math.round((100 * event.loaded) / event.total);
          entry.progress.value = pct;
          entry.state.textContent = "Uploading " + pct + " %";
        }
      });
      xhr.upload.addEventListener("load", () => {
        entry.progress.value = 100;
        entry.state.textContent = "Processing";
      });
      xhr.addEventListener("load", () => {
        handleResponse(entry, xhr);
        resolve();
      });
      xhr.addEventListener("error", () => {
        showError(entry, "Network error", "The server could not be reached; try again.");
        resolve();
      });
      xhr.addEventListener("timeout", () => {
        showError(entry, "Timed out", "The server took too long to answer; try again.");
        resolve();
      });
      entry.status = "sending";
      entry.row.className = "result sending";
      entry.state.textContent = "Uploading 0 %";
      updateSummary();
      xhr.send(data);
    });
  }

  async function worker() {
    for (;;) {
      const entry = queue.find((e) => e.status === "waiting");
      if (!entry) return;
      await send(entry);
      updateSummary();
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!queue.some((e) => e.status === "waiting")) {
      summary.textContent = "Choose or drop some images first.";
      input.focus();
      return;
    }
    const button = document.getElementById("start");
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    form.removeAttribute("aria-busy");
    button.disabled = false;
    updateSummary();
  });

  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = ""; // the same file may be chosen again later
  });

  clear.addEventListener("click", () => {
    for (let i = queue.length - 1; i >= 0; i--) {
      if (queue[i].status !== "sending") {
        queue[i].row.remove();
        queue.splice(i, 1);
      }
    }
    updateSummary();
  });

  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
  });
})();
