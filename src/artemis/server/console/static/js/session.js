// Who is signed in. The token lives in sessionStorage only (gone when the browser session
// ends, never in a URL, a cookie or a log); its roles come from the node (whoami.json), so the
// console offers only what the token may do.

const TOKEN = "artemis.console.token";
const OPERATOR = "artemis.console.operator";

const listeners = new Set();
let who = {token: null, known: false, roles: [], openReads: false, management: false,
  region: ""};

export function token() {
  return sessionStorage.getItem(TOKEN) || "";
}

export function operator() {
  return sessionStorage.getItem(OPERATOR) || who.token || "";
}

export function setOperator(name) {
  if (name) sessionStorage.setItem(OPERATOR, name);
}

export function identity() {
  return who;
}

export function can(role) {
  return who.roles.includes(role);
}

export function onChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function changed() {
  for (const listener of listeners) listener(who);
}

async function whoami(secret) {
  const headers = {"Accept": "application/json"};
  if (secret) headers["Authorization"] = "Bearer " + secret;
  const base = location.pathname.replace(/\/console(\/.*)?$/, "");
  const response = await fetch(base + "/api/console/whoami.json",
    {headers, cache: "no-store", credentials: "omit"});
  const data = await response.json();
  if (!data.responseStatus || data.responseStatus.errorCode !== "success") {
    throw new Error(data.responseStatus ? data.responseStatus.message : "no answer");
  }
  return data;
}

// Learn what the stored token (or none) may do; a token the node no longer knows is dropped.
export async function refresh() {
  const secret = token();
  try {
    const found = await whoami(secret);
    if (secret && !found.known) {
      sessionStorage.removeItem(TOKEN);
      who = {...found, dropped: true};
    } else {
      who = found;
    }
  } catch {
    who = {...who, roles: []};
  }
  changed();
  return who;
}

// Sign in with `secret`: kept only if the node knows it. Returns an error text or "".
export async function signIn(secret, operatorName) {
  secret = (secret || "").trim();
  if (!secret) return "Enter a token.";
  let found;
  try {
    found = await whoami(secret);
  } catch (error) {
    return "The node did not answer: " + (error && error.message || "network error");
  }
  if (!found.known) {
    return "The node does not know this token: nothing was signed in.";
  }
  sessionStorage.setItem(TOKEN, secret);
  if (operatorName) sessionStorage.setItem(OPERATOR, operatorName);
  who = found;
  changed();
  return "";
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(OPERATOR);
  return refresh();
}
