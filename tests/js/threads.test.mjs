// Threads through the JS SDK: create/get/update/search/copy/delete, state, history, and
// state writes (admins only), with other tenants' and other users' 404s.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ASSISTANT,
  QUESTION,
  admin,
  human,
  outsider,
  peer,
  rejectsWith,
  user,
} from "./helpers.mjs";

const sdk = user();

test("threads.create, get, update and search", async () => {
  const label = `js-${Date.now()}`;
  const thread = await sdk.threads.create({ metadata: { label } });
  assert.equal(thread.status, "idle");
  assert.equal(thread.metadata.label, label);
  assert.ok(thread.created_at && thread.updated_at);

  const got = await sdk.threads.get(thread.thread_id);
  assert.equal(got.thread_id, thread.thread_id);
  assert.equal(got.metadata.label, label);

  const updated = await sdk.threads.update(thread.thread_id, { metadata: { step: 2 } });
  assert.deepEqual({ ...updated.metadata }, { ...thread.metadata, step: 2 }, "metadata merges");

  const found = await sdk.threads.search({ metadata: { label, step: 2 } });
  assert.deepEqual(
    found.map((t) => t.thread_id),
    [thread.thread_id],
  );
  const byId = await sdk.threads.search({ ids: [thread.thread_id], select: ["thread_id"] });
  assert.deepEqual(byId, [{ thread_id: thread.thread_id }]);
  assert.deepEqual(await outsider().threads.search({ metadata: { label } }), []);
  assert.equal(await sdk.threads.count({ metadata: { label } }), 1);
});

test("threads.getState and getHistory after a run", async () => {
  const { thread_id } = await sdk.threads.create();
  await sdk.runs.wait(thread_id, ASSISTANT, { input: QUESTION });

  const state = await sdk.threads.getState(thread_id);
  assert.deepEqual(
    state.values.messages.map((m) => m.type),
    ["human", "ai"],
  );
  assert.ok(state.values.response.answer);
  assert.deepEqual(state.next, []);
  assert.deepEqual(state.tasks, []);
  assert.equal(state.checkpoint.thread_id, thread_id);

  const thread = await sdk.threads.get(thread_id);
  assert.equal(thread.metadata.graph_id, ASSISTANT, "a run names its graph in the metadata");
  assert.equal(thread.status, "idle");

  const history = await sdk.threads.getHistory(thread_id, { limit: 5 });
  assert.equal(history.length, 5);
  const steps = history.map((h) => h.metadata.step);
  assert.deepEqual(steps, [...steps].sort((a, b) => b - a), "newest first");
  assert.equal(history[0].checkpoint.checkpoint_id, state.checkpoint.checkpoint_id);

  const oldest = history.at(-1).checkpoint;
  const byId = await sdk.threads.getState(thread_id, oldest.checkpoint_id);
  assert.equal(byId.metadata.step, steps.at(-1));
  const byCheckpoint = await sdk.threads.getState(thread_id, oldest);
  assert.equal(byCheckpoint.checkpoint.checkpoint_id, oldest.checkpoint_id);
  const before = await sdk.threads.getHistory(thread_id, {
    limit: 2,
    before: history[1].checkpoint,
  });
  assert.deepEqual(
    before.map((h) => h.metadata.step),
    steps.slice(2, 4),
  );
});

test("threads.updateState: admins only", async () => {
  const { thread_id } = await sdk.threads.create();
  await sdk.runs.wait(thread_id, ASSISTANT, { input: QUESTION });
  const note = { messages: [{ role: "ai", content: "A note from support.", id: "js-note" }] };

  await rejectsWith(sdk.threads.updateState(thread_id, { values: note, asNode: "finalize" }), 403);
  await rejectsWith(
    outsider().threads.updateState(thread_id, { values: note, asNode: "finalize" }),
    404,
  );
  const { checkpoint } = await admin().threads.updateState(thread_id, {
    values: note,
    asNode: "finalize",
  });
  assert.equal(checkpoint.thread_id, thread_id);

  const state = await sdk.threads.getState(thread_id);
  assert.equal(state.checkpoint.checkpoint_id, checkpoint.checkpoint_id);
  assert.equal(state.values.messages.at(-1).content, "A note from support.");
  assert.equal(state.metadata.source, "update");
  // A state write can never release an action: the approval node is not writable.
  await rejectsWith(
    admin().threads.updateState(thread_id, { values: note, asNode: "run_tools" }),
    422,
  );
});

test("threads.copy", async () => {
  const { thread_id } = await sdk.threads.create({ metadata: { copied: "yes" } });
  await sdk.runs.wait(thread_id, ASSISTANT, { input: QUESTION });
  const copy = await sdk.threads.copy(thread_id);
  assert.notEqual(copy.thread_id, thread_id);
  assert.equal(copy.metadata.copied, "yes");
  const state = await sdk.threads.getState(copy.thread_id);
  assert.equal(state.values.messages.length, 2);
  await rejectsWith(outsider().threads.copy(thread_id), 404);
  await rejectsWith(peer().threads.copy(thread_id), 404);
});

test("threads.prune keeps the latest checkpoint, or deletes", async () => {
  const { thread_id } = await sdk.threads.create();
  await sdk.runs.wait(thread_id, ASSISTANT, { input: QUESTION });
  const theirs = await outsider().threads.create();
  assert.ok((await sdk.threads.getHistory(thread_id, { limit: 50 })).length > 1);
  const kept = await sdk.threads.prune([thread_id, theirs.thread_id], { strategy: "keep_latest" });
  assert.deepEqual(kept, { pruned_count: 1 });
  assert.equal((await sdk.threads.getHistory(thread_id, { limit: 50 })).length, 1);
  const deleted = await sdk.threads.prune([thread_id, theirs.thread_id]);
  assert.deepEqual(deleted, { pruned_count: 1 });
  await rejectsWith(sdk.threads.get(thread_id), 404);
  assert.equal((await outsider().threads.get(theirs.thread_id)).thread_id, theirs.thread_id);
});

test("threads.delete removes the thread and its runs", async () => {
  const { thread_id } = await sdk.threads.create();
  const input = human("Hi, what is your phone number?");
  const run = await sdk.runs.create(thread_id, ASSISTANT, { input });
  await sdk.runs.join(thread_id, run.run_id);
  await rejectsWith(outsider().threads.delete(thread_id), 404);
  await rejectsWith(peer().threads.delete(thread_id), 404);
  await sdk.threads.delete(thread_id);
  await rejectsWith(sdk.threads.get(thread_id), 404);
  await rejectsWith(sdk.runs.get(thread_id, run.run_id), 404);
  await rejectsWith(sdk.threads.delete(thread_id), 404);
});

test("another tenant, or another user, gets 404 for a thread", async () => {
  const { thread_id } = await sdk.threads.create({ metadata: { secret: "x" } });
  for (const other of [outsider(), peer()]) {
    await rejectsWith(other.threads.get(thread_id), 404);
    await rejectsWith(other.threads.update(thread_id, { metadata: { stolen: true } }), 404);
    await rejectsWith(other.threads.getState(thread_id), 404);
    await rejectsWith(other.threads.getHistory(thread_id), 404);
    assert.deepEqual(await other.threads.search({ ids: [thread_id] }), []);
  }
  assert.equal((await sdk.threads.get(thread_id)).metadata.stolen, undefined);
});
