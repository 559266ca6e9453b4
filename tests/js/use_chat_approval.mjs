// The approval round trip as useChat does it, with the ai package's own
// transport and stream reader: ask; the answer ends with a tool part in state
// "approval-requested"; answer it as addToolApprovalResponse does (the part
// becomes "approval-responded"), send the conversation again, and read the
// continuation into the same assistant message.
//
//   node use_chat_approval.mjs <package: ai | ai6> <api url> <question> <yes | no> [edited-input-json]
//
// Prints one JSON line: {"first": <message>, "second": <message>, "error": <text or null>}.
const [pkg, api, question, decision, editedInput] = process.argv.slice(2);
const { DefaultChatTransport, readUIMessageStream } = await import(pkg);

const transport = new DefaultChatTransport({ api });
let error = null;

async function read(messages, message) {
  const stream = await transport.sendMessages({
    chatId: 'chat-1', messages, abortSignal: undefined, trigger: 'submit-message', messageId: message?.id,
  });
  let last = message;
  for await (const snapshot of readUIMessageStream({
    stream, message, onError: (e) => { error = String(e && e.message || e); }, terminateOnError: false,
  })) {
    last = snapshot;
  }
  return structuredClone(last);
}

const user = { id: 'u1', role: 'user', parts: [{ type: 'text', text: question }] };
const first = await read([user]);
const responded = {
  ...first,
  parts: first.parts.map((part) => part.state !== 'approval-requested' ? part : {
    ...part,
    ...(editedInput ? { input: JSON.parse(editedInput) } : {}),
    state: 'approval-responded',
    approval: { id: part.approval.id, approved: decision === 'yes', reason: decision === 'yes' ? undefined : 'Not today' },
  }),
};
const second = await read([user, responded], responded);
process.stdout.write(JSON.stringify({ first, second, error }) + '\n');
