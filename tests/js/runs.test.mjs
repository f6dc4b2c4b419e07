// Runs through the JS SDK: wait, create/join, every stream mode, joinStream, cancel,
// multitask reject, stateless batches, and other tenants' 404s.

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import {
  ASSISTANT,
  QUESTION,
  clearFaults,
  collect,
  lastValues,
  outsider,
  peer,
  rejectsWith,
  startSlowRun,
  user,
} from "./helpers.mjs";

const sdk = user();
afterEach(clearFaults);

test("runs.wait returns the thread's final values", async () => {
  const { thread_id } = await sdk.threads.create();
  const out = await sdk.runs.wait(thread_id, ASSISTANT, { input: QUESTION });
  assert.ok(out.response.sources.length, "the answer cites the policies");
  assert.deepEqual(
    out.messages.map((m) => m.type),
    ["human", "ai"],
  );
  const [run] = await sdk.runs.list(thread_id);
  assert.equal(run.status, "success");
});

test("runs.create, runs.join, runs.get, runs.list and runs.joinStream", async () => {
  const { thread_id } = await sdk.threads.create();
  let created;
  const run = await sdk.runs.create(thread_id, ASSISTANT, {
    input: QUESTION,
    metadata: { source: "js" },
    streamResumable: true,
    onRunCreated: (meta) => (created = meta),
  });
  assert.equal(run.thread_id, thread_id);
  assert.equal(run.status, "pending");
  assert.deepEqual(run.metadata, { source: "js" });
  assert.deepEqual(created, { run_id: run.run_id, thread_id });

  const joined = await sdk.runs.join(thread_id, run.run_id);
  assert.ok(joined.response.answer);
  assert.equal((await sdk.runs.get(thread_id, run.run_id)).status, "success");
  const listed = await sdk.runs.list(thread_id, { status: "success" });
  assert.deepEqual(
    listed.map((r) => r.run_id),
    [run.run_id],
  );

  // A resumable run's events replay from the start, with ids.
  const replay = await collect(sdk.runs.joinStream(thread_id, run.run_id, { lastEventId: "-1" }));
  assert.equal(replay[0].event, "metadata");
  assert.equal(replay[0].data.run_id, run.run_id);
  assert.ok(lastValues(replay).response.answer);
  const tail = await collect(sdk.runs.joinStream(thread_id, run.run_id, { lastEventId: "1" }));
  assert.equal(tail.length, replay.length - 2, "events after id 1");
});

// What each stream mode sends (the SDK's event names), as the LangGraph server sends them.
const MODES = {
  values: ["values"],
  updates: ["updates"],
  "messages-tuple": ["messages"],
  messages: ["messages/metadata", "messages/partial", "messages/complete"],
  events: ["events"],
  custom: ["custom"],
  debug: ["debug"],
  checkpoints: ["checkpoints"],
  tasks: ["tasks"],
};
const CHECKS = {
  values: (data) => assert.ok(data.at(-1).response.sources.length),
  updates: (data) => assert.ok(data.some((d) => "agent" in d)),
  "messages-tuple": (data) => {
    const [message, meta] = data[0];
    assert.equal(message.type, "AIMessageChunk");
    assert.ok(meta.langgraph_node);
  },
  messages: (data, parts) => {
    assert.ok(parts.some((p) => p.event === "messages/metadata"));
    assert.ok(parts.some((p) => p.event === "messages/partial" || p.event === "messages/complete"));
  },
  events: (data) => {
    const kinds = new Set(data.map((e) => e.event));
    for (const kind of ["on_chain_start", "on_chain_end", "on_chat_model_stream"]) {
      assert.ok(kinds.has(kind), `${kind} in ${[...kinds]}`);
    }
  },
  custom: () => {}, // the graph writes no custom events: the mode is accepted, nothing is sent
  debug: (data) => {
    const types = new Set(data.map((d) => d.type));
    assert.ok(types.has("checkpoint") && types.has("task") && types.has("task_result"), [...types]);
    assert.ok(data.every((d) => typeof d.step === "number" && d.payload));
  },
  checkpoints: (data) => {
    assert.ok(data.every((c) => c.config && c.metadata && Array.isArray(c.next)));
    assert.ok(data.at(-1).values.response.answer);
  },
  tasks: (data) => {
    const names = new Set(data.map((t) => t.name));
    assert.ok(names.has("agent") && names.has("finalize"), [...names]);
    assert.ok(data.some((t) => "input" in t) && data.some((t) => "result" in t));
  },
};

