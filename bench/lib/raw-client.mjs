// A minimal Socket.IO v5 / Engine.IO v4 client over WebSocket only, main
// namespace only, text packets only: just what load.mjs needs, several times
// cheaper per received event than socket.io-client, so that a 2-core machine
// can receive more deliveries. Selected with `load.mjs --client raw`.
//
// The surface mimics the socket.io-client Socket used by load.mjs:
//   connect(url, {timeout}) -> RawSocket; once/on("connect" | "connect_error" |
//   "disconnect" | <event>), emit(event, ...args), timeout(ms).emitWithAck(...),
//   disconnect(), id, connected.
import WebSocket from "ws";

export function connect(url, { timeout = 20000 } = {}) {
  return new RawSocket(url, timeout);
}

class RawSocket {
  constructor(url, timeout) {
    const u = new URL(url);
    u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
    u.pathname = "/socket.io/";
    u.search = "?EIO=4&transport=websocket";
    this.id = undefined;
    this.connected = false;
    this.handlers = new Map(); // event -> [fn]
    this.acks = new Map(); // id -> fn
    this.nextAck = 0;
    this.ws = new WebSocket(u.toString(), { perMessageDeflate: false, handshakeTimeout: timeout });
    this.ws.on("message", (data, isBinary) => this._onFrame(isBinary ? null : data.toString()));
    this.ws.on("error", (e) => {
      if (!this.connected) this._fire("connect_error", e);
    });
    this.ws.on("close", () => {
      if (this.connected) {
        this.connected = false;
        this._fire("disconnect", this._closeReason || "transport close");
      }
    });
  }

  on(event, fn) {
    let l = this.handlers.get(event);
    if (!l) this.handlers.set(event, (l = []));
    l.push(fn);
    return this;
  }
  once(event, fn) {
    const w = (...a) => {
      const l = this.handlers.get(event);
      l.splice(l.indexOf(w), 1);
      fn(...a);
    };
    return this.on(event, w);
  }
  _fire(event, ...args) {
    const l = this.handlers.get(event);
    if (l) for (const fn of l.slice()) fn(...args);
  }

  emit(event, ...args) {
    if (this.ws.readyState !== WebSocket.OPEN) return this;
    let id = "";
    if (typeof args[args.length - 1] === "function") {
      id = String(this.nextAck++);
      this.acks.set(id, args.pop());
    }
    this.ws.send(`42${id}${JSON.stringify([event, ...args])}`);
    return this;
  }

  timeout(ms) {
    return {
      emitWithAck: (event, ...args) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            this.acks.delete(id);
            reject(new Error("operation has timed out"));
          }, ms);
          const id = String(this.nextAck);
          this.emit(event, ...args, (...res) => {
            clearTimeout(timer);
            resolve(res[0]);
          });
        }),
    };
  }

  disconnect() {
    this._closeReason = "io client disconnect";
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send("41");
    this.ws.close();
  }

  _onFrame(s) {
    if (s === null || s.length === 0) return;
    switch (s.charCodeAt(0)) {
      case 0x34: // "4" engine message -> socket.io packet
        return this._onPacket(s);
      case 0x32: // "2" ping
        this.ws.send("3");
        return;
      case 0x30: // "0" open
        this.ws.send("40");
        return;
      case 0x31: // "1" close
        this.ws.close();
        return;
    }
  }

  _onPacket(s) {
    const type = s.charCodeAt(1);
    if (type === 0x32) {
      // "2" EVENT: 42[...] or 42<id>[...]
      let i = 2;
      while (i < s.length && s.charCodeAt(i) !== 0x5b) i++; // '['
      const id = i > 2 ? s.slice(2, i) : null;
      const arr = JSON.parse(i === 2 ? s.slice(2) : s.slice(i));
      const l = this.handlers.get(arr[0]);
      if (!l) return;
      const args = arr.slice(1);
      if (id !== null) args.push((...res) => this.ws.send(`43${id}${JSON.stringify(res)}`));
      for (const fn of l) fn(...args);
    } else if (type === 0x33) {
      // "3" ACK: 43<id>[...]
      let i = 2;
      while (i < s.length && s.charCodeAt(i) !== 0x5b) i++;
      const id = s.slice(2, i);
      const fn = this.acks.get(id);
      if (fn) {
        this.acks.delete(id);
        fn(...JSON.parse(s.slice(i)));
      }
    } else if (type === 0x30) {
      // "0" CONNECT {"sid": ...}
      try {
        this.id = JSON.parse(s.slice(2)).sid;
      } catch {}
      this.connected = true;
      this._fire("connect");
    } else if (type === 0x34) {
      // "4" CONNECT_ERROR
      this._fire("connect_error", new Error(`connect error: ${s.slice(2)}`));
    } else if (type === 0x31) {
      // "1" DISCONNECT from the server
      this._closeReason = "io server disconnect";
      this.ws.close();
    }
  }
}
