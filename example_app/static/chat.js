// The chat page: streams answers from the blueprint at /api/chat/stream.
// Model output is text: it is only ever put in the page with textContent.
(() => {
  const ENDPOINT = '/api/chat/stream';
  const $ = (id) => document.getElementById(id);
  const form = $('ask-form'), input = $('question'), askButton = $('ask'), stopButton = $('stop');
  const mode = $('mode'), messages = $('messages'), status = $('status'), provider = $('provider');
  let history = [];      // [{role, content}], sent with each fetch question
  let stopCurrent = null;

  function bubble(role, text) {
    const node = document.createElement('div');
    node.className = `message ${role}`;
    const span = document.createElement('span');
    span.className = 'text';
    span.textContent = text;
    node.appendChild(span);
    messages.appendChild(node);
    node.scrollIntoView({ block: 'end' });
    return node;
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
    details.querySelector('.reasoning-text').textContent += text;
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
  function handle(data, node, answer) {
    if (data === '[DONE]') return true;
    let parsed;
    try { parsed = JSON.parse(data); } catch (e) { return false; }
    if (parsed.error) showError(node, parsed.error);
    else if (parsed.content) {
      answer.text += parsed.content;
      node.querySelector('.text').textContent = answer.text;
    } else if (parsed.reasoning) showReasoning(node, parsed.reasoning);
    else if (parsed.finish) showFinish(node, parsed.finish);
    return false;
  }

  async function askWithFetch(question, node, answer) {
    const controller = new AbortController();
    stopCurrent = () => controller.abort();
    let response;
    try {
      response = await fetch(ENDPOINT, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ question, history, provider: provider.value }),
        signal: controller.signal,
      });
    } catch (e) {
      if (e.name !== 'AbortError') showError(node, 'Could not reach the server.');
      return;
    }
    if (!response.ok) {
      let message = `The server answered ${response.status}.`;
      try { message = (await response.json()).error || message; } catch (e) {}
      showError(node, message);
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
            if (line.startsWith('data: ') && handle(line.slice(6), node, answer)) return;
          }
        }
      }
    } catch (e) {
      if (e.name !== 'AbortError') showError(node, 'The connection was lost.');
    }
  }

  function askWithEventSource(question, node, answer) {
    const url = `${ENDPOINT}?question=${encodeURIComponent(question)}&provider=${encodeURIComponent(provider.value)}`;
    return new Promise((resolve) => {
      const source = new EventSource(url);
      const finish = () => { source.close(); resolve(); };
      stopCurrent = finish;
      source.onmessage = (event) => { if (handle(event.data, node, answer)) finish(); };
      source.onerror = async () => {
        // EventSource hides the status of a refused request: ask again to say why.
        if (!answer.text && !node.querySelector('.error')) {
          try {
            const response = await fetch(url);
            if (!response.ok) showError(node, (await response.json()).error);
            else showError(node, 'The connection was lost.');
          } catch (e) { showError(node, 'Could not reach the server.'); }
        }
        finish();
      };
    });
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question) return;
    input.value = '';
    status.textContent = '';
    bubble('user', question);
    const node = bubble('assistant', '');
    node.classList.add('typing');
    const answer = { text: '' };
    let stopped = false;
    setBusy(true);
    const stop = () => { stopped = true; };
    stopButton.onclick = () => { stop(); if (stopCurrent) stopCurrent(); };
    if (mode.value === 'eventsource') await askWithEventSource(question, node, answer);
    else await askWithFetch(question, node, answer);
    node.classList.remove('typing');
    if (stopped) node.classList.add('stopped');
    if (answer.text) {
      history.push({ role: 'user', content: question }, { role: 'assistant', content: answer.text });
      history = history.slice(-20);
    }
    setBusy(false);
  });

  $('clear').addEventListener('click', () => { history = []; messages.textContent = ''; });
})();
