// The node at a glance: this node and its peers, counts, self-preservation with its reason,
// replication per peer, the management database, refusals and loop lag; live.

import {ago, badge, count, empty, h, ms, replace, seconds, table} from "./dom.js";

function card(title, ...body) {
  return h("section", {class: "card"}, h("h2", null, title), ...body);
}

function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.filter(Boolean).map(([k, v]) => [h("dt", null, k),
    h("dd", null, v)]));
}

function yesNo(value) {
  return value === null || value === undefined ? "unknown" : value ? "yes" : "no";
}

function safety(title, s) {
  return card(title,
    h("p", {class: "state"}, s.holding ? badge("holding expired leases", "down")
      : s.enabled ? badge("not holding", "up") : badge("switched off", "unknown")),
    h("p", {class: "reason"}, s.reason),
    facts([["Leases", count(s.leases)], ["Renewals in the window", count(s.renewals)],
      ["Peak", count(s.peak)], ["Threshold", `${s.percentage} % of the peak, ` +
        `peak at least ${count(s.minCount)}, window ${s.windowSeconds} s`]]));
}

function nodesTable(o) {
  const me = o.node;
  const rows = [h("tr", {class: "self"},
    h("td", null, badge(me.status)), h("td", {class: "mono"}, me.url, " (this node)"),
    h("td", null, me.zone), h("td", null, yesNo(me.servesRegistry) + " / " +
      yesNo(me.servesDiscovery)), h("td", null, "-"), h("td", null, "-"), h("td", null, "-"),
    h("td", null, "-"), h("td", null, "up " + seconds(me.uptimeSeconds)))];
  for (const p of o.peers) {
    const dropped = p.droppedOverflow + p.droppedExpired + p.droppedFailed;
    rows.push(h("tr", null,
      h("td", null, badge(p.status)), h("td", {class: "mono"}, p.url), h("td", null, p.zone),
      h("td", null, yesNo(p.servesRegistry) + " / " + yesNo(p.servesDiscovery)),
      h("td", {class: "num"}, count(p.queued)),
      h("td", {class: "num"}, p.lagSamples ? ms(p.lagP99Ms) : "-"),
      h("td", {class: "num", title: `overflow ${p.droppedOverflow}, expired ` +
        `${p.droppedExpired}, failed ${p.droppedFailed}`}, count(dropped)),
      h("td", {class: "num"}, count(p.sent)),
      h("td", null, p.lastError ? h("span", {class: "problem"}, p.lastError)
        : "answered " + ago(p.lastAnswerTime, o.serverTime))));
  }
  return table(["Status", "URL", "Zone", "Registry / discovery", "Queue", "Lag p99",
    "Dropped", "Sent", "Last answer"], rows, {class: "nodes"});
}

function render(el, o, error) {
  if (!o) {
    replace(el, error ? h("p", {class: "problem"}, error) : empty("Asking the node..."));
    return;
  }
  const m = o.management;
  const lag = o.loopLag || {};
  const refused = Object.entries(o.rateLimited || {}).sort((a, b) => b[1] - a[1]);
  replace(el,
    error ? h("p", {class: "problem banner", role: "alert"}, error,
      " (showing the last answer)") : null,
    h("h1", null, "Overview"),
    card("Nodes", o.peers.length ? null : h("p", {class: "dim"},
      "No peers: this node is a cluster of one."), nodesTable(o),
    o.bootstrap ? h("p", {class: "dim"}, "Bootstrap: " + (o.bootstrap.state || "") +
      (o.bootstrap.reason ? " (" + o.bootstrap.reason + ")" : "")) : null),
    h("div", {class: "cards"},
      card("Registry", facts([["Instances", count(o.instances)],
        ["Shown by discovery", count(o.visibleInstances)],
        ["Services", count(o.services)], ["Revision", count(o.revision)],
        ["Push sessions", count((o.push || {}).discovery) + " discovery, " +
          count((o.push || {}).registry) + " heartbeat"]])),
      safety("Self-preservation", o.selfPreservation),
      safety("Self-preservation of legacy leases", o.legacySelfPreservation),
      card("Management database", m.enabled
        ? facts([["State", m.available ? badge("answering", "up") : badge("not answering",
          "down")], ["Data version", m.version === null ? "none loaded" : count(m.version)],
        ["Last load", ago(m.lastLoadTime, o.serverTime)],
        ["Pulled out", `${count(m.pulledOut.instances)} instances, ` +
          `${count(m.pulledOut.servers)} servers, ${count(m.pulledOut.zones)} zones`],
        ["Instances hidden", count(m.hiddenInstances)],
        m.lastError ? ["Last error", h("span", {class: "problem"}, m.lastError)] : null])
        : h("p", {class: "dim"}, "No database configured: nothing can be pulled out here.")),
      card("Rate limits", h("p", null, refused.length
        ? count(o.rateLimitedTotal) + " requests refused since the node started"
        : "No request refused since the node started."),
      refused.length ? table(["Limit", "Refused"], refused.slice(0, 8).map(([k, v]) =>
        [h("span", {class: "mono"}, k), count(v)])) : null),
      card("Event loop", facts([["Lag p50 (10 s)", ms(lag.p50Ms)],
        ["Lag p99 (10 s)", ms(lag.p99Ms)], ["Lag max (10 s)", ms(lag.maxMs)],
        ["Samples", count(lag.samples)]]))));
}

export function mountOverview(el, params, ctx) {
  render(el, ctx.overview, "");
  return ctx.onOverview((o, error) => render(el, o, error));
}
