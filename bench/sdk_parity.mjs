// The JS half of bench/sdk_parity.py: the same calls with @langchain/langgraph-sdk.
//
// Run by sdk_parity.py once per server; prints one JSON line {call: {status, shape}}.
// Environment: PARITY_URL, PARITY_USER_KEY, PARITY_APPROVER_KEY, PARITY_ADMIN_KEY (empty for
// langgraph dev), PARITY_MODULES (tests/js/node_modules, where `make js-deps` installs the SDK).

import { createRequire } from "node:module";

const require = createRequire(`${process.env.PARITY_MODULES}/`);
const { Client } = await import(require.resolve("@langchain/langgraph-sdk"));

const url = process.env.PARITY_URL;
const client = (key) =>
  new Client({ apiUrl: url, apiKey: key || undefined, callerOptions: { maxRetries: 0 } });
const user = client(process.env.PARITY_USER_KEY);
const approver = client(process.env.PARITY_APPROVER_KEY);
const admin = client(process.env.PARITY_ADMIN_KEY);

const human = (content) => ({ messages: [{ role: "user", content }] });
const QUESTION = human("How long is the return window?");
const BIG_REFUND = human("Refund $600 on LS-10017 please.");
const MODES = [
  "values",
  "updates",
  "messages-tuple",
  "messages",
  "events",
  "debug",
  "checkpoints",
  "custom",
  "tasks",
];

/** What a result looks like: keys of an object, length and element shape of an array. */
function shape(value) {
  if (value && value.exact !== undefined) return value.exact;
  if (Array.isArray(value)) return { len: value.length, item: value.length ? shape(value[0]) : null };
  if (value && typeof value === "object") return Object.keys(value).sort();
  return value === undefined || value === null ? "NoneType" : typeof value;
}

async function eventsOf(stream) {
  const names = new Set();
  try {
    for await (const part of stream) names.add(part.event.split("|")[0]);
  } catch (error) {
    if (error?.name !== "AbortError") throw error;
    return { exact: { events: [...names].sort(), ended: false } }; // still open when cut
  }
  return { exact: [...names].sort() };
}

async function newThread(c = user) {
  return (await c.threads.create()).thread_id;
}

