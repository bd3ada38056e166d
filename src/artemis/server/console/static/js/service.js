// One service: its instances live (changes pushed by the node, the page fetched again at
// once), their zone, status, lease, metadata and group; its route rules; and, for a token
// with the write role, pulling an instance, its server or a zone out and back in.

import {get} from "./api.js";
import {INSTANCES_PAGE, SERVICE_EVERY_MS} from "./config.js";
import {badge, count, empty, h, outsideLink, replace, route, table} from "./dom.js";
import {Subscription} from "./live.js";
import {askOperation, operateInstance, operateServer, operateZone} from "./operate.js";
import * as session from "./session.js";

function leaseText(deadline) {
  const left = Math.round((deadline - Date.now()) / 1000);
  return left >= 0 ? `${left} s left` : `expired ${-left} s ago (held)`;
}

function metadata(meta) {
  const entries = Object.entries(meta || {});
  if (!entries.length) return "";
  return h("ul", {class: "meta"}, entries.map(([k, v]) => h("li", null,
    h("span", {class: "key"}, k), "=", h("span", {class: "value"}, v))));
}

function ops(operations) {
  if (!operations) return null;
  return Object.entries(operations).map(([kind, names]) =>
    h("div", {class: "dim"}, `${kind}: ${names.join(", ")}`));
}