describe("runs.stream in every stream mode", () => {
  for (const [mode, names] of Object.entries(MODES)) {
    test(mode, async () => {
      const { thread_id } = await sdk.threads.create();
      const parts = await collect(
        sdk.runs.stream(thread_id, ASSISTANT, { input: QUESTION, streamMode: mode }),
      );
      assert.equal(parts[0].event, "metadata");
      const events = new Set(parts.slice(1).map((p) => p.event));
      assert.ok(!events.has("error"), JSON.stringify(parts.find((p) => p.event === "error")));
      for (const event of events) assert.ok(names.includes(event), `${mode} sent ${event}`);
      if (mode !== "custom") assert.ok(events.size, `${mode} sent nothing`);
      const data = parts.filter((p) => names.includes(p.event)).map((p) => p.data);
      CHECKS[mode](data, parts);
      const [run] = await sdk.runs.list(thread_id);
      assert.equal(run.run_id, parts[0].data.run_id);
      assert.equal(run.status, "success");
    });
  }

  test("all modes at once", async () => {
    const parts = await collect(
      sdk.runs.stream(null, ASSISTANT, { input: QUESTION, streamMode: Object.keys(MODES) }),
    );
    const events = new Set(parts.map((p) => p.event));
    const expected = ["metadata", "values", "updates", "messages", "events", "debug", "tasks"];
    for (const name of [...expected, "checkpoints"]) {
      assert.ok(events.has(name), `${name} missing from ${[...events]}`);
    }
    // As langgraph-api: with both message modes, `messages-tuple` wins.
    assert.ok(!events.has("messages/metadata") && !events.has("messages/partial"), [...events]);
    assert.ok(!events.has("error"));
    assert.ok(lastValues(parts).response.answer);
  });
});

test("threads.joinStream follows the thread's current run to its end", async () => {
  const { thread_id } = await sdk.threads.create();
  assert.deepEqual(await collect(sdk.threads.joinStream(thread_id)), [], "no run: nothing");
  const run = await startSlowRun(sdk, thread_id);
  const parts = await collect(sdk.threads.joinStream(thread_id));
  assert.ok(lastValues(parts).response.answer);
  assert.equal((await sdk.runs.get(thread_id, run.run_id)).status, "success");
  await rejectsWith(collect(outsider().threads.joinStream(thread_id)), 404);
});

test("runs.cancel interrupts a running run", async () => {
  const { thread_id } = await sdk.threads.create();
  const run = await startSlowRun(sdk, thread_id);
  await sdk.runs.cancel(thread_id, run.run_id, true);
  assert.equal((await sdk.runs.get(thread_id, run.run_id)).status, "interrupted");
  assert.notEqual((await sdk.threads.get(thread_id)).status, "busy");
  await rejectsWith(sdk.runs.cancel(thread_id, run.run_id), 404); // no active run by that id
});

test("multitaskStrategy reject answers 409 while a run is active", async () => {
  const { thread_id } = await sdk.threads.create();
  const first = await startSlowRun(sdk, thread_id);
  await rejectsWith(
    sdk.runs.create(thread_id, ASSISTANT, { input: QUESTION, multitaskStrategy: "reject" }),
    409,
  );
  await rejectsWith(
    collect(
      sdk.runs.stream(thread_id, ASSISTANT, { input: QUESTION, multitaskStrategy: "reject" }),
    ),
    409,
  );
  assert.equal((await sdk.threads.get(thread_id)).status, "busy");
  assert.ok((await sdk.runs.join(thread_id, first.run_id)).response.answer);
  assert.equal((await sdk.runs.list(thread_id)).length, 1, "the rejected runs were not made");
});

test("runs.createBatch queues stateless runs (POST /runs/batch)", async () => {
  const runs = await sdk.runs.createBatch([
    { assistantId: ASSISTANT, input: QUESTION },
    { assistantId: ASSISTANT, input: QUESTION, metadata: { n: 2 } },
  ]);
  assert.equal(runs.length, 2);
  assert.deepEqual(
    runs.map((r) => r.metadata?.n),
    [undefined, 2],
  );
  assert.equal(new Set(runs.map((r) => r.thread_id)).size, 2, "one temporary thread each");
  assert.ok(runs.every((r) => r.status === "pending"));
  await rejectsWith(sdk.runs.createBatch([]), 422);
});

test("stateless runs.wait and runs.stream", async () => {
  const out = await sdk.runs.wait(null, ASSISTANT, { input: QUESTION });
  assert.ok(out.response.sources.length);
  const parts = await collect(sdk.runs.stream(null, ASSISTANT, { input: QUESTION }));
  assert.equal(parts[0].event, "metadata");
  assert.equal(parts.at(-1).event, "values");
});

test("another tenant, or another user, gets 404 for a thread's runs", async () => {
  const { thread_id } = await sdk.threads.create();
  const run = await sdk.runs.create(thread_id, ASSISTANT, { input: QUESTION });
  for (const other of [outsider(), peer()]) {
    await rejectsWith(other.runs.get(thread_id, run.run_id), 404);
    await rejectsWith(other.runs.list(thread_id), 404);
    await rejectsWith(other.runs.join(thread_id, run.run_id), 404);
    await rejectsWith(other.runs.create(thread_id, ASSISTANT, { input: QUESTION }), 404);
    await rejectsWith(other.runs.wait(thread_id, ASSISTANT, { input: QUESTION }), 404);
    await rejectsWith(other.runs.cancel(thread_id, run.run_id), 404);
    await rejectsWith(collect(other.runs.joinStream(thread_id, run.run_id)), 404);
  }
  assert.ok((await sdk.runs.join(thread_id, run.run_id)).response.answer);
  assert.equal((await sdk.runs.list(thread_id)).length, 1);
});
