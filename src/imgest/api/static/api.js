// What the pages' scripts share: one JSON request to the API, answered with its JSON body or
// with the sentence to show when it failed (callers put it into textContent only).
"use strict";

window.imgestApi = {
  // Resolves to { body } (null when the answer is not JSON) or { error: "a sentence" }: the
  // network failure, or the problem+json's title and detail, else the HTTP status.
  async sendJson(url, method, payload) {
    let response;
    try {
      response = await fetch(url, {
        method: method,
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(payload),
      });
    } catch (e) {
      return { error: "Network error: the server could not be reached." };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      return { error: body && body.title ? body.title + ": " + (body.detail || "") : "HTTP " + response.status };
    }
    return { body: body };
  },
};
