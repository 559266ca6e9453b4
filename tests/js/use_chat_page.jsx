// A React page on the ai SDK's own useChat, bundled by the tests with
// esbuild (no CDN, no build step for users): type, stream, stop.
import { useChat } from '@ai-sdk/react';
import {
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  lastAssistantMessageIsCompleteWithToolCalls,
} from 'ai';
import { useState } from 'react';
import { createRoot } from 'react-dom/client';

function App() {
  const [data, setData] = useState([]);
  const { messages, sendMessage, status, stop, error, addToolOutput, addToolApprovalResponse } = useChat({
    transport: new DefaultChatTransport({ api: '/api/chat/stream' }),
    // A browser tool: the page answers get_location itself, then the
    // conversation goes back to the server on its own.
    onToolCall: ({ toolCall }) => {
      if (toolCall.toolName === 'get_location') {
        addToolOutput({ tool: 'get_location', toolCallId: toolCall.toolCallId, output: { city: 'Paris' } });
      }
    },
    sendAutomaticallyWhen: (options) =>
      lastAssistantMessageIsCompleteWithToolCalls(options) ||
      lastAssistantMessageIsCompleteWithApprovalResponses(options),
    onData: (part) => setData((seen) => [...seen, part.type]),
  });
  const [input, setInput] = useState('');
  const submit = (event) => {
    event.preventDefault();
    sendMessage({ text: input });
    setInput('');
  };
  return (
    <main>
      <form onSubmit={submit}>
        <input id="input" value={input} onChange={(e) => setInput(e.target.value)} />
        <button id="send" type="submit">Send</button>
        <button id="stop" type="button" onClick={() => stop()}>Stop</button>
      </form>
      <p id="status">{status}</p>
      <p id="data">{data.join(',')}</p>
      {error && <p id="error">{error.message}</p>}
      {messages.map((m) => (
        <div key={m.id} className={`message ${m.role}`}>
          {m.parts.map((part, i) =>
            part.type === 'text' ? <span key={i} className="text">{part.text}</span>
            : part.type === 'reasoning' ? <em key={i} className="reasoning">{part.text}</em>
            : part.type.startsWith('tool-') && part.state === 'approval-requested' ? (
              <button key={i} id="approve" type="button"
                onClick={() => addToolApprovalResponse({ id: part.approval.id, approved: true })}>
                Approve {part.type.slice(5)}
              </button>
            )
            : part.type.startsWith('tool-') ? (
              <code key={i} className={`tool ${part.state}`}>
                {part.type.slice(5)}: {JSON.stringify(part.output ?? part.errorText ?? null)}
              </code>
            )
            : null)}
        </div>
      ))}
    </main>
  );
}

createRoot(document.getElementById('root')).render(<App />);
