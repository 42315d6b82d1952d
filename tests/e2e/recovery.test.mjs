// Connection state recovery across the workers of a Node cluster (issue 13),
// with the official socket.io-client 4.8: the real primary, real socket.io
// workers (`SIO_DEMO_RECOVERY_MS` on), the component through jco.
//
// A client is disconnected by closing its transport (`engine.close()`),
// broadcasts go to its rooms meanwhile, then it reconnects: `recovered` is
// true, its rooms and `data` are back and the missed packets arrive once and
// in order — on the same worker, on the other worker, again and again
// (socket.io#4880), after the worker it was on was killed with SIGKILL
// (socket.io#5413), also on the worker started in its place; after
// `maxDisconnectionDuration` it gets a fresh session.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KINDS, call, sleep, startCluster } from "./cluster.mjs";
import { checkRestored, client, drop, expectEvents, reconnect, send, waitFor as until } from "./recovery-client.mjs";

const RECOVERY_MS = 4000;
const run = KINDS.includes("node") ? describe : describe.skip;

run("connection state recovery (node workers)", () => {
  let cluster;
  let saved;
  before(async () => {
    saved = process.env.SIO_DEMO_RECOVERY_MS;
    process.env.SIO_DEMO_RECOVERY_MS = String(RECOVERY_MS);
    cluster = await startCluster(2, [], "node");
  });
  after(async () => {
    await cluster?.stop();
    if (saved === undefined) delete process.env.SIO_DEMO_RECOVERY_MS;
    else process.env.SIO_DEMO_RECOVERY_MS = saved;
  });

  /** A client on one worker and a sender on the other; the client in `room` with data. */
  async function pair(room) {
    const c = await client(cluster.url);
    let sender;
    for (let i = 0; i < 8 && !sender; i++) {
      const s = await client(cluster.url);
      if (s.worker !== c.worker) sender = s;
      else s.disconnect();
    }
    assert.ok(sender, "a sender on the other worker");
    assert.equal(await call(c, "join", room), true);
    assert.equal(await call(c, "set_data", { user: "ada", n: 1 }), true);
    // One packet first: the client needs an offset (socket.io#5538).
    await send(sender, room, 0, 1);
    await expectEvents(c, [0]);
    return { c, sender };
  }

  test("same worker, other worker, again and again: missed packets once and in order", async () => {
    const room = "r-cycle";
    const { c, sender } = await pair(room);
    const sid = c.id;
    const landed = [];
    let next = 1;
    const expected = [0];
    for (let cycle = 0; cycle < 4; cycle++) {
      const was = c.worker;
      await drop(c);
      await send(sender, room, next, next + 3);
      for (let i = next; i < next + 3; i++) expected.push(i);
      next += 3;
      await reconnect(c);
      landed.push(c.worker === was ? "same" : "other");
      await checkRestored(c, room, sid);
      await expectEvents(c, expected);
      // Live packets after the restore, with the new worker's offsets.
      await send(sender, room, next, next + 2);
      for (let i = next; i < next + 2; i++) expected.push(i);
      next += 2;
      await expectEvents(c, expected);
    }
    assert.ok(landed.includes("same") && landed.includes("other"), `landed: ${landed}`);
    c.disconnect();
    sender.disconnect();
  });

  test("ack packets are not replayed; io.emit() and room emits are", async () => {
    const room = "r-kinds";
    const { c, sender } = await pair(room);
    const questions = [];
    c.on("question", (...args) => questions.push(args));
    await drop(c);
    sender.emit("to", room, "ev", 1);
    // A broadcast with acks to the room (nobody answers): never logged.
    const asked = await call(sender, "ask", room, 300);
    assert.equal(asked.err, null);
    sender.emit("all", "ev", 2);
    await send(sender, room, 3, 4);
    await reconnect(c);
    assert.equal(c.recovered, true);
    await expectEvents(c, [0, 1, 2, 3]);
    assert.deepEqual(questions, [], "no ack packet replayed");
    c.disconnect();
    sender.disconnect();
  });

  test("the worker the client was on is killed (SIGKILL): restored on the other one", async () => {
    const room = "r-kill";
    const { c, sender } = await pair(room);
    const sid = c.id;
    const victim = c.worker;
    const gone = new Promise((resolve) => c.once("disconnect", resolve));
    const serving = () => cluster.log.join("").split("demo worker serving").length - 1;
    const before = serving();
    process.kill(c.workerPid, "SIGKILL");
    await gone;
    await send(sender, room, 1, 4);
    // Wait for the replacement worker, then make sure the next session goes
    // to the survivor (round-robin): the probe must land on the replacement.
    await until(() => serving() > before, 30_000, "the replacement worker");
    for (let i = 0; i < 4; i++) {
      const probe = await client(cluster.url);
      const onVictim = probe.worker === victim;
      probe.disconnect();
      if (onVictim) break;
    }
    await reconnect(c);
    assert.notEqual(c.worker, victim, "restored on the survivor");
    await checkRestored(c, room, sid);
    await expectEvents(c, [0, 1, 2, 3]);
    c.disconnect();
    sender.disconnect();
  });

  test("the worker the client was on is killed (SIGKILL): restored on its replacement", async () => {
    // The replacement starts after the session and the missed packets were
    // logged: it gets the sessions from every worker and the log's history
    // from one (adapter/src/recovery.rs), then restores the client.
    const room = "r-kill-replacement";
    const { c, sender } = await pair(room);
    const sid = c.id;
    const victim = c.worker;
    const gone = new Promise((resolve) => c.once("disconnect", resolve));
    const serving = () => cluster.log.join("").split("demo worker serving").length - 1;
    const before = serving();
    process.kill(c.workerPid, "SIGKILL");
    await gone;
    await send(sender, room, 1, 4);
    await until(() => serving() > before, 30_000, "the replacement worker");
    // More packets once the replacement runs: logged there live.
    await send(sender, room, 4, 6);
    // Round-robin: after a probe on the survivor, the next session goes to
    // the replacement.
    for (let i = 0; i < 4; i++) {
      const probe = await client(cluster.url);
      const onSurvivor = probe.worker !== victim;
      probe.disconnect();
      if (onSurvivor) break;
    }
    await reconnect(c);
    assert.equal(c.worker, victim, "restored on the replacement");
    await checkRestored(c, room, sid);
    await expectEvents(c, [0, 1, 2, 3, 4, 5]);
    c.disconnect();
    sender.disconnect();
  });

  test("after maxDisconnectionDuration: a fresh session", async () => {
    const room = "r-expire";
    const { c, sender } = await pair(room);
    const sid = c.id;
    await drop(c);
    await send(sender, room, 1, 2);
    await sleep(RECOVERY_MS + 500);
    await reconnect(c);
    assert.equal(c.recovered, false);
    assert.notEqual(c.id, sid);
    const st = await call(c, "state");
    assert.equal(st.recovered, false);
    assert.deepEqual(st.rooms, [c.id]);
    await sleep(300);
    assert.deepEqual(c.events.map((a) => a[0]), [0], "nothing replayed");
    c.disconnect();
    sender.disconnect();
  });
});
