// The console's frame: header (node, navigation, sign-in), the routes (#/...), and the
// overview polled every OVERVIEW_EVERY_MS for every page.

import {get} from "./api.js";
import {OVERVIEW_EVERY_MS} from "./config.js";
import {badge, count, field, h, replace} from "./dom.js";
import * as session from "./session.js";
import {mountAudit} from "./audit.js";
import {mountGroups} from "./groups.js";
import {mountOperations} from "./operations.js";
import {mountOverview} from "./overview.js";
import {mountService} from "./service.js";
import {mountServices} from "./services.js";

const ROUTES = [
  {path: "/overview", title: "Overview", mount: mountOverview},
  {path: "/services", title: "Services", mount: mountServices},
  {path: "/operations", title: "Pull-outs", mount: mountOperations},
  {path: "/groups", title: "Groups and routes", mount: mountGroups},
  {path: "/audit", title: "Audit log", mount: mountAudit},
];

const state = {overview: null, overviewError: "", unmount: null, listeners: new Set()};

// What views share: the latest overview, and a way to hear of new ones.
export const ctx = {
  get overview() { return state.overview; },
  onOverview(listener) {
    state.listeners.add(listener);
    return () => state.listeners.delete(listener);
  },
};

function parseHash() {
  const raw = location.hash.slice(1) || "/overview";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  const params = Object.fromEntries(new URLSearchParams(at < 0 ? "" : raw.slice(at + 1)));
  return {path, params};
}

function show() {
  const {path, params} = parseHash();
  const main = document.getElementById("main");
  if (state.unmount) state.unmount();
  state.unmount = null;
  main.replaceChildren();
  let found = ROUTES.find((r) => r.path === path);
  let mount = found && found.mount;
  if (path.startsWith("/service/")) {
    let id = "";
    try { id = decodeURIComponent(path.slice("/service/".length)); } catch { id = ""; }
    found = ROUTES[1];
    mount = (el, p) => mountService(el, {...p, serviceId: id}, ctx);
  }
  if (!mount) {
    found = ROUTES[0];
    mount = mountOverview;
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.path === found.path);
  }
  document.title = found.title + " · Artemis console";
  state.unmount = mount(main, params, ctx) || null;
  main.focus({preventScroll: true});
}

async function pollOverview() {
  const answer = await get("/api/console/overview.json");
  if (answer.ok) {
    state.overview = answer.data;
    state.overviewError = "";
  } else {
    state.overviewError = answer.words;
  }
  renderNode();
  for (const listener of state.listeners) listener(state.overview, state.overviewError);
}

function renderNode() {
  const el = document.getElementById("node");
  const o = state.overview;
  if (state.overviewError) {
    replace(el, badge("unreachable", "down"), " ", h("span", null, state.overviewError));
    return;
  }
  if (!o) return;
  replace(el, badge(o.node.status), " ", h("span", {class: "mono"}, o.node.url), " ",
    h("span", {class: "dim"}, `${o.node.region} / ${o.node.zone} · ` +
      `${count(o.instances)} instances · ${count(o.services)} services`));
}

function renderIdentity(who) {
  const el = document.getElementById("identity");
  if (who.token) {
    const roles = who.roles.filter((r) => r !== "admin");
    replace(el, h("span", {class: "who"}, "Signed in as ", h("strong", null, who.token),
      " (" + (roles.join(", ") || "no management role") + ")"),
    h("button", {type: "button", class: "quiet", onclick: () => session.signOut()}, "Sign out"));
  } else {
    const note = who.dropped ? "The node no longer knows the stored token. " : "";
    const reads = who.roles.includes("read") ? "reading open to all" : "read only";
    replace(el, h("span", {class: "who dim"}, note + "Not signed in (" + reads + ")"),
      h("button", {type: "button", onclick: openSignIn}, "Sign in"));
  }
}

function openSignIn() {
  const dialog = document.getElementById("sign-in");
  const secret = h("input", {type: "password", name: "token", autocomplete: "off",
    required: true, spellcheck: "false"});
  const who = h("input", {type: "text", name: "operator", autocomplete: "off",
    placeholder: "your name, recorded as operatorId"});
  const problem = h("p", {class: "problem", role: "alert"});
  const form = h("form", {onsubmit: async (event) => {
    event.preventDefault();
    replace(problem, "Checking the token with the node...");
    const error = await session.signIn(secret.value, who.value.trim());
    secret.value = "";
    if (error) {
      replace(problem, error);
      secret.focus();
    } else {
      dialog.close();
    }
  }},
  h("h2", null, "Sign in"),
  h("p", null, "A bearer token of the management API. It is kept for this browser " +
    "session only and sent to this node alone."),
  field("Token", secret), field("Operator", who), problem,
  h("div", {class: "actions"},
    h("button", {type: "submit", class: "primary"}, "Sign in"),
    h("button", {type: "button", onclick: () => dialog.close()}, "Cancel")));
  replace(dialog, form);
  dialog.showModal();
  secret.focus();
}

function start() {
  const nav = document.getElementById("nav");
  replace(nav, ROUTES.map((r) => h("a", {href: "#" + r.path, dataset: {path: r.path}},
    r.title)));
  session.onChange((who) => {
    renderIdentity(who);
    show();
  });
  window.addEventListener("hashchange", show);
  session.refresh();
  pollOverview();
  // A page in a hidden tab asks nothing until it is shown again (push stays connected).
  setInterval(() => document.hidden || pollOverview(), OVERVIEW_EVERY_MS);
  document.addEventListener("visibilitychange", () => document.hidden || pollOverview());
}

start();
