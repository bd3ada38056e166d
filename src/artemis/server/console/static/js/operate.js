// Pulling instances, servers and zones out of discovery and back in: the dialog that asks for
// the operation and the reason, and the calls. Every call shows the node's answer.

import {post} from "./api.js";
import {field, h, replace} from "./dom.js";
import * as session from "./session.js";

const M = "/api/management";

function context(operation, complete, reason) {
  return {operation, operationComplete: complete, operatorId: session.operator() || "console",
    reason: reason || null};
}

export function operateInstance(region, serviceId, instanceId, operation, complete, reason) {
  return post(M + "/operate-instance.json", {
    instanceKey: {regionId: region, serviceId, instanceId},
    ...context(operation, complete, reason)});
}

export function operateServer(region, serverId, operation, complete, reason) {
  return post(M + "/operate-server.json", {
    serverKey: {regionId: region, serverId}, ...context(operation, complete, reason)});
}

export function operateZone(region, serviceId, zoneId, operation, complete, reason) {
  return post(M + "/zone/operate-zone-operations.json", {
    zoneOperationsList: [{zoneKey: {regionId: region, serviceId, zoneId},
      operations: [operation]}],
    ...context(operation, complete, reason)});
}

// The dialog: what (a sentence), out or in, the operations in force (to choose the one to end
// when pulling in); `run(operation, reason)` makes the call and returns its Answer.
// `done(answer)` is told the answer once the node gave it.
export function askOperation({what, pullIn, operations, run, done}) {
  const dialog = document.getElementById("operate");
  const known = (operations || []).filter(Boolean);
  const operation = pullIn && known.length > 1
    ? h("select", {name: "operation"}, known.map((o) => h("option", {value: o}, o)))
    : h("input", {type: "text", name: "operation", value: known[0] || "pull-out",
      required: true, spellcheck: "false"});
  const reason = h("input", {type: "text", name: "reason", maxlength: 1024,
    placeholder: pullIn ? "why it goes back in" : "why it goes out"});
  const operatorName = h("input", {type: "text", name: "operator",
    value: session.operator(), required: true});
  const answer = h("p", {class: "answer", role: "status"});
  const submit = h("button", {type: "submit", class: pullIn ? "primary" : "danger"},
    pullIn ? "Pull in" : "Pull out");
  const form = h("form", {onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    session.setOperator(operatorName.value.trim());
    replace(answer, "Asking the node...");
    const result = await run(operation.value.trim(), reason.value.trim());
    replace(answer, h("span", {class: result.ok ? "ok" : "problem"}, result.words));
    submit.disabled = false;
    if (result.ok) submit.remove();
    if (done) done(result);
  }},
  h("h2", null, pullIn ? "Pull back in" : "Pull out of discovery"),
  h("p", null, what),
  field("Operation", operation, pullIn ? "the operation to end" : "recorded in the audit log"),
  field("Reason", reason), field("Operator", operatorName, "recorded as operatorId"),
  answer,
  h("div", {class: "actions"}, submit,
    h("button", {type: "button", onclick: () => dialog.close()}, "Close")));
  replace(dialog, form);
  dialog.showModal();
  operation.focus();
}

// A change that takes something away (delete, deactivate, remove): said in words, with a
// reason for the audit log, and made only once confirmed. `run(reason)` returns the Answer.
export function askConfirm({title, what, button, run, done}) {
  const dialog = document.getElementById("operate");
  const reason = h("input", {type: "text", name: "reason", maxlength: 1024});
  const operatorName = h("input", {type: "text", name: "operator",
    value: session.operator(), required: true});
  const answer = h("p", {class: "answer", role: "status"});
  const submit = h("button", {type: "submit", class: "danger"}, button);
  const form = h("form", {onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    session.setOperator(operatorName.value.trim());
    replace(answer, "Asking the node...");
    const result = await run(reason.value.trim());
    replace(answer, h("span", {class: result.ok ? "ok" : "problem"}, result.words));
    submit.disabled = false;
    if (result.ok) submit.remove();
    if (done) done(result);
  }},
  h("h2", null, title), h("p", null, what),
  field("Reason", reason), field("Operator", operatorName, "recorded as operatorId"), answer,
  h("div", {class: "actions"}, submit,
    h("button", {type: "button", onclick: () => dialog.close()}, "Close")));
  replace(dialog, form);
  dialog.showModal();
  reason.focus();
}