async function waitRunning(threadId, runId) {
  for (let i = 0; i < 100; i++) {
    const run = await user.runs.get(threadId, runId);
    if (run.status !== "pending") return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const s = {};
const probes = [
  ["assistants.search(system)", async () => {
    const [system] = await user.assistants.search({ metadata: { created_by: "system" } });
    s.system = system.assistant_id;
    return system;
  }],
  ["assistants.get", () => user.assistants.get(s.system)],
  ["assistants.getGraph", () => user.assistants.getGraph(s.system)],
  ["assistants.getSchemas", () => user.assistants.getSchemas(s.system)],
  ["assistants.getSubgraphs", () => user.assistants.getSubgraphs(s.system)],
  ["assistants.create (admin)", async () => {
    const a = await admin.assistants.create({ graphId: "agent", name: "parity-js" });
    s.aid = a.assistant_id;
    return a;
  }],
  ["assistants.update (admin)", () => admin.assistants.update(s.aid, { metadata: { v: 2 } })],
  ["assistants.getVersions", () => user.assistants.getVersions(s.aid)],
  ["assistants.setLatest (admin)", () => admin.assistants.setLatest(s.aid, 1)],
  ["runs.wait(created assistant)", async () => user.runs.wait(await newThread(), s.aid, { input: QUESTION })],
  ["assistants.delete (admin)", () => admin.assistants.delete(s.aid)],
  ["threads.create", async () => {
    const t = await user.threads.create({ metadata: { parity: "js" } });
    s.tid = t.thread_id;
    return t;
  }],
  ["threads.get", () => user.threads.get(s.tid)],
  ["threads.update", () => user.threads.update(s.tid, { metadata: { k: "v" } })],
  ["threads.search(sortBy state_updated_at, select)", () =>
    user.threads.search({
      metadata: { parity: "js" },
      sortBy: "state_updated_at",
      select: ["thread_id", "status", "state_updated_at"],
    })],
  ["threads.count", () => user.threads.count({ metadata: { parity: "js" } })],
  ["runs.wait", () => user.runs.wait(s.tid, "agent", { input: QUESTION })],
  ["runs.create + runs.join", async () => {
    const run = await user.runs.create(s.tid, "agent", { input: QUESTION });
    s.rid = run.run_id;
    await user.runs.join(s.tid, run.run_id);
    return run;
  }],
  ["runs.get", () => user.runs.get(s.tid, s.rid)],
  ["runs.list", () => user.runs.list(s.tid)],
  ...MODES.map((mode) => [`runs.stream(${mode})`, async () =>
    eventsOf(user.runs.stream(await newThread(), "agent", { input: QUESTION, streamMode: mode }))]),
  ["runs.joinStream", async () => {
    const tid = await newThread();
    const run = await user.runs.create(tid, "agent", { input: QUESTION, streamMode: ["values"] });
    return eventsOf(user.runs.joinStream(tid, run.run_id));
  }],
  ["threads.joinStream", async () => {
    const tid = await newThread();
    await user.runs.create(tid, "agent", { input: QUESTION, streamMode: ["values"] });
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 15000);
    try {
      return await eventsOf(user.threads.joinStream(tid, { signal: controller.signal }));
    } finally {
      clearTimeout(timer);
    }
  }],
  ["threads.getState", () => user.threads.getState(s.tid)],
  ["threads.getHistory", () => user.threads.getHistory(s.tid, { limit: 3 })],
  ["threads.updateState", () => user.threads.updateState(s.tid, { values: { messages: [] } })],
  ["threads.copy", () => user.threads.copy(s.tid)],
  ["threads.prune", () => user.threads.prune([s.tid])],
  ["runs.cancel(finished run)", async () => {
    const tid = await newThread();
    const run = await user.runs.create(tid, "agent", { input: QUESTION });
    await user.runs.join(tid, run.run_id);
    return user.runs.cancel(tid, run.run_id);
  }],
  ["runs.cancel(interrupt, once running)", async () => {
    const tid = await newThread();
    const run = await user.runs.create(tid, "agent", { input: QUESTION });
    await waitRunning(tid, run.run_id);
    await user.runs.cancel(tid, run.run_id, true, "interrupt");
    return { exact: { thread_status: (await user.threads.get(tid)).status } };
  }],
  ["runs.create(multitaskStrategy reject, busy)", async () => {
    const tid = await newThread();
    await user.runs.create(tid, "agent", { input: QUESTION });
    return user.runs.create(tid, "agent", { input: QUESTION, multitaskStrategy: "reject" });
  }],
  ["threads.delete(busy)", async () => {
    const tid = await newThread();
    await user.runs.create(tid, "agent", { input: QUESTION });
    await user.threads.delete(tid);
    try {
      await user.threads.get(tid);
      return { exact: { then_get: 200 } };
    } catch (error) {
      return { exact: { then_get: error.status } };
    }
  }],
  ["runs.createBatch", () => user.runs.createBatch([{ assistantId: "agent", input: QUESTION }])],
  ["runs.wait(stateless)", () => user.runs.wait(null, "agent", { input: QUESTION })],
  ["runs.stream(stateless)", () => eventsOf(user.runs.stream(null, "agent", { input: QUESTION }))],
  ["interrupt: wait body, state, thread", async () => {
    const tid = await newThread();
    const out = await user.runs.wait(tid, "agent", { input: BIG_REFUND });
    s.held = tid;
    const state = await user.threads.getState(tid);
    const thread = await user.threads.get(tid);
    const [byTask] = Object.values(thread.interrupts);
    return {
      exact: {
        wait: shape(out.__interrupt__[0]),
        state: shape(state.interrupts[0]),
        thread: shape(byTask[0]),
      },
    };
  }],
  ["resume: submit({}, {command}) body", async () => {
    const state = await approver.threads.getState(s.held);
    return eventsOf(
      approver.runs.stream(s.held, "agent", {
        input: {},
        command: { resume: { decisions: [{ type: "approve" }] } },
        streamMode: ["messages-tuple", "values", "custom"],
        streamSubgraphs: true,
        checkpoint: state.checkpoint,
        onDisconnect: "cancel",
      }),
    );
  }],
  ["mark as resolved (goto __end__)", async () => {
    const tid = await newThread();
    await user.runs.wait(tid, "agent", { input: BIG_REFUND });
    const state = await approver.threads.getState(tid);
    await eventsOf(
      approver.runs.stream(tid, "agent", {
        input: {},
        command: { goto: "__end__" },
        streamMode: ["messages-tuple", "values", "custom"],
        checkpoint: state.checkpoint,
      }),
    );
    const after = await user.threads.getState(tid);
    return { exact: { next: after.next, interrupts: after.interrupts.length } };
  }],
  ["store.putItem", () => user.store.putItem(["ns"], "k", { v: 1 })],
  ["crons.create", () => user.crons.create("agent", { schedule: "0 * * * *", input: QUESTION })],
];

const results = {};
for (const [name, probe] of probes) {
  try {
    const value = await probe();
    results[name] = { status: "ok", shape: shape(value) };
  } catch (error) {
    const status = error?.status ?? error?.name ?? "Error";
    results[name] = { status, detail: String(error?.message ?? error).slice(0, 120) };
  }
  console.error(`  js ${name}: ${JSON.stringify(results[name])}`);
}
console.log(JSON.stringify(results));
