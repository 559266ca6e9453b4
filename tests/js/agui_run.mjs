// One AG-UI run against our agui endpoint with @ag-ui/client's HttpAgent,
// every event validated with @ag-ui/core's own schemas.
//
//   node agui_run.mjs <url> <messages json> [tools json] [resume json] [thread id]
//
// Prints one JSON line: {"events", "invalid", "messages", "error"}.
import { HttpAgent } from '@ag-ui/client';
import { EventSchemas } from '@ag-ui/core/schemas';

const [url, messagesJson, toolsJson, resumeJson, threadId] = process.argv.slice(2);
const agent = new HttpAgent({ url, threadId: threadId || undefined, initialMessages: JSON.parse(messagesJson) });
const events = [];
const invalid = [];
let error = null;
try {
  await agent.runAgent(
    {
      tools: JSON.parse(toolsJson || '[]'),
      context: [{ description: 'The page', value: 'Orders' }],
      ...(resumeJson ? { resume: JSON.parse(resumeJson) } : {}),
    },
    {
      onEvent: ({ event }) => {
        events.push(event);
        const checked = EventSchemas.safeParse(event);
        if (!checked.success) invalid.push({ event, issues: checked.error.issues });
      },
    },
  );
} catch (e) {
  error = String((e && e.message) || e);
}
process.stdout.write(JSON.stringify({ events, invalid, messages: agent.messages, error, threadId: agent.threadId }) + '\n');
