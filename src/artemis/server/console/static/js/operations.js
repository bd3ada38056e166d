// What is pulled out now (instances, servers, zones), for a token with the read role; with
// the write role, pulling anything back in, or out by its key.

import {get} from "./api.js";
import {empty, field, h, replace, route, table} from "./dom.js";
import {askOperation, operateInstance, operateServer, operateZone} from "./operate.js";
import * as session from "./session.js";

const M = "/api/management";

export function needs(role, what) {
  const who = session.identity();
  if (!who.management) {
    return h("p", {class: "empty"}, "This node has no management database: " + what +
      " cannot be read or changed here.");
  }
  if (!session.can(role)) {
    return h("p", {class: "empty"}, `Sign in with a token that has the ${role} role to ` +
      `see ${what}.`);
  }
  return null;
}

export function mountOperations(el) {
  const message = h("p", {class: "answer", role: "status"});
  const lists = h("div");
  const region = () => session.identity().region;
  let alive = true;

  function tell(answer) {
    replace(message, h("span", {class: answer.ok ? "ok" : "problem"}, answer.words));
    if (answer.ok) load();
  }

  function pullIn(what, operations, run) {
    return h("button", {type: "button", class: "small", dataset: {action: "pull-in"},
      onclick: () => askOperation({what, pullIn: true, operations, run, done: tell})},
    "Pull in");
  }

  async function load() {
    const [instances, servers, zones] = await Promise.all([
      get(M + "/all-instance-operations.json"), get(M + "/all-server-operations.json"),
      get(M + "/zone/get-all-zone-operations.json")]);
    if (!alive) return;
    const writer = session.can("write");
    const failed = [instances, servers, zones].find((a) => !a.ok);
    if (failed) {
      replace(lists, h("p", {class: "problem"}, failed.words));
      return;
    }
    const rowsOf = (items, cells) => items.map((item) => cells(item));
    replace(lists,
      h("section", {class: "card"}, h("h2", null, "Instances"),
        instances.data.allInstanceOperations.length ? table(
          ["Service", "Instance", "Operations", writer ? "" : null].filter((x) => x !== null),
          rowsOf(instances.data.allInstanceOperations, (o) => [
            h("a", {href: route("/service/" + encodeURIComponent(o.instanceKey.serviceId))},
              o.instanceKey.serviceId),
            h("span", {class: "mono"}, o.instanceKey.instanceId), o.operations.join(", "),
            writer ? pullIn(`Instance ${o.instanceKey.instanceId} of ` +
              `${o.instanceKey.serviceId} comes back once no operation is left.`,
            o.operations, (op, reason) => operateInstance(region(), o.instanceKey.serviceId,
              o.instanceKey.instanceId, op, true, reason)) : null].filter((x) => x !== null)))
          : empty("No instance is pulled out.")),
      h("section", {class: "card"}, h("h2", null, "Servers"),
        servers.data.allServerOperations.length ? table(
          ["Server", "Operations", writer ? "" : null].filter((x) => x !== null),
          rowsOf(servers.data.allServerOperations, (o) => [
            h("span", {class: "mono"}, o.serverKey.serverId), o.operations.join(", "),
            writer ? pullIn(`Server ${o.serverKey.serverId}: its instances come back.`,
              o.operations, (op, reason) => operateServer(region(), o.serverKey.serverId, op,
                true, reason)) : null].filter((x) => x !== null)))
          : empty("No server is pulled out.")),
      h("section", {class: "card"}, h("h2", null, "Zones"),
        zones.data.allZoneOperations.length ? table(
          ["Service", "Zone", "Operations", writer ? "" : null].filter((x) => x !== null),
          rowsOf(zones.data.allZoneOperations, (o) => [
            o.zoneKey.serviceId, o.zoneKey.zoneId, o.operations.join(", "),
            writer ? pullIn(`Zone ${o.zoneKey.zoneId} of ${o.zoneKey.serviceId} comes back.`,
              o.operations, (op, reason) => operateZone(region(), o.zoneKey.serviceId,
                o.zoneKey.zoneId, op, true, reason)) : null].filter((x) => x !== null)))
          : empty("No zone is pulled out.")));
  }

  function pullOutForm() {
    const kind = h("select", {name: "kind"}, h("option", {value: "instance"}, "an instance"),
      h("option", {value: "server"}, "a server (every instance on an ip)"),
      h("option", {value: "zone"}, "a zone of a service"));
    const service = h("input", {type: "text", name: "service", placeholder: "service id"});
    const key = h("input", {type: "text", name: "key",
      placeholder: "instance id, server ip or zone"});
    return h("form", {class: "inline", onsubmit: (event) => {
      event.preventDefault();
      const k = kind.value;
      const s = service.value.trim();
      const id = key.value.trim();
      askOperation({what: `Pull out ${k} ${id}` + (k === "server" ? "" : ` of ${s}`) + ".",
        pullIn: false, done: tell, run: (op, reason) => k === "instance"
          ? operateInstance(region(), s, id, op, false, reason)
          : k === "server" ? operateServer(region(), id, op, false, reason)
            : operateZone(region(), s, id, op, false, reason)});
    }}, field("Pull out", kind), field("Service", service), field("Key", key),
    h("button", {type: "submit", class: "danger"}, "Pull out..."));
  }

  const refused = needs("read", "what is pulled out");
  replace(el, h("h1", null, "Pull-outs"), message,
    refused || [session.can("write") ? h("section", {class: "card"}, pullOutForm()) : null,
      lists]);
  if (!refused) load();
  return () => { alive = false; };
}
