// Groups and route rules of one service (the management database's, as this node applies
// them): each rule's groups with their released weight (what discovery shows) and their staged
// weight (what a release makes it); canary instances. Changes need the write role.

import {get, post} from "./api.js";
import {badge, count, empty, field, h, replace, route, table} from "./dom.js";
import {askConfirm, askOperation} from "./operate.js";
import {needs} from "./operations.js";
import * as session from "./session.js";

const G = "/api/management/group";

function write(extra) {
  return {operatorId: session.operator() || "console", reason: null, ...extra};
}

export function mountGroups(el, params) {
  let serviceId = params.service || "";
  let alive = true;
  const message = h("p", {class: "answer", role: "status"});
  const body = h("div");
  const region = () => session.identity().region;
  const input = h("input", {type: "search", value: serviceId, placeholder: "service id",
    "aria-label": "Service id", spellcheck: "false"});

  function tell(answer) {
    replace(message, h("span", {class: answer.ok ? "ok" : "problem"}, answer.words));
    if (answer.ok) load();
  }

  async function call(path, payload) {
    replace(message, "Asking the node...");
    tell(await post(path, write(payload)));
  }

  // A change that takes something away: confirmed first, with its reason.
  function confirmed(title, what, button, path, payload) {
    return () => askConfirm({title, what, button, done: tell,
      run: (reason) => post(path, write({...payload, reason: reason || null}))});
  }

  async function load() {
    if (!serviceId) {
      replace(body, empty("Name a service to see its groups and route rules."));
      return;
    }
    const answer = await get("/api/console/service.json", {serviceId, limit: 1});
    if (!alive) return;
    if (!answer.ok) {
      replace(body, h("p", {class: "problem"}, answer.words));
      return;
    }
    render(answer.data);
  }

  function render(d) {
    const m = d.management || {groups: [], routeRules: [], zoneOperations: {}};
    const writer = session.can("write");
    const names = new Map(m.groups.map((g) => [g.groupId, g]));
    const groupLabel = (id) => {
      const g = names.get(id);
      return g ? `${g.name} (${g.zoneId})` : `group ${id}`;
    };
    const groups = m.groups.length ? table(["Id", "Group", "Zone", "Status", "Tags",
      "Explicit members", "Operations", writer ? "" : null].filter((x) => x !== null),
    m.groups.map((g) => [String(g.groupId), h("span", {class: "mono"}, g.name), g.zoneId,
      badge(g.status || "unknown", g.status === "active" ? "up" : "unknown"),
      Object.entries(g.tags || {}).map(([k, v]) => h("div", {class: "mono"}, `${k}=${v}`)),
      (g.members || []).join(", "),
      (g.operations || []).length ? [badge("pulled out", "down"), " ",
        g.operations.join(", ")] : "",
      writer ? h("div", {class: "row-actions"},
        h("button", {type: "button", class: "small " + (g.operations ? "" : "danger"),
          onclick: () => askOperation({
            what: `Group ${g.name} in zone ${g.zoneId}: every member ` +
              (g.operations ? "comes back." : "leaves discovery."),
            pullIn: Boolean(g.operations), operations: g.operations || [], done: tell,
            run: (op, reason) => post(G + "/operate-group-operations.json", write({
              groupOperationsList: [{groupId: g.groupId, operations: [op]}],
              operationComplete: Boolean(g.operations), reason: reason || null}))})},
        g.operations ? "Pull in" : "Pull out"),
        h("button", {type: "button", class: "small quiet", onclick: confirmed(
          g.status === "active" ? "Deactivate a group" : "Activate a group",
          `Group ${g.name} in zone ${g.zoneId} ` + (g.status === "active"
            ? "leaves the route rules discovery shows." : "joins its route rules again."),
          g.status === "active" ? "Deactivate" : "Activate",
          G + "/update-groups.json", {groups: [{serviceId: d.serviceId, regionId: region(),
            zoneId: g.zoneId, name: g.name, appId: g.appId, description: g.description,
            status: g.status === "active" ? "inactive" : "active"}]})},
        g.status === "active" ? "Deactivate" : "Activate"),
        h("button", {type: "button", class: "small quiet", onclick: confirmed(
          "Delete a group", `Group ${g.name} in zone ${g.zoneId} is deleted; it leaves its ` +
            "route rules.", "Delete", G + "/delete-groups.json", {groupIds: [g.groupId]})},
        "Delete")) : null]
      .filter((x) => x !== null)), {class: "groups"}) : empty("No group.");

    const rules = m.routeRules.length ? m.routeRules.map((r) => {
      const pending = r.groups.filter((x) => x.unreleasedWeight !== x.weight);
      return h("section", {class: "rule"},
        h("h3", null, h("span", {class: "mono"}, r.name), " ",
          badge(r.status || "unknown", r.status === "active" ? "up" : "unknown"),
          h("span", {class: "dim"}, " " + (r.strategy || ""))),
        r.groups.length ? table(["Group", "Released weight", "Staged weight",
          writer ? "" : null].filter((x) => x !== null),
        r.groups.map((x) => {
          const weight = h("input", {type: "number", min: 0, max: 10000, class: "weight",
            value: x.unreleasedWeight === null ? "" : String(x.unreleasedWeight),
            "aria-label": "staged weight"});
          const staged = x.unreleasedWeight !== x.weight;
          return [groupLabel(x.groupId), x.weight === null ? "-" : count(x.weight),
            [writer ? weight : (x.unreleasedWeight === null ? "-" : count(x.unreleasedWeight)),
              staged ? badge("not released", "starting") : null],
            writer ? h("div", {class: "row-actions"},
              h("button", {type: "button", class: "small", onclick: () => call(
                G + "/update-route-rule-groups.json", {routeRuleGroups: [{
                  routeRuleId: r.routeRuleId, groupId: x.groupId,
                  unreleasedWeight: Number(weight.value)}]})}, "Stage"),
              h("button", {type: "button", class: "small quiet", onclick: confirmed(
                "Remove a group from a route rule", `${groupLabel(x.groupId)} leaves route ` +
                  `rule ${r.name}.`, "Remove", G + "/delete-route-rule-groups.json",
                {routeRuleGroupIds: [x.routeRuleGroupId]})}, "Remove")) : null]
            .filter((c) => c !== null);
        })) : empty("No group in this rule."),
        writer ? h("div", {class: "row-actions"},
          h("button", {type: "button", class: "primary small", disabled: !pending.length,
            onclick: () => call(G + "/release-route-rule-groups.json", {routeRuleGroups:
              pending.map((x) => ({routeRuleId: r.routeRuleId, groupId: x.groupId}))})},
          pending.length ? `Release ${pending.length} staged weight(s)` : "Nothing staged"),
          addToRule(r, m.groups),
          h("button", {type: "button", class: "small quiet", onclick: confirmed(
            r.status === "active" ? "Deactivate a route rule" : "Activate a route rule",
            `Route rule ${r.name} ` + (r.status === "active" ? "is no longer shown by " +
              "discovery." : "is shown by discovery again."),
            r.status === "active" ? "Deactivate" : "Activate",
            G + "/update-route-rules.json", {routeRules: [{serviceId: d.serviceId,
              name: r.name, description: r.description, strategy: r.strategy,
              status: r.status === "active" ? "inactive" : "active"}]})},
          r.status === "active" ? "Deactivate" : "Activate"),
          h("button", {type: "button", class: "small quiet", onclick: confirmed(
            "Delete a route rule", `Route rule ${r.name} is deleted.`,
            "Delete", G + "/delete-route-rules.json", {routeRuleIds: [r.routeRuleId]})},
          "Delete"))
          : null);
    }) : empty("No route rule.");

    replace(body,
      h("p", null, h("a", {href: route("/service/" + encodeURIComponent(d.serviceId))},
        "Instances of " + d.serviceId)),
      h("section", {class: "card"}, h("h2", null, "Groups"), groups,
        writer ? newGroup(d) : null),
      h("section", {class: "card"}, h("h2", null, "Route rules"), rules,
        writer ? newRule(d) : null),
      writer ? h("section", {class: "card"}, h("h2", null, "Canary"), canary(d)) : null);
  }

  function addToRule(rule, groups) {
    const taken = new Set(rule.groups.map((x) => x.groupId));
    const free = groups.filter((g) => !taken.has(g.groupId));
    if (!free.length) return null;
    const pick = h("select", {name: "add-group", "aria-label": "group"}, free.map((g) =>
      h("option", {value: String(g.groupId)}, `${g.name} (${g.zoneId})`)));
    const weight = h("input", {type: "number", min: 0, max: 10000, value: "0", class: "weight",
      name: "add-weight", "aria-label": "weight"});
    return h("span", {class: "inline"}, pick, weight, h("button", {type: "button",
      class: "small", onclick: () => call(G + "/insert-route-rule-groups.json", {
        routeRuleGroups: [{routeRuleId: rule.routeRuleId, groupId: Number(pick.value),
          unreleasedWeight: Number(weight.value)}]})}, "Add group (staged)"));
  }

  function newGroup(d) {
    const name = h("input", {type: "text", name: "group-name", required: true,
      spellcheck: "false"});
    const zone = h("input", {type: "text", name: "group-zone", required: true,
      spellcheck: "false"});
    return h("form", {class: "inline", onsubmit: (event) => {
      event.preventDefault();
      call(G + "/insert-groups.json", {groups: [{serviceId: d.serviceId, regionId: region(),
        zoneId: zone.value.trim(), name: name.value.trim(), status: "active"}]});
    }}, field("New group", name), field("Zone", zone),
    h("button", {type: "submit"}, "Add group"));
  }

  function newRule(d) {
    const name = h("input", {type: "text", name: "rule-name", required: true,
      spellcheck: "false"});
    const strategy = h("input", {type: "text", name: "rule-strategy", required: true,
      spellcheck: "false", value: "weighted-round-robin"});
    return h("form", {class: "inline", onsubmit: (event) => {
      event.preventDefault();
      call(G + "/insert-route-rules.json", {routeRules: [{serviceId: d.serviceId,
        name: name.value.trim(), status: "active", strategy: strategy.value.trim()}]});
    }}, field("New route rule", name), field("Strategy", strategy),
    h("button", {type: "submit"}, "Add rule"));
  }

  function canary(d) {
    const app = h("input", {type: "text", name: "canary-app", required: true,
      spellcheck: "false"});
    const ids = h("input", {type: "text", name: "canary-ids", spellcheck: "false",
      placeholder: "instance ids, separated by spaces or commas"});
    return h("form", {class: "inline", onsubmit: (event) => {
      event.preventDefault();
      call("/api/management/canary/update-canary-ips.json", {serviceId: d.serviceId,
        appId: app.value.trim(), canaryIps: ids.value.split(/[\s,]+/).filter(Boolean)});
    }}, field("App id", app), field("Canary instances", ids, "the canary group's members: " +
      "they take the canary-route-rule's weight (5 until released)"),
    h("button", {type: "submit"}, "Set canary"));
  }

  input.addEventListener("change", () => {
    serviceId = input.value.trim();
    history.replaceState(null, "", route("/groups", {service: serviceId}));
    load();
  });
  const refused = needs("read", "groups and route rules");
  replace(el, h("h1", null, "Groups and route rules"), message,
    refused || [h("div", {class: "toolbar"}, input), body]);
  if (!refused) load();
  return () => { alive = false; };
}
