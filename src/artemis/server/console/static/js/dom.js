// Building the page: every value the node sends is data registered by anyone, so it only
// ever becomes text (textContent, attribute values); nothing here parses HTML.

const SAFE_SCHEMES = new Set(["http:", "https:"]);

// h("a", {class: "x", href: "#/services", onclick: f}, "text", child, [more]) -> element
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "href") el.setAttribute("href", internalHref(value));
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Links the console makes itself: its own routes only.
function internalHref(value) {
  const text = String(value);
  if (!text.startsWith("#/")) throw new Error("not a console route: " + text);
  return text;
}

// A link to a URL someone registered, only when it is http(s); else the text alone.
export function outsideLink(url) {
  if (!url) return "";
  let parsed = null;
  try { parsed = new URL(url); } catch { parsed = null; }
  if (!parsed || !SAFE_SCHEMES.has(parsed.protocol)) return h("span", {class: "mono"}, url);
  const a = document.createElement("a");
  a.href = parsed.href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  a.className = "mono";
  a.textContent = url;
  return a;
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function route(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "" && v !== 0) query.set(k, String(v));
  }
  const text = query.toString();
  return "#" + path + (text ? "?" + text : "");
}

export function badge(text, kind) {
  return h("span", {class: "badge " + (kind || text)}, text);
}

export function count(n) {
  return Number(n || 0).toLocaleString("en-US");
}

export function ms(value) {
  const n = Number(value || 0);
  return n < 10 ? n.toFixed(2) + " ms" : Math.round(n).toLocaleString("en-US") + " ms";
}

export function seconds(s) {
  const n = Math.round(Number(s || 0));
  if (n < 120) return n + " s";
  if (n < 7200) return Math.round(n / 60) + " min";
  if (n < 172800) return Math.round(n / 3600) + " h";
  return Math.round(n / 86400) + " d";
}

export function clock(epochMs) {
  if (!epochMs) return "never";
  const d = new Date(epochMs);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(epochMs, now) {
  if (!epochMs) return "never";
  return seconds(Math.max(0, ((now || Date.now()) - epochMs) / 1000)) + " ago";
}

// A table: head is a list of column titles, rows a list of arrays of cells (or <tr>).
export function table(head, rows, props) {
  return h("table", props || {},
    h("thead", null, h("tr", null, head.map((title) => h("th", {scope: "col"}, title)))),
    h("tbody", null, rows.map((row) => row instanceof Node ? row
      : h("tr", null, row.map((cell) => h("td", null, cell))))));
}

export function field(label, input, hint) {
  return h("label", {class: "field"}, h("span", null, label), input,
    hint ? h("small", null, hint) : null);
}

export function empty(text) {
  return h("p", {class: "empty"}, text);
}
