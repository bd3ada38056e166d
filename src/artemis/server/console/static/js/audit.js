// The audit log: every management write, newest first, filtered and paged on the node.

import {post} from "./api.js";
import {AUDIT_PAGE} from "./config.js";
import {clock, count, empty, field, h, replace, route, table} from "./dom.js";
import {needs} from "./operations.js";

const LOG = "/api/management/log/";
const KINDS = {
  "": "audit.json",
  "instance-operation": "instance-operation-logs.json",
  "server-operation": "server-operation-logs.json",
  "zone-operation": "zone-operation-logs.json",
  "group-operation": "group-operation-logs.json",
  "group": "group-logs.json",
  "route-rule": "route-rule-logs.json",
  "route-rule-group": "route-rule-group-logs.json",
  "group-instance": "group-instance-logs.json",
  "service-instance": "service-instance-logs.json",
  "group-tag": "group-tag-logs.json",
};
const TEXT = ["serviceId", "instanceId", "serverId", "zoneId", "operation", "operatorId"];

export function mountAudit(el, params) {
  const filters = {kind: params.kind || "", complete: params.complete || ""};
  for (const name of TEXT) filters[name] = params[name] || "";
  let offset = Math.max(0, Number(params.offset) || 0);
  let alive = true;
  const summary = h("p", {class: "dim", role: "status"});
  const results = h("div", {class: "results"});
  const pager = h("div", {class: "pager"});

  async function load() {
    const body = {offset, limit: AUDIT_PAGE, newestFirst: true};
    for (const name of TEXT) if (filters[name]) body[name] = filters[name];
    if (filters.complete) body.complete = filters.complete === "in";
    const answer = await post(LOG + KINDS[filters.kind], body);
    if (!alive) return;
    if (!answer.ok) {
      replace(summary, h("span", {class: "problem"}, answer.words));
      replace(results);
      return;
    }
    const {logs, total} = answer.data;
    replace(summary, total ? `Entries ${count(offset + 1)}-${count(offset + logs.length)} ` +
      `of ${count(total)}, newest first` : "No entry matches.");
    replace(results, logs.length ? table(["When", "Actor", "Operator", "Kind", "Target",
      "Operation", "Out / in", "Reason", "Before", "After"], logs.map((e) => [
      h("span", {class: "nowrap"}, clock(e.createTime)), h("span", {class: "mono"}, e.actor),
      e.operatorId || "", h("span", {class: "nowrap"}, e.kind),
      h("span", {class: "mono target"}, [e.serviceId, e.instanceId, e.serverId, e.zoneId]
        .filter(Boolean).join(" / ")),
      e.operation, e.kind.endsWith("operation") ? (e.complete ? "in" : "out") : "-",
      e.reason || "", h("span", {class: "mono change"}, (e.before || []).join(", ")),
      h("span", {class: "mono change"}, (e.after || []).join(", "))]), {class: "audit"})
      : empty(""));
    replace(pager,
      h("button", {type: "button", disabled: offset === 0, onclick: () => page(-1)},
        "Newer"),
      h("button", {type: "button", disabled: offset + logs.length >= total,
        onclick: () => page(1)}, "Older"));
  }

  function remember() {
    history.replaceState(null, "", route("/audit", {...filters, offset}));
  }

  function page(step) {
    offset = Math.max(0, offset + step * AUDIT_PAGE);
    remember();
    load();
  }

  const kind = h("select", {name: "kind", onchange: () => apply()},
    Object.keys(KINDS).map((k) => h("option", {value: k, selected: k === filters.kind},
      k || "every kind")));
  const complete = h("select", {name: "complete", onchange: () => apply()},
    h("option", {value: ""}, "out and in"),
    h("option", {value: "out", selected: filters.complete === "out"}, "pulled out"),
    h("option", {value: "in", selected: filters.complete === "in"}, "pulled in"));
  const inputs = Object.fromEntries(TEXT.map((name) => [name, h("input", {type: "text",
    name, value: filters[name], spellcheck: "false"})]));

  function apply() {
    filters.kind = kind.value;
    filters.complete = complete.value;
    for (const name of TEXT) filters[name] = inputs[name].value.trim();
    offset = 0;
    remember();
    load();
  }

  const refused = needs("read", "the audit log");
  replace(el, h("h1", null, "Audit log"), refused || [
    h("form", {class: "filters", onsubmit: (event) => { event.preventDefault(); apply(); }},
      field("Kind", kind), field("Direction", complete),
      TEXT.map((name) => field(name, inputs[name])),
      h("button", {type: "submit"}, "Filter")),
    summary, results, pager]);
  if (!refused) load();
  return () => { alive = false; };
}
