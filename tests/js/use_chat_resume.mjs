// Resumes a chat's answer the way useChat({resume: true}) does on a reloaded
// page: the ai package's DefaultChatTransport.reconnectToStream (GET
// {api}/{chatId}/stream), read with readUIMessageStream.
//
//   node use_chat_resume.mjs <package: ai | ai5 | ai6> <api url> <chat id> [user]
//
// The user goes in an X-User header (the test app's owner=).
//
// Writes "connected" to stderr once the stream is open (null: a 204), then
// prints one JSON line: {"message": <the UI message or null>, "error": <text or null>}.
const [pkg, api, chatId, user] = process.argv.slice(2);
const { DefaultChatTransport, readUIMessageStream } = await import(pkg);

let message = null;
let error = null;
try {
  const transport = new DefaultChatTransport({ api, headers: user ? { 'X-User': user } : {} });
  const stream = await transport.reconnectToStream({ chatId });
  process.stderr.write(stream === null ? 'nothing\n' : 'connected\n');
  if (stream !== null) {
    for await (const snapshot of readUIMessageStream({
      stream,
      onError: (e) => { error = String(e && e.message || e); },
      terminateOnError: false,
    })) {
      message = snapshot;
    }
  }
} catch (e) {
  error = error || String(e && e.message || e);
}
process.stdout.write(JSON.stringify({ message, error }) + '\n');
