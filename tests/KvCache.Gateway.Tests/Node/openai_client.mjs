// Drives the gateway's OpenAI-compatible API with the official `openai` npm package, for
// OpenAIClientIntegrationTests and OpenAIClusterIntegrationTests. Usage:
//   node openai_client.mjs <base url> <api key> <operation> '<json arguments>'
// Prints one JSON line: what the operation saw, or {"error": {"status", "body"}} when the client raised an APIError.
import OpenAI from 'openai';

const [baseURL, apiKey, operation, argsJson] = process.argv.slice(2);
const args = JSON.parse(argsJson ?? '{}');

// No retries: a test asserts on the first answer (429 and 503 would otherwise be retried).
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });

async function responses() {
  const request = {
    model: args.model,
    input: args.input,
    instructions: args.instructions,
    previous_response_id: args.previous_response_id,
    max_output_tokens: args.max_output_tokens,
    temperature: args.temperature ?? 0,
  };
  if (!args.stream) {
    const response = await client.responses.create(request);
    return { id: response.id, text: response.output_text, status: response.status, usage: response.usage, kvcache: response.kvcache };
  }

  const stream = await client.responses.create({ ...request, stream: true });
  const events = [];
  let deltas = '';
  let done = null;
  let final = null;
  for await (const event of stream) {
    events.push(event.type);
    if (event.type === 'response.output_text.delta') deltas += event.delta;
    if (event.type === 'response.output_text.done') done = event.text;
    if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response;
  }

  return { id: final.id, text: done, deltas, status: final.status, usage: final.usage, kvcache: final.kvcache, events };
}

async function chat() {
  const headers = args.conversation ? { 'X-KvCache-Conversation': args.conversation } : {};
  const request = { model: args.model, messages: args.messages, max_tokens: args.max_tokens, temperature: args.temperature ?? 0 };
  if (!args.stream) {
    const completion = await client.chat.completions.create(request, { headers });
    const choice = completion.choices[0];
    return { id: completion.id, text: choice.message.content, finish_reason: choice.finish_reason, usage: completion.usage, kvcache: completion.kvcache };
  }

  const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } }, { headers });
  let text = '';
  let finish = null;
  let usage = null;
  let kvcache = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    if (chunk.kvcache) kvcache = chunk.kvcache;
    for (const choice of chunk.choices) {
      text += choice.delta?.content ?? '';
      finish = choice.finish_reason ?? finish;
    }
  }

  return { id: null, text, finish_reason: finish, usage, kvcache, chunks };
}

const operations = {
  responses,
  chat,
  models: async () => ({ ids: (await client.models.list()).data.map(m => m.id) }),
  get: async () => {
    const response = await client.responses.retrieve(args.id);
    return { id: response.id, text: response.output_text, kvcache: response.kvcache };
  },
  delete: async () => {
    await client.responses.delete(args.id);
    return { deleted: true };
  },
};

try {
  console.log(JSON.stringify(await operations[operation]()));
} catch (error) {
  if (!(error instanceof OpenAI.APIError)) throw error;
  console.log(JSON.stringify({ error: { status: error.status ?? null, body: error.error ?? null } }));
}
