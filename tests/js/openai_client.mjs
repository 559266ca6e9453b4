// The openai npm package against our OpenAI-compatible endpoint.
//   node openai_client.mjs <base url> <api key> <model> <question> [stream: 0|1]
// Prints one JSON line: {text, finish_reason, usage, error: {status, code} | null}.
import OpenAI from 'openai';

const [baseURL, apiKey, model, question, stream] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const result = { text: '', finish_reason: null, usage: null, reasoning: '', tool_calls: [], error: null };
try {
  if (stream === '1') {
    const chunks = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: question }], stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of chunks) {
      if (chunk.usage) result.usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      result.text += choice.delta.content || '';
      result.reasoning += choice.delta.reasoning_content || '';
      for (const call of choice.delta.tool_calls || []) result.tool_calls.push(call);
      if (choice.finish_reason) result.finish_reason = choice.finish_reason;
    }
  } else {
    const completion = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: question }],
    });
    result.text = completion.choices[0].message.content;
    result.finish_reason = completion.choices[0].finish_reason;
    result.usage = completion.usage;
  }
} catch (e) {
  result.error = { status: e.status ?? null, code: e.code ?? null, message: String(e.message) };
}
process.stdout.write(JSON.stringify(result) + '\n');
