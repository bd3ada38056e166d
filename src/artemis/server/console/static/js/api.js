// Calls to the node that serves the page. Every answer has a responseStatus; errors are told
// in plain words. The token rides in the Authorization header only: never in a URL, never
// written anywhere but the browser session's storage (session.js).

import {token} from "./session.js";

// The node's context path: whatever comes before /console/ in the page's path.
export const BASE = location.pathname.replace(/\/console(\/.*)?$/, "");

const WORDS = {
  "no-permission": "The node refused: the token does not allow this",
  "bad-request": "The node did not accept the request",
  "service-unavailable": "The node cannot do this now",
  "rate-limited": "Too many requests for now; try again in a few seconds",
  "data-not-found": "Not found",
  "internal-service-error": "The node failed on this request (it is in the node's log)",
  "partial_fail": "Part of it failed",
};

export class Answer {
  constructor(ok, data, code, message) {
    this.ok = ok;
    this.data = data;
    this.code = code;
    this.message = message;
  }

  // "The node cannot do this now (service-unavailable): the management database ..."
  get words() {
    if (this.ok) return "Done: the node answered success.";
    const lead = WORDS[this.code] || "The node answered " + this.code;
    return this.message ? `${lead} (${this.code}): ${this.message}` : `${lead} (${this.code}).`;
  }
}

function headers(json) {
  const out = {"Accept": "application/json"};
  if (json) out["Content-Type"] = "application/json";
  const secret = token();
  if (secret) out["Authorization"] = "Bearer " + secret;
  return out;
}

async function send(path, init) {
  let response;
  try {
    response = await fetch(BASE + path, {...init, cache: "no-store", credentials: "omit"});
  } catch (error) {
    return new Answer(false, null, "unreachable",
      "the node did not answer (" + (error && error.message || "network error") + ")");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    return new Answer(false, null, "http-" + response.status,
      `the node answered HTTP ${response.status} without JSON`);
  }
  const status = data && data.responseStatus;
  if (!status) {
    return new Answer(response.ok, data, response.ok ? "success" : "http-" + response.status,
      "");
  }
  const ok = status.errorCode === "success";
  return new Answer(ok, data, status.errorCode, ok ? "" : (status.message || ""));
}

export function get(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
  }
  const text = query.toString();
  return send(path + (text ? "?" + text : ""), {method: "GET", headers: headers(false)});
}

export function post(path, body) {
  return send(path, {method: "POST", headers: headers(true), body: JSON.stringify(body || {})});
}
