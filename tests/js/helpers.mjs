// Shared setup of the JS SDK suite: clients per role, the mock LLM's fault queue, the report.
//
// Environment (set by tests/e2e/test_js_sdk.py):
//   STEWARD_URL                 the running `steward serve`
//   STEWARD_MOCK_LLM_URL        the mock provider's root URL (faults, request log)
//   STEWARD_KEY_USER            the requester (role user, tenant A)
//   STEWARD_KEY_PEER            another user of tenant A
//   STEWARD_KEY_APPROVER        an approver of tenant A
//   STEWARD_KEY_ADMIN           an admin of tenant A
//   STEWARD_KEY_OTHER           a user of tenant B
//   STEWARD_KEY_OTHER_APPROVER  an approver of tenant B
//   STEWARD_JS_REPORT           where to write what the suite did, for the database checks

import assert from "node:assert/strict";
import { appendFileSync } from "node:fs";

import { Client } from "@langchain/langgraph-sdk";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite via tests/e2e/test_js_sdk.py`);
  return value;
}

export const URL = env("STEWARD_URL");
export const MOCK_URL = env("STEWARD_MOCK_LLM_URL");
export const ASSISTANT = "agent";

/** A JS SDK client for the key in env var `name` (no retries: a failure shows at once). */
export function client(name) {
  return new Client({ apiUrl: URL, apiKey: env(name), callerOptions: { maxRetries: 0 } });
}

export const user = () => client("STEWARD_KEY_USER");
export const peer = () => client("STEWARD_KEY_PEER");
export const approver = () => client("STEWARD_KEY_APPROVER");
export const admin = () => client("STEWARD_KEY_ADMIN");
export const outsider = () => client("STEWARD_KEY_OTHER");
export const outsiderApprover = () => client("STEWARD_KEY_OTHER_APPROVER");

export const human = (content) => ({ messages: [{ role: "user", content }] });
export const QUESTION = human("How long is the return window?");
export const APPROVE = { resume: { decisions: [{ type: "approve" }] } };

/** Collect every part of an SDK stream. */
export async function collect(stream) {
  const parts = [];
  for await (const part of stream) parts.push(part);
  return parts;
}

/** Assert that `promise` rejects with the SDK's HTTPError of `status`; return the error. */
export async function rejectsWith(promise, status) {
  let caught;
  await assert.rejects(promise, (error) => {
    caught = error;
    return true;
  });
  assert.equal(caught?.status, status, `expected HTTP ${status}, got: ${caught}`);
  return caught;
}

/** The final `values` event of a stream's parts. */
export function lastValues(parts) {
  const values = parts.filter((p) => p.event === "values");
  assert.ok(values.length, `no values event in ${parts.map((p) => p.event)}`);
  return values.at(-1).data;
}

async function mock(method, path, body) {
  const response = await fetch(`${MOCK_URL}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(response.ok, `mock ${method} ${path}: ${response.status}`);
  return response.headers.get("content-type")?.includes("json") ? response.json() : null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const SLOW_CALL_S = 4; // the server's model timeout is 5 s: a delayed call still succeeds

/**
 * Start a background run whose model call takes 4 s; resolve once it is running.
 *
 * The files run one at a time (`--test-concurrency=1`), so the fault is this run's.
 */
export async function startSlowRun(sdk, threadId, payload = {}) {
  await mock("POST", "/_mock/faults", [{ kind: "timeout", delay_s: SLOW_CALL_S, count: 1 }]);
  const before = (await mock("GET", "/_mock/requests")).length;
  const run = await sdk.runs.create(threadId, ASSISTANT, { input: QUESTION, ...payload });
  const deadline = Date.now() + 60_000; // the server's first run loads the embedding model
  while ((await mock("GET", "/_mock/requests")).length === before) {
    assert.ok(Date.now() < deadline, "the slow run never reached the model");
    await sleep(50);
  }
  assert.equal((await sdk.runs.get(threadId, run.run_id)).status, "running");
  return run;
}

/** Drop the mock's queued faults (a test that failed half-way may leave one). */
export const clearFaults = () => mock("DELETE", "/_mock/faults");

/**
 * Record an outcome for the database checks of tests/e2e/test_js_sdk.py.
 *
 * One JSON object per line: `{kind: "refund", thread_id, order_id, amount_cents, decision}`,
 * where decision is `approved`, `rejected` or `resolved`.
 */
export function report(entry) {
  appendFileSync(env("STEWARD_JS_REPORT"), `${JSON.stringify(entry)}\n`);
}
