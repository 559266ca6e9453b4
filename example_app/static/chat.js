// The chat page: streams answers from the blueprint at /api/chat/stream.
// Model output never becomes HTML: it is rendered by markdown.js, which
// builds DOM nodes and sets text only. The conversation is kept in
// localStorage, so a reload shows it again.
(() => {
  const ENDPOINT = '/api/chat/stream';
  const STORAGE_KEY = 'flask-aistream-chat';
  const $ = (id) => document.getElementById(id);
  const form = $('ask-form'), input = $('question'), askButton = $('ask'), stopButton = $('stop');
  const mode = $('mode'), messages = $('messages'), status = $('status'), provider = $('provider');
  // Each turn as shown: {role, text, reasoning?, finish?, error?, stopped?}.
  let turns = [];
  let stopCurrent = null;

  function save() {
    try { localStorage.setItem(STORAGE_KEY, JSON.stringify(turns.slice(-40))); } catch (e) {}
  }

  function load() {
    try { return JSON.parse(localStorage.getItem(STORAGE_KEY)) || []; } catch (e) { return []; }
  }

  // What the server is sent: the last 20 finished turns, text only.
  function history() {
    return turns
      .filter((t) => t.text && !t.error)
      .map((t) => ({ role: t.role, content: t.text }))
      .slice(-20);
  }

  function bubble(turn) {
    const node = document.createElement('div');
    node.className = `message ${turn.role}`;
    const text = document.createElement('div');
    text.className = 'text';
    node.appendChild(text);
    messages.appendChild(node);
    show(node, turn);
    return node;
  }

  // Draw a turn: text (Markdown for answers), reasoning, the finish line, the error.
  function show(node, turn) {
    const text = node.querySelector('.text');
    if (turn.role === 'assistant') window.renderMarkdown(text, turn.text);
    else text.textContent = turn.text;
    if (turn.reasoning) showReasoning(node, turn.reasoning);
    node.querySelector('.finish')?.remove();
    if (turn.finish) showFinish(node, turn.finish);
    node.querySelector('.error')?.remove();
    if (turn.error) showError(node, turn.error);
    node.classList.toggle('stopped', Boolean(turn.stopped));
    node.scrollIntoView({ block: 'end' });
  }

  // The reasoning, when the provider sends it: collapsed above the answer.
  function showReasoning(node, text) {
    let details = node.querySelector('details.reasoning');
    if (!details) {
      details = document.createElement('details');
      details.className = 'reasoning';
      const summary = document.createElement('summary');
      summary.textContent = 'Reasoning';
      const body = document.createElement('div');
      body.className = 'reasoning-text';
      details.append(summary, body);
      node.insertBefore(details, node.firstChild);
    }
    details.querySelector('.reasoning-text').textContent = text;
  }

  // How the answer ended, in one quiet line: "stop · 12 in / 30 out tokens · model".
  function showFinish(node, finish) {
    const line = document.createElement('span');
    line.className = 'finish';
    const parts = [finish.reason];
    if (finish.usage) parts.push(`${finish.usage.input_tokens} in / ${finish.usage.output_tokens} out tokens`);
    if (finish.model) parts.push(finish.model);
    line.textContent = parts.join(' \u00b7 ');
    node.appendChild(line);
  }

  function showError(node, message) {
    const error = document.createElement('span');
    error.className = 'error';
    error.textContent = message;
    node.appendChild(error);
  }

  function setBusy(busy) {
    askButton.disabled = busy;
    stopButton.disabled = !busy;
    input.disabled = busy;
    if (!busy) { stopCurrent = null; input.focus(); }
  }

  // Handle one SSE event's data; returns true when the stream is over.
  function handle(data, node, turn) {
    if (data === '[DONE]') return true;
    let parsed;
    try { parsed = JSON.parse(data); } catch (e) { return false; }
    if (parsed.error) turn.error = parsed.error;
    else if (parsed.content) turn.text += parsed.content;
    else if (parsed.reasoning) turn.reasoning = (turn.reasoning || '') + parsed.reasoning;
    else if (parsed.finish) turn.finish = parsed.finish;
    else return false;
    show(node, turn);
    return false;
  }

  async function askWithFetch(question, node, turn, sent) {
    const controller = new AbortController();
    stopCurrent = () => controller.abort();
    let response;
    try {
      response = await fetch(ENDPOINT, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ question, history: sent, provider: provider.value }),
        signal: controller.signal,
      });
    } catch (e) {
      if (e.name !== 'AbortError') turn.error = 'Could not reach the server.';
      return;
    }
    if (!response.ok) {
      let message = `The server answered ${response.status}.`;
      try { message = (await response.json()).error || message; } catch (e) {}
      turn.error = message;
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        const events = buffer.split('\n\n');
        buffer = events.pop();
        for (const event of events) {
          for (const line of event.split('\n')) {
            if (line.startsWith('data: ') && handle(line.slice(6), node, turn)) return;
          }
        }
      }
    } catch (e) {
      if (e.name !== 'AbortError') turn.error = 'The connection was lost.';
    }
  }

  function askWithEventSource(question, node, turn) {
    const url = `${ENDPOINT}?question=${encodeURIComponent(question)}&provider=${encodeURIComponent(provider.value)}`;
    return new Promise((resolve) => {
      const source = new EventSource(url);
      const finish = () => { source.close(); resolve(); };
      stopCurrent = finish;
      source.onmessage = (event) => { if (handle(event.data, node, turn)) finish(); };
      source.onerror = async () => {
        // EventSource hides the status of a refused request: ask again to say why.
        if (!turn.text && !turn.error) {
          try {
            const response = await fetch(url);
            turn.error = response.ok ? 'The connection was lost.' : (await response.json()).error;
          } catch (e) { turn.error = 'Could not reach the server.'; }
        }
        finish();
      };
    });
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question || askButton.disabled) return;
    input.value = '';
    status.textContent = '';
    const sent = history();
    const asked = { role: 'user', text: question };
    const turn = { role: 'assistant', text: '' };
    turns.push(asked, turn);
    bubble(asked);
    const node = bubble(turn);
    node.classList.add('typing');
    setBusy(true);
    stopButton.onclick = () => { turn.stopped = true; if (stopCurrent) stopCurrent(); };
    if (mode.value === 'eventsource') await askWithEventSource(question, node, turn);
    else await askWithFetch(question, node, turn, sent);
    node.classList.remove('typing');
    show(node, turn);
    save();
    setBusy(false);
  });

  // Enter sends; Shift+Enter (or an input method composing) makes a new line.
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  $('clear').addEventListener('click', () => {
    turns = [];
    messages.textContent = '';
    save();
  });

  turns = load();
  turns.forEach(bubble);
})();
