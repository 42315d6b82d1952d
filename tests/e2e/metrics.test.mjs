// Prometheus metrics (issue 14): a 3-worker cluster with `--metrics`, a load
// run of room broadcasts with the official client, two `kill -9` of one
// worker; the primary's /metrics, parsed by a Prometheus text parser
// (parse-prometheus-text-format), must match what happened: relayed frames
// at least what the load sent across, deliveries, restarts = kills, exits by
// cause, and the workers' own adapter figures (sockets, rooms, nodes) as
// they reported them over the hub link (WorkerStats).
import { test } from "node:test";
import assert from "node:assert/strict";
import { call, clientsPerWorker, KINDS, sleep, startCluster } from "./cluster.mjs";
import { metricsUrl, scrape, until, value } from "./ops.mjs";

const MESSAGES = Number(process.env.SIO_E2E_METRICS_MESSAGES ?? 400);

for (const kind of KINDS) test(`metrics match a load run and two kills (${kind})`, async () => {
  const cluster = await startCluster(3, ["--metrics", "127.0.0.1:0", "--metrics-interval", "200"], kind);
  const url = metricsUrl(cluster);
  let byWorker = await clientsPerWorker(cluster.url, "websocket", 3, 2);
  let all = byWorker.flat();
  try {
    for (const s of all) assert.equal(await call(s, "join", "load"), true);
    const before = await scrape(url);
    const published0 = value(before, "sio_hub_frames_relayed_total", { kind: "publish" });
    const delivered0 = value(before, "sio_hub_frames_delivered_total");
    assert.equal(value(before, "sio_workers"), 3);

    // The workers' reports: 2 clients each on "/", each in its own room and
    // "load"; the demo serves "/" and "/custom", each with 2 other nodes.
    for (let w = 0; w < 3; w++) {
      await until(async () => {
        const m = await scrape(url);
        return value(m, "sio_worker_adapter_sockets", { worker: w }) === 2
          && value(m, "sio_worker_adapter_rooms", { worker: w }) === 3
          && value(m, "sio_worker_adapter_nodes", { worker: w }) === 4
          && value(m, "sio_worker_adapter_namespaces", { worker: w }) === 2;
      }, 10_000, `the adapter figures of worker ${w}`);
    }

    // Load: the two clients of worker 0 and of worker 1 send to the room.
    const senders = [...byWorker[0], ...byWorker[1]];
    const got = new Map(all.map((s) => [s, 0]));
    for (const s of all) s.on("m", () => got.set(s, got.get(s) + 1));
    let mid = null;
    for (let k = 0; k < MESSAGES; k++) {
      senders[k % senders.length].emit("to", "load", "m", { k });
      if (k % 20 === 19) await sleep(2);
      // A scrape during the load run parses and shows it under way.
      if (k === MESSAGES / 2) mid = await scrape(url);
    }
    await until(() => [...got.values()].every((n) => n === MESSAGES), 15_000, "every delivery");
    assert.ok(value(mid, "sio_hub_frames_relayed_total", { kind: "publish" }) >= published0);

    const after = await scrape(url);
    const published = value(after, "sio_hub_frames_relayed_total", { kind: "publish" }) - published0;
    const delivered = value(after, "sio_hub_frames_delivered_total") - delivered0;
    console.log(`metrics (${kind}): ${MESSAGES} room broadcasts sent, hub relayed ${published} publish frames, delivered ${delivered} frames`);
    // Each broadcast crosses the hub as one publish frame, delivered to the 2 other workers.
    assert.ok(published >= MESSAGES, `published ${published} >= ${MESSAGES}`);
    assert.ok(delivered >= 2 * MESSAGES, `delivered ${delivered} >= ${2 * MESSAGES}`);
    assert.ok(value(after, "sio_hub_bytes_received_total") > 0);
    assert.ok(value(after, "sio_hub_bytes_delivered_total") > 0);
    for (let w = 0; w < 3; w++) {
      // Every worker received the broadcasts of the two others' senders.
      assert.ok(value(after, "sio_worker_adapter_frames_in_total", { worker: w }) > 0);
      assert.equal(value(after, "sio_worker_adapter_frames_rejected_total", { worker: w }), 0);
      assert.equal(value(after, "sio_worker_adapter_instance_restarts_total", { worker: w }), 0);
      assert.equal(value(after, "sio_worker_adapter_local_drops_total", { worker: w }), 0);
      assert.equal(value(after, "sio_worker_adapter_link_errors_total", { worker: w }), 0);
    }
    assert.ok(value(after, "sio_http_responses_total", { class: "1xx" }) >= all.length, "one 101 per WebSocket");
    assert.equal(value(after, "sio_http_responses_total", { class: "5xx" }), 0);
    assert.equal(value(after, "sio_hub_protocol_errors_total"), 0);
    assert.equal(value(after, "sio_hub_queue_overflows_total"), 0);
    assert.ok(value(after, "sio_hub_worker_stats_reports_total") > 0);

    // Two kills of worker 2, each waited out until it is back.
    const kills = 2;
    for (let i = 0; i < kills; i++) {
      const victim = byWorker[2][0].pid;
      process.kill(victim, "SIGKILL");
      await until(async () => {
        const m = await scrape(url);
        return value(m, "sio_worker_restarts_total", { worker: 2 }) === i + 1
          && value(m, "sio_worker_up", { worker: 2 }) === 1;
      }, 15_000, `restart ${i + 1} of worker 2`);
      for (const s of all) s.disconnect();
      byWorker = await clientsPerWorker(cluster.url, "websocket", 3, 1);
      all = byWorker.flat();
      assert.notEqual(byWorker[2][0].pid, victim, "a new process");
    }
    const end = await scrape(url);
    assert.equal(value(end, "sio_worker_restarts_total", { worker: 2 }), kills, "restarts = kills");
    assert.equal(value(end, "sio_worker_exits_total", { worker: 2, cause: "signaled" }), kills);
    for (const w of [0, 1]) {
      assert.equal(value(end, "sio_worker_restarts_total", { worker: w }), 0);
      assert.equal(value(end, "sio_worker_exits_total", { worker: w, cause: "signaled" }), 0);
    }
    assert.equal(value(end, "sio_workers_up"), 3);
    // Fast leave: the hub sent NodeDown for the victim's 2 nodes to the 2 others, per kill.
    assert.ok(value(end, "sio_hub_node_down_total") >= kills * 2 * 2);
    assert.ok(value(end, "sio_hub_links_attached_total") >= 3 + kills);

    const notFound = await fetch(url.replace("/metrics", "/other"));
    assert.equal(notFound.status, 404);
  } finally {
    for (const s of all) s.disconnect();
    await cluster.stop();
  }
});
