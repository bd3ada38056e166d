// Services, searched by id prefix on the node, a page at a time: the page never holds more
// than one page of the registry, whatever its size.

import {get} from "./api.js";
import {SEARCH_DELAY_MS, SERVICES_EVERY_MS, SERVICES_PAGE} from "./config.js";
import {count, empty, h, replace, route, table} from "./dom.js";

export function mountServices(el, params) {
  let prefix = params.prefix || "";
  let offset = Math.max(0, Number(params.offset) || 0);
  let asked = 0;  // the number of the latest search sent; older answers are dropped
  let delay = null;
  const input = h("input", {type: "search", id: "service-search", value: prefix,
    placeholder: "service id prefix", autocomplete: "off", spellcheck: "false",
    "aria-label": "Service id prefix"});
  const summary = h("p", {class: "dim", role: "status"});
  const results = h("div", {class: "results"});
  const pager = h("div", {class: "pager"});

  async function load(cause, started) {
    const mine = ++asked;
    const answer = await get("/api/console/services.json",
      {prefix, offset, limit: SERVICES_PAGE});
    if (mine !== asked) return;
    if (!answer.ok) {
      replace(summary, h("span", {class: "problem"}, answer.words));
      return;
    }
    const d = answer.data;
    if (d.total && offset >= d.total) {
      offset = Math.max(0, (Math.ceil(d.total / SERVICES_PAGE) - 1) * SERVICES_PAGE);
      load(cause, started);
      return;
    }
    const first = d.total ? offset + 1 : 0;
    const last = offset + d.services.length;
    replace(summary, d.total ? `Services ${count(first)}-${count(last)} of ${count(d.total)}`
      + (prefix ? ` starting with "${prefix}"` : "") + ` (${count(d.registryServices)} in all)`
      : prefix ? `No service id starts with "${prefix}".` : "No service is registered.");
    replace(results, d.services.length ? table(["Service", "Instances", "Shown by discovery",
      "Pulled out"], d.services.map((s) => h("tr", {dataset: {service: s.serviceId}},
      h("td", null, h("a", {href: route("/service/" + encodeURIComponent(s.serviceId))},
        s.serviceId)),
      h("td", {class: "num"}, count(s.instances)), h("td", {class: "num"}, count(s.visible)),
      h("td", {class: "num"}, count(s.instances - s.visible)))),
    {class: "services", dataset: {cause, prefix}}) : empty(""));
    replace(pager,
      h("button", {type: "button", disabled: offset === 0, onclick: () => page(-1)},
        "Previous"),
      h("button", {type: "button", disabled: last >= d.total, onclick: () => page(1)}, "Next"));
    if (started !== undefined) {
      performance.measure("artemis-console:search", {start: started,
        detail: {prefix, total: d.total}});
    }
  }

  function remember() {
    history.replaceState(null, "", route("/services", {prefix, offset}));
  }

  function page(step) {
    offset = Math.max(0, offset + step * SERVICES_PAGE);
    remember();
    load("page");
  }

  input.addEventListener("input", () => {
    const started = performance.now();
    clearTimeout(delay);
    delay = setTimeout(() => {
      prefix = input.value.trim();
      offset = 0;
      remember();
      load("search", started);
    }, SEARCH_DELAY_MS);
  });

  replace(el, h("h1", null, "Services"),
    h("div", {class: "toolbar"}, input), summary, results, pager);
  input.focus();
  load("load");
  const timer = setInterval(() => document.hidden || load("poll"), SERVICES_EVERY_MS);
  return () => {
    clearInterval(timer);
    clearTimeout(delay);
    asked = -1;
  };
}
