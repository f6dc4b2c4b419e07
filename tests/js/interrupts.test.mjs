// Refunds over $500 wait for an approver (an interrupt). Answered with exactly the body
// agent-chat-ui sends: approve, edit, reject, and "mark as resolved" (`goto: "__end__"`).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ASSISTANT,
  approver,
  collect,
  human,
  lastValues,
  outsider,
  outsiderApprover,
  peer,
  rejectsWith,
  report,
  user,
} from "./helpers.mjs";

const sdk = user();

/** Ask for a refund over the threshold; return the thread id once it waits for approval. */
async function heldRefund(orderId, amount) {
  const { thread_id } = await sdk.threads.create();
  const parts = await collect(
    sdk.runs.stream(thread_id, ASSISTANT, {
      input: human(`Refund $${amount} on ${orderId} please.`),
      streamMode: ["messages-tuple", "values", "custom"],
    }),
  );
  const [pending] = lastValues(parts).__interrupt__;
  const [request] = pending.value.action_requests;
  assert.equal(request.name, "issue_refund");
  assert.equal(request.args.order_id, orderId);
  const [review] = pending.value.review_configs;
  assert.deepEqual(review.allowed_decisions, ["approve", "edit", "reject"]);
  report({ kind: "refund", thread_id, order_id: orderId, decision: "pending" });
  return { thread_id, interrupt: pending };
}

/** agent-chat-ui's `thread.submit({}, {command})`, through the SDK as the UI calls it. */
async function submit(client, threadId, command) {
  const { checkpoint } = await client.threads.getState(threadId);
  return collect(
    client.runs.stream(threadId, ASSISTANT, {
      input: {},
      command,
      streamMode: ["messages-tuple", "values", "custom"],
      checkpoint,
      onDisconnect: "cancel",
    }),
  );
}

const resume = (decision) => ({ resume: { decisions: [decision] } });

function succeeded(parts) {
  assert.equal(parts[0].event, "metadata");
  const error = parts.find((p) => p.event === "error");
  assert.equal(error, undefined, JSON.stringify(error?.data));
  const values = lastValues(parts);
  assert.equal(values.__interrupt__, undefined, "nothing waits any more");
  return values.response;
}

test("the interrupt shows in the thread, its state and its tasks", async () => {
  const { thread_id, interrupt } = await heldRefund("LS-10017", 600);
  const approve = resume({ type: "approve" });
  const thread = await sdk.threads.get(thread_id);
  assert.equal(thread.status, "interrupted");
  const [[taskId, [fromThread]]] = Object.entries(thread.interrupts);
  assert.deepEqual(fromThread, interrupt);

  const state = await sdk.threads.getState(thread_id);
  assert.deepEqual(state.next, ["approval"]);
  const [task] = state.tasks;
  assert.equal(task.id, taskId);
  assert.equal(task.name, "approval");
  assert.deepEqual(task.interrupts, [interrupt]);
  assert.deepEqual(state.interrupts, [interrupt]);
  const interrupted = await sdk.threads.search({ status: "interrupted" });
  assert.ok(interrupted.some((t) => t.thread_id === thread_id));

  // Only an approver of the same tenant may answer; the requester is refused, others see nothing.
  await rejectsWith(submit(sdk, thread_id, approve), 403);
  await rejectsWith(sdk.runs.wait(thread_id, ASSISTANT, { command: approve }), 403);
  await rejectsWith(outsider().threads.getState(thread_id), 404);
  await rejectsWith(peer().threads.get(thread_id), 404);
  await rejectsWith(outsiderApprover().runs.wait(thread_id, ASSISTANT, { command: approve }), 404);
  assert.equal((await sdk.threads.get(thread_id)).status, "interrupted");

  // The approver approves with agent-chat-ui's body: the refund is issued once.
  const response = succeeded(await submit(approver(), thread_id, approve));
  assert.equal(response.actions[0].name, "issue_refund");
  assert.equal(response.actions[0].status, "executed");
  report({
    kind: "refund",
    thread_id,
    order_id: "LS-10017",
    amount_cents: 60000,
    decision: "approved",
  });
  const after = await sdk.threads.get(thread_id);
  assert.equal(after.status, "idle");
  assert.deepEqual(after.interrupts, {});
  await rejectsWith(submit(approver(), thread_id, approve), 409);
});

test("an approver edits the refund before releasing it", async () => {
  const { thread_id } = await heldRefund("LS-10009", 520);
  const edited = {
    type: "edit",
    edited_action: {
      name: "issue_refund",
      args: { order_id: "LS-10009", amount: "510.00", reason: "partial refund" },
    },
  };
  const out = await approver().runs.wait(thread_id, ASSISTANT, { command: resume(edited) });
  assert.equal(out.response.actions[0].status, "executed");
  report({
    kind: "refund",
    thread_id,
    order_id: "LS-10009",
    amount_cents: 51000,
    decision: "edited",
  });
  assert.equal((await sdk.threads.get(thread_id)).status, "idle");
});

test("an approver rejects with a message: nothing is refunded", async () => {
  const { thread_id } = await heldRefund("LS-10007", 700);
  const decision = { type: "reject", message: "Not eligible: offer store credit." };
  const response = succeeded(await submit(approver(), thread_id, resume(decision)));
  assert.equal(response.actions[0].status, "rejected");
  report({ kind: "refund", thread_id, order_id: "LS-10007", decision: "rejected" });
  assert.equal((await sdk.threads.get(thread_id)).status, "idle");
});

test("mark as resolved (goto __end__) by an approver: the thread ends, no refund", async () => {
  const { thread_id } = await heldRefund("LS-10005", 600);
  const resolve = { goto: "__end__" };
  await rejectsWith(submit(sdk, thread_id, resolve), 403);
  await rejectsWith(submit(outsiderApprover(), thread_id, resolve), 404);
  assert.equal((await sdk.threads.get(thread_id)).status, "interrupted");

  const parts = await submit(approver(), thread_id, resolve);
  assert.equal(parts.find((p) => p.event === "error"), undefined);
  report({ kind: "refund", thread_id, order_id: "LS-10005", decision: "resolved" });
  const thread = await sdk.threads.get(thread_id);
  assert.equal(thread.status, "idle");
  assert.deepEqual(thread.interrupts, {});
  await rejectsWith(submit(approver(), thread_id, resolve), 409);
});

test("an approval left pending stays pending", async () => {
  const { thread_id } = await heldRefund("LS-10013", 900);
  await rejectsWith(outsider().runs.get(thread_id, "00000000-0000-0000-0000-000000000000"), 404);
  assert.equal((await sdk.threads.get(thread_id)).status, "interrupted");
});
