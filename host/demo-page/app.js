// The demo page: one chat room across the workers of a sio-cluster demo
// cluster, with the official browser client (socket.io.min.js, served by the
// demo itself). Only the events of the demo contract are used:
//   whoami        which worker (and pid) this tab's session landed on
//   join          the room, plus two label rooms ("name:<name>", "worker:<n>")
//                 that other tabs read back with fetch
//   to            room messages ("chat") and arrivals ("presence")
//   server_count  how many workers the adapter knows
//   server_emit   every other worker answers with its index
//   fetch         who is in the room, cluster-wide
//
// Query parameters: room (default "lobby"), name (default random),
// transport ("websocket" or "polling"; the switch button keeps the choice
// for this tab), server (the cluster's URL when this page is served from
// another origin; the cluster must allow that origin: `demo --cors-origin`).
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const room = params.get("room") || "lobby";
  const name = params.get("name") || `guest-${Math.floor(Math.random() * 9000) + 1000}`;
  const server = params.get("server") || undefined;
  const TRANSPORTS = ["websocket", "polling"];
  let transport = params.get("transport") || sessionStorage.getItem("sio-demo-transport") || "websocket";
  if (!TRANSPORTS.includes(transport)) transport = "websocket";

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  let socket = null;
  let me = null; // { worker, pid } of this tab's current session
  let connects = 0;
  let sent = 0;
  let refreshing = false;

  $("room").textContent = room;
  document.title = `${name} · ${room} · sio-cluster demo`;

  function setState(state) {
    body.dataset.state = state;
    $("state").textContent = state;
  }

  function system(text) {
    const li = document.createElement("li");
    li.className = "system";
    li.textContent = text;
    addMessage(li);
  }

  function addMessage(li) {
    const list = $("messages");
    list.append(li);
    while (list.children.length > 200) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  function showChat(msg) {
    if (!msg || typeof msg !== "object") return;
    const li = document.createElement("li");
    li.className = "chat";
    li.dataset.id = String(msg.id);
    li.dataset.from = String(msg.from);
    li.dataset.worker = String(msg.worker);
    li.dataset.pid = String(msg.pid);
    li.dataset.transport = String(msg.transport);
    li.dataset.text = String(msg.text);
    li.dataset.receivedOn = me ? String(me.worker) : "";
    const who = document.createElement("b");
    who.textContent = msg.from === name ? `${msg.from} (you)` : String(msg.from);
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `sent through worker ${msg.worker} (pid ${msg.pid}) over ${msg.transport}` +
      (me ? `, received on worker ${me.worker} (pid ${me.pid}) over ${currentTransport()}` : "");
    li.append(who, `: ${msg.text}`, meta);
    addMessage(li);
  }

  function currentTransport() {
    return socket?.io?.engine?.transport?.name ?? transport;
  }

  function call(event, ...args) {
    return socket.timeout(8000).emitWithAck(event, ...args);
  }

  async function refresh() {
    if (!socket?.connected || !me || refreshing) return;
    refreshing = true;
    try {
      const [count, others, members] = await Promise.all([
        call("server_count"),
        call("server_emit", `page ${name}`),
        call("fetch", room),
      ]);
      $("server-count").textContent = String(count);
      // One entry per worker: this tab's, then every other worker's answer.
      // Worker indices are per machine, so with several machines (through
      // Redis) an index can come back more than once; another worker with
      // this tab's index is on another machine.
      const workers = [me.worker, ...others.responses].sort((a, b) => a - b);
      let mine = false;
      $("workers").replaceChildren(...workers.map((w) => {
        const li = document.createElement("li");
        li.dataset.worker = String(w);
        if (w === me.worker && !mine) {
          mine = true;
          li.textContent = `worker ${w} (this tab, pid ${me.pid})`;
          li.className = "me";
        } else {
          li.textContent = `worker ${w}` + (w === me.worker ? " (another machine)" : "");
        }
        return li;
      }));
      if (others.err) {
        const li = document.createElement("li");
        li.className = "system";
        li.textContent = others.err;
        $("workers").append(li);
      }
      body.dataset.workers = workers.join(",");
      body.dataset.serverCount = String(count);
      $("member-count").textContent = String(members.length);
      $("members").replaceChildren(...members.map((m) => {
        const label = (prefix) => m.rooms.find((r) => r.startsWith(prefix))?.slice(prefix.length) ?? "?";
        const li = document.createElement("li");
        li.dataset.id = m.id;
        li.dataset.worker = label("worker:");
        li.textContent = `${label("name:")} on worker ${label("worker:")}` + (m.id === socket.id ? " (you)" : "");
        if (m.id === socket.id) li.className = "me";
        return li;
      }));
      body.dataset.members = members.map((m) => m.id).sort().join(",");
    } catch (e) {
      // A refresh that times out (a worker going away) is retried on the next tick.
      console.warn("refresh failed:", e.message);
    } finally {
      refreshing = false;
    }
  }

  function connect() {
    setState("connecting");
    $("switch").textContent = `switch to ${transport === "websocket" ? "polling" : "websocket"}`;
    body.dataset.wanted = transport;
    socket = io(server, {
      transports: [transport],
      forceNew: true, // a new Manager: the switch must not reuse the old transport list
      reconnectionDelay: 250,
      reconnectionDelayMax: 2000,
      // Sent on every polling request (browsers cannot set headers on a
      // WebSocket), as an app's auth header would be: from another origin
      // it makes the browser send a CORS preflight first.
      extraHeaders: { "x-demo-tab": name },
    });
    socket.on("connect", async () => {
      const s = socket;
      try {
        const who = await call("whoami");
        await Promise.all([call("join", room), call("join", `name:${name}`), call("join", `worker:${who.worker}`)]);
        if (s !== socket || !s.connected) return;
        me = who;
        connects += 1;
        $("worker").textContent = String(who.worker);
        $("pid").textContent = String(who.pid);
        $("sid").textContent = s.id;
        $("transport").textContent = currentTransport();
        body.dataset.worker = String(who.worker);
        body.dataset.pid = String(who.pid);
        body.dataset.sid = s.id;
        body.dataset.transport = currentTransport();
        body.dataset.connects = String(connects);
        setState("connected");
        system(`connected to worker ${who.worker} (pid ${who.pid}) over ${currentTransport()}`);
        s.emit("to", room, "presence", { name, worker: who.worker });
        refresh();
      } catch (e) {
        system(`cannot join ${room}: ${e.message}`);
      }
    });
    socket.on("disconnect", (reason) => {
      setState("disconnected");
      system(`disconnected (${reason})`);
    });
    socket.on("connect_error", (e) => {
      setState("error");
      body.dataset.error = e.message;
    });
    socket.on("chat", showChat);
    socket.on("presence", (p) => {
      if (p?.name !== name) system(`${p?.name} joined through worker ${p?.worker}`);
      refresh();
    });
    socket.on("question", (_room, ack) => typeof ack === "function" && ack(socket.id));
  }

  $("send").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text || !socket?.connected || !me) return;
    sent += 1;
    socket.emit("to", room, "chat", {
      id: `${name}-${sent}`,
      from: name,
      text,
      worker: me.worker,
      pid: me.pid,
      transport: currentTransport(),
    });
    $("text").value = "";
  });

  $("switch").addEventListener("click", () => {
    transport = transport === "websocket" ? "polling" : "websocket";
    sessionStorage.setItem("sio-demo-transport", transport);
    me = null;
    socket.removeAllListeners();
    socket.disconnect();
    system(`switching to ${transport}`);
    connect();
  });

  setInterval(refresh, 3000);
  connect();
})();
