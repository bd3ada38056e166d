// One service's changes, pushed by the node over its WebSocket
// (/ws/discovery/instance-change). Every frame carries a revision token; after a dropped
// connection the subscription is sent again with the last token seen, and the node replays
// what was missed (or sends a `reload` when it cannot).

import {BASE} from "./api.js";
import {RECONNECT_MS} from "./config.js";

function revisionOf(tokenText) {
  const at = (tokenText || "").lastIndexOf(".");
  return at < 0 ? null : {run: tokenText.slice(0, at), n: Number(tokenText.slice(at + 1))};
}

// Whether token `a` names a later change than token `b` (another run's token always wins).
export function later(a, b) {
  const x = revisionOf(a);
  const y = revisionOf(b);
  if (!x) return false;
  if (!y || x.run !== y.run) return true;
  return x.n > y.n;
}

export class Subscription {
  // onFrame(frame) for each change; onState("connecting" | "live" | "reconnecting" | "closed",
  // text) when the connection changes; onError(message) for an error frame.
  constructor(serviceId, region, {onFrame, onState, onError}) {
    this.serviceId = serviceId;
    this.region = region;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onError = onError || (() => {});
    this.revision = "";
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.closed = false;
    this.frames = 0;
  }

  // Changes after `revision` (a token from service.json or a frame) are what must come.
  seen(revision) {
    if (revision && later(revision, this.revision)) this.revision = revision;
  }

  open() {
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}${BASE}/ws/discovery/instance-change`;
    this.onState(this.attempt ? "reconnecting" : "connecting", "");
    let socket;
    try {
      socket = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      const subscription = {serviceId: this.serviceId, regionId: this.region || null};
      if (this.revision) subscription.revision = this.revision;
      socket.send(JSON.stringify(subscription));
      this.onState("live", "");
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.responseStatus) {
        this.onError(frame.responseStatus.message || frame.responseStatus.errorCode);
        return;
      }
      this.frames += 1;
      this.seen(frame.revision);
      this.onFrame(frame);
    });
    socket.addEventListener("close", () => {
      if (this.socket === socket) this.socket = null;
      if (!this.closed) this.retry();
    });
  }

  retry() {
    const wait = RECONNECT_MS[Math.min(this.attempt, RECONNECT_MS.length - 1)];
    this.attempt += 1;
    this.onState("reconnecting", `connection lost; trying again in ${wait / 1000} s`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), wait);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    this.onState("closed", "");
  }
}
