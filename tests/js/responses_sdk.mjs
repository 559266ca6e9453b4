// The AI SDK's default openai() provider (the Responses API) reading our
// /v1/responses endpoint, streamed.
//
//   node responses_sdk.mjs <base url> <api key> <model alias> <prompt>
//
// Prints one JSON line: {"text", "finishReason", "usage", "error"}.
import { createOpenAI } from '@ai-sdk/openai';
import { streamText } from 'ai';

const [baseURL, apiKey, model, prompt] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });
let error = null;
let out = {};
try {
  const result = streamText({ model: openai(model), prompt, onError: ({ error: e }) => { error = String(e && e.message || e); } });
  let text = '';
  for await (const delta of result.textStream) text += delta;
  out = { text, finishReason: await result.finishReason, usage: await result.usage };
} catch (e) {
  error = error || String(e && e.message || e);
}
process.stdout.write(JSON.stringify({ ...out, error }) + '\n');
