// Reads one answer from our Vercel-format endpoint the way useChat does:
// the ai package's own DefaultChatTransport (the request body useChat sends)
// and readUIMessageStream (how useChat assembles the message).
//
//   node use_chat_transport.mjs <package: ai | ai5 | ai6> <api url> <messages json> [abort-after-ms]
//
// Prints one JSON line: {"message": <the last UI message>, "error": <text or null>}.
const [pkg, api, messagesJson, abortAfter] = process.argv.slice(2);
const { DefaultChatTransport, readUIMessageStream } = await import(pkg);

const messages = JSON.parse(messagesJson);
const controller = new AbortController();
if (abortAfter) setTimeout(() => controller.abort(), Number(abortAfter));

let message = null;
let error = null;
try {
  const transport = new DefaultChatTransport({ api });
  const stream = await transport.sendMessages({
    chatId: 'chat-1',
    messages,
    abortSignal: controller.signal,
    trigger: 'submit-message',
    messageId: undefined,
  });
  for await (const snapshot of readUIMessageStream({
    stream,
    onError: (e) => { error = String(e && e.message || e); },
    terminateOnError: false,
  })) {
    message = snapshot;
  }
} catch (e) {
  error = error || String(e && e.message || e);
}
process.stdout.write(JSON.stringify({ message, error }) + '\n');