export function mountService(el, params, ctx) {
  const serviceId = params.serviceId;
  let filter = params.filter || "";
  let offset = Math.max(0, Number(params.offset) || 0);
  let data = null;
  let fetching = false;
  let again = false;
  let pendingCause = "load";
  let framesSinceRender = 0;
  let alive = true;
  let connected = false;
  const region = () => session.identity().region || (ctx.overview && ctx.overview.node.region);

  const title = h("h1", null, h("span", {class: "dim"}, "Service "),
    h("span", {class: "mono", id: "service-id"}, serviceId));
  const liveState = h("span", {class: "live", role: "status"}, "connecting");
  const summary = h("p", {class: "dim"});
  const message = h("p", {class: "answer", role: "status"});
  const zones = h("div", {class: "zones"});
  const input = h("input", {type: "search", value: filter, placeholder: "filter by id or ip",
    "aria-label": "Filter instances", spellcheck: "false"});
  const instances = h("div", {class: "results"});
  const pager = h("div", {class: "pager"});
  const rules = h("section", {class: "card"});
  const leases = [];

  const subscription = new Subscription(serviceId, "", {
    onFrame: () => {
      framesSinceRender += 1;
      refresh("push");
    },
    onState: (state, text) => {
      liveState.className = "live " + state;
      liveState.dataset.state = state;
      replace(liveState, state === "live" ? "live" : state, text ? " · " + text : "");
      if (state === "live" && connected) refresh("reconnect");  // the first: nothing missed
      if (state === "live") connected = true;
    },
    onError: (text) => replace(message, h("span", {class: "problem"}, "Push: " + text)),
  });

  function tell(answer) {
    replace(message, h("span", {class: answer.ok ? "ok" : "problem"}, answer.words));
    if (answer.ok) refresh("action");
  }

  // Fetch the page again now, or right after the fetch under way (never two at once).
  async function refresh(cause) {
    if (!alive) return;
    if (fetching) {
      again = true;
      pendingCause = cause === "push" || pendingCause === "push" ? "push" : cause;
      return;
    }
    fetching = true;
    const answer = await get("/api/console/service.json",
      {serviceId, filter, offset, limit: INSTANCES_PAGE});
    fetching = false;
    if (!alive) return;
    if (answer.ok) {
      data = answer.data;
      subscription.seen(data.pushRevision);
      render(framesSinceRender ? "push" : cause);
      framesSinceRender = 0;
    } else {
      replace(summary, h("span", {class: "problem"}, answer.words));
    }
    if (again) {
      again = false;
      refresh(pendingCause);
    }
  }

  function actions(i) {
    if (!session.can("write") || !session.identity().management) return null;
    const pulledIn = i.pulledOut;
    const mine = (i.operations && i.operations.instance) || [];
    const buttons = [];
    if (!pulledIn || !mine.length) {
      buttons.push(h("button", {type: "button", class: "danger small",
        dataset: {action: "pull-out"}, onclick: () => askOperation({
          what: `Instance ${i.instanceId} of ${data.serviceId} leaves discovery; it stays ` +
            "registered and keeps its lease.",
          pullIn: false, run: (op, reason) => operateInstance(region(), data.serviceId,
            i.instanceId, op, false, reason), done: tell})}, "Pull out"));
    }
    if (pulledIn) {
      buttons.push(h("button", {type: "button", class: "small", dataset: {action: "pull-in"},
        onclick: () => askOperation({
          what: `Instance ${i.instanceId} of ${data.serviceId} comes back once no ` +
            "operation is left on it, its server or its zone.",
          pullIn: true, operations: mine, run: (op, reason) => operateInstance(region(),
            data.serviceId, i.instanceId, op, true, reason), done: tell})}, "Pull in"));
    }
    if (i.ip) {
      const server = (i.operations && i.operations.server) || [];
      buttons.push(h("button", {type: "button", class: "small quiet",
        dataset: {action: server.length ? "server-in" : "server-out"},
        onclick: () => askOperation({
          what: `Server ${i.ip}: every instance on it, of every service, ` +
            (server.length ? "comes back." : "leaves discovery."),
          pullIn: server.length > 0, operations: server,
          run: (op, reason) => operateServer(region(), i.ip, op, server.length > 0, reason),
          done: tell})}, server.length ? "Server in" : "Server out"));
    }
    return h("div", {class: "row-actions"}, buttons);
  }

  function render(cause) {
    const d = data;
    const writer = session.can("write") && session.identity().management;
    leases.length = 0;
    replace(summary, d.exists
      ? `${count(d.total)} instances, ${count(d.visible)} shown by discovery, ` +
        `${count(d.total - d.visible)} pulled out` +
        (d.logicInstances ? `, ${count(d.logicInstances)} logical` : "")
      : "No instance of this service is registered on this node.");
    const zoneOps = (d.management && d.management.zoneOperations) || {};
    const zoneNames = [...new Set([...Object.keys(d.zones || {}), ...Object.keys(zoneOps)])]
      .sort();
    replace(zones, zoneNames.map((zone) => {
      const out = zoneOps[zone] || [];
      return h("span", {class: "zone"}, h("strong", null, zone || "(no zone)"), " ",
        count((d.zones || {})[zone] || 0), out.length ? badge("pulled out", "down") : null,
        writer && zone ? h("button", {type: "button", class: "small quiet",
          dataset: {action: out.length ? "zone-in" : "zone-out"}, onclick: () => askOperation({
            what: `Zone ${zone} of ${d.serviceId}: every instance of the service in it ` +
              (out.length ? "comes back." : "leaves discovery."),
            pullIn: out.length > 0, operations: out,
            run: (op, reason) => operateZone(region(), d.serviceId, zone, op, out.length > 0,
              reason), done: tell})}, out.length ? "Zone in" : "Zone out") : null);
    }));
    const now = Date.now();
    const rows = d.instances.map((i) => {
      const lease = h("span", {class: "lease"}, leaseText(now + i.leaseRemainingMs));
      leases.push([lease, now + i.leaseRemainingMs]);
      return h("tr", {dataset: {instanceId: i.instanceId}, class: i.pulledOut ? "out" : ""},
        h("td", {class: "mono"}, i.instanceId, i.legacy ? badge("legacy", "unknown") : null),
        h("td", {class: "mono"}, (i.ip || "") + (i.port ? ":" + i.port : "")),
        h("td", null, i.zoneId || ""), h("td", null, i.groupId || ""),
        h("td", null, i.pulledOut ? badge("pulled out", "down") : badge(i.status || "up",
          i.status && i.status !== "up" ? "unknown" : "up"), ops(i.operations)),
        h("td", {class: "num"}, lease),
        h("td", null, metadata(i.metadata)),
        h("td", null, outsideLink(i.url)),
        writer ? h("td", null, actions(i)) : null);
    });
    const head = ["Instance", "Address", "Zone", "Group", "Status", "Lease", "Metadata", "URL"];
    if (writer) head.push("Actions");
    replace(instances, rows.length ? table(head, rows, {class: "instances",
      dataset: {cause}}) : h("p", {class: "empty", dataset: {cause}},
      d.matching === 0 && filter ? "No instance matches the filter." : "No instance."));
    const last = offset + d.instances.length;
    replace(pager, d.matching > INSTANCES_PAGE ? [
      h("span", {class: "dim"}, `${count(offset + 1)}-${count(last)} of ${count(d.matching)}`),
      h("button", {type: "button", disabled: offset === 0, onclick: () => page(-1)},
        "Previous"),
      h("button", {type: "button", disabled: last >= d.matching, onclick: () => page(1)},
        "Next")] : []);
    renderRules(d);
  }

  function renderRules(d) {
    const shown = d.routeRules || [];
    const managed = d.management;
    replace(rules, h("h2", null, "Route rules"),
      shown.length ? table(["Rule", "Strategy", "Groups and weights (released)"],
        shown.map((r) => [h("span", {class: "mono"}, r.routeId || ""), r.strategy || "",
          (r.groups || []).map((g) => h("div", null, h("span", {class: "mono"},
            g.groupKey || ""), ` weight ${g.weight === null ? "-" : g.weight}`))]))
        : empty("Discovery shows no route rule for this service."),
      managed ? h("p", null, `${managed.groups.length} groups, ` +
        `${managed.routeRules.length} route rules in the management database: `,
      h("a", {href: route("/groups", {service: d.serviceId})}, "groups and route rules"))
        : null);
  }

  function page(step) {
    offset = Math.max(0, offset + step * INSTANCES_PAGE);
    refresh("page");
  }

  let delay = null;
  input.addEventListener("input", () => {
    clearTimeout(delay);
    delay = setTimeout(() => {
      filter = input.value.trim();
      offset = 0;
      refresh("filter");
    }, 150);
  });

  replace(el, h("p", null, h("a", {href: route("/services")}, "Services")), title,
    h("div", {class: "toolbar"}, liveState, summary), message, zones,
    h("div", {class: "toolbar"}, input), instances, pager, rules);
  if (!serviceId) {
    replace(instances, empty("No service named."));
    return () => {};
  }
  refresh("load").then(() => subscription.open());
  const ticking = setInterval(() => {
    for (const [node, deadline] of leases) node.textContent = leaseText(deadline);
  }, 1000);
  const polling = setInterval(() => document.hidden || refresh("poll"), SERVICE_EVERY_MS);
  return () => {
    alive = false;
    clearInterval(ticking);
    clearInterval(polling);
    clearTimeout(delay);
    subscription.close();
  };
}
