// The chat page: streams answers from the blueprint at /api/chat/stream.
// Model output never becomes HTML: it is rendered by markdown.js, which
// builds DOM nodes and sets text only. The conversation is kept in
// localStorage, so a reload shows it again; an answer still streaming when
// the page reloads (or the network drops) continues where it was, from the
// server's resume route (the answer id and the last event id are kept too).
(() => {
  const ENDPOINT = '/api/chat/stream';
  const STORAGE_KEY = 'flask-aistream-chat';
  const $ = (id) => document.getElementById(id);
  const form = $('ask-form'), input = $('question'), askButton = $('ask'), stopButton = $('stop');
  const mode = $('mode'), messages = $('messages'), status = $('status'), provider = $('provider');
  // Each turn as shown: {role, text, reasoning?, finish?, error?, stopped?},
  // and for an answer: answerId and lastSeq (what to resume), pending (not over).
  let turns = [];
  let stopCurrent = null;
  let lastSave = 0;
  let leaving = false;
  // Keep the latest of an answer still streaming when the page goes away.
  for (const event of ['beforeunload', 'pagehide']) {
    window.addEventListener(event, () => { save(); leaving = true; });
  }

  function save() {
    if (leaving) return;  // what the unloading page sees as "over" is not
    lastSave = Date.now();
    try { localStorage.setItem(STORAGE_KEY, JSON.stringify(turns.slice(-40))); } catch (e) {}
  }

  // While an answer streams, keep what arrived (at most a few times a second).
  function saveSoon() {
    if (Date.now() - lastSave > 250) save();
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
    node.querySelector('.tools')?.remove();
    if (turn.tools) showTools(node, turn.tools);
    node.querySelector('.finish')?.remove();
    if (turn.finish) showFinish(node, turn.finish);
    node.querySelector('.error')?.remove();
    if (turn.error) showError(node, turn.error);
    node.querySelector('.approval')?.remove();
    if (turn.approval && !turn.approval.decided) showApproval(node, turn);
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
  // The tools the server ran for this answer, one line above the text.
  function showTools(node, tools) {
    const line = document.createElement('small');
    line.className = 'tools';
    line.textContent = tools
      .map((t) => `🔧 ${t.name} → ${t.error ? 'failed: ' + t.error : JSON.stringify(t.output)}`)
      .join('  ');
    node.querySelector('.text').before(line);
  }

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

  // A tool that needs a person's yes: the answer waits; Allow or Deny goes
  // to the server, which checks it, runs the tool and streams the rest here.
  function showApproval(node, turn) {
    const box = document.createElement('div');
    box.className = 'approval';
    const call = turn.approval.tool_call;
    box.append(`Allow ${call.name}(${call.arguments})? `);
    for (const [label, approved] of [['Allow', true], ['Deny', false]]) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = label;
      button.className = approved ? 'approve' : 'deny';
      button.onclick = () => decide(node, turn, approved);
      box.append(button);
    }
    node.appendChild(box);
  }

  async function decide(node, turn, approved) {
    const id = turn.approval.id;
    turn.approval.decided = true;
    turn.answerId = null;  // the rest is a new answer, resumable in its turn
    turn.lastSeq = 0;
    node.classList.add('typing');
    setBusy(true);
    const controller = new AbortController();
    stopCurrent = () => controller.abort();
    stopButton.onclick = () => stop(turn);
    const url = ENDPOINT.replace(/stream$/, `approvals/${encodeURIComponent(id)}`);
    await follow(() => fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ approved }),
      signal: controller.signal,
    }), node, turn, controller);
    finished(node, turn);
  }

  function setBusy(busy) {
    askButton.disabled = busy;
    stopButton.disabled = !busy;
    input.disabled = busy;
    if (!busy) { stopCurrent = null; input.focus(); }
  }

  // Handle one SSE event; returns true when the stream is over. Its number
  // is kept with the text it added, so a resume neither skips nor repeats.
  function handle(data, node, turn, id) {
    const over = apply(data, node, turn);
    const seq = id && Number(id.split(':')[1]);
    if (seq) { turn.lastSeq = seq; saveSoon(); }
    return over;
  }

  function apply(data, node, turn) {
    if (data === '[DONE]') return true;
    let parsed;
    try { parsed = JSON.parse(data); } catch (e) { return false; }
    if (parsed.error) turn.error = parsed.error;
    else if (parsed.content) turn.text += parsed.content;
    else if (parsed.reasoning) turn.reasoning = (turn.reasoning || '') + parsed.reasoning;
    else if (parsed.finish) turn.finish = parsed.finish;
    else if (parsed.tool_result) (turn.tools = turn.tools || []).push(parsed.tool_result);
    else if (parsed.approval_request) turn.approval = parsed.approval_request;
    else return false;
    show(node, turn);
    return false;
  }

  // Read an SSE response to its end: 'done' after [DONE], 'lost' when the
  // connection dropped first, 'stopped' when the user stopped it.
  async function readStream(response, node, turn, signal) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) return 'lost';
        buffer += decoder.decode(value, { stream: true });
        const events = buffer.split('\n\n');
        buffer = events.pop();
        for (const event of events) {
          let id = null, data = null;
          for (const line of event.split('\n')) {
            if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('data: ')) data = line.slice(6);
          }
          if (data !== null && handle(data, node, turn, id)) return 'done';
        }
      }
    } catch (e) {
      return signal.aborted ? 'stopped' : 'lost';
    }
  }

  // Ask for the answer, then, as long as the connection drops before its
  // end, resume it (a few times, a second apart).
  async function askWithFetch(question, node, turn, sent) {
    const controller = new AbortController();
    stopCurrent = () => controller.abort();
    const first = () => fetch(ENDPOINT, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ question, history: sent, provider: provider.value }),
      signal: controller.signal,
    });
    await follow(first, node, turn, controller);
  }

  function resumeFrom(turn, signal) {
    return fetch(`${ENDPOINT}/${turn.answerId}?after=${turn.lastSeq || 0}`, { signal });
  }

  async function follow(request, node, turn, controller) {
    for (let attempt = 0; attempt < 6; attempt++) {
      let response;
      try {
        response = await request();
      } catch (e) {
        if (controller.signal.aborted) return;
        if (!turn.answerId) { turn.error = 'Could not reach the server.'; return; }
        await new Promise((r) => setTimeout(r, 1000));
        request = () => resumeFrom(turn, controller.signal);
        continue;
      }
      if (response.status === 204) { turn.pending = false; return; }  // nothing left
      if (!response.ok) {
        let message = `The server answered ${response.status}.`;
        try { message = (await response.json()).error || message; } catch (e) {}
        turn.error = message;
        turn.pending = false;
        return;
      }
      const answerId = response.headers.get('X-AIStream-Answer-Id');
      if (answerId && !turn.answerId) { turn.answerId = answerId; turn.pending = true; save(); }
      const outcome = await readStream(response, node, turn, controller.signal);
      if (outcome !== 'lost' || !turn.answerId) {
        if (outcome === 'lost') turn.error = 'The connection was lost.';
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
      request = () => resumeFrom(turn, controller.signal);
    }
    turn.error = 'The connection was lost.';
    turn.pending = false;
  }

  function askWithEventSource(question, node, turn) {
    const url = `${ENDPOINT}?question=${encodeURIComponent(question)}&provider=${encodeURIComponent(provider.value)}`;
    return new Promise((resolve) => {
      const source = new EventSource(url);
      const finish = () => { source.close(); resolve(); };
      stopCurrent = finish;
      source.onmessage = (event) => {
        if (!turn.answerId && event.lastEventId) {
          turn.answerId = event.lastEventId.split(':')[0];
          turn.pending = true;
        }
        if (handle(event.data, node, turn, event.lastEventId)) { turn.pending = false; finish(); }
      };
      source.onerror = async () => {
        if (leaving) return;  // a reload: the next page resumes the answer
        // A dropped connection to a resumable answer: EventSource reconnects
        // by itself, with the last event's id, and the server resumes there.
        if (turn.answerId && source.readyState === EventSource.CONNECTING) return;
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
    stopButton.onclick = () => stop(turn);
    if (mode.value === 'eventsource') await askWithEventSource(question, node, turn);
    else await askWithFetch(question, node, turn, sent);
    finished(node, turn);
  });

  // Stop: the server goes on with an answer its reader left (so that a
  // reload can resume it), so the page tells it to stop for good.
  function stop(turn) {
    turn.stopped = true;
    turn.pending = false;
    if (turn.answerId) fetch(`${ENDPOINT}/${turn.answerId}/cancel`, { method: 'POST' });
    if (stopCurrent) stopCurrent();
  }

  function finished(node, turn) {
    node.classList.remove('typing');
    turn.pending = false;
    show(node, turn);
    save();
    setBusy(false);
  }

  // A reload in the middle of an answer: continue it where it was.
  async function resumePending() {
    const turn = turns[turns.length - 1];
    if (!turn || turn.role !== 'assistant' || !turn.pending || !turn.answerId) return;
    const node = messages.lastElementChild;
    node.classList.add('typing');
    setBusy(true);
    const controller = new AbortController();
    stopCurrent = () => controller.abort();
    stopButton.onclick = () => stop(turn);
    await follow(() => resumeFrom(turn, controller.signal), node, turn, controller);
    finished(node, turn);
  }

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
  resumePending();
})();
