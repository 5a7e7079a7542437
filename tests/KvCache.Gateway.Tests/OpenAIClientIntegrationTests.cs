using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// The gateway's OpenAI-compatible API driven by the official <c>openai</c> npm package (and curl for the raw
/// streams), checked against the sessions it leaves through gRPC. Model: a generated random model with
/// KvCache.Text.Tests' SentencePiece tokenizer and ChatML template; greedy sampling, so replies are exact.
/// </summary>
public sealed class OpenAIClientIntegrationTests : IAsyncLifetime
{
    private const string KeyA = "openai-key-a";
    private const string KeyB = "openai-key-b";
    private const string KeyQuota = "openai-key-quota";
    private const string KeyBytes = "openai-key-bytes";
    private static readonly CallOptions A = new(new Metadata { { "authorization", $"Bearer {KeyA}" } });

    private readonly string _model = Directory.CreateTempSubdirectory("kvcache-openai-").FullName;
    private InProcessGateway _gateway = null!;
    private GrpcChannel _channel = null!;
    private KvCacheClient _grpc = null!;

    private string Model => Path.GetFileName(_model);

    public async Task InitializeAsync()
    {
        ChatTestModels.Write(_model, seed: 29);

        _gateway = await InProcessGateway.StartAsync(new Dictionary<string, string?>
        {
            ["Models:Directories:0"] = _model,
            ["Models:CacheBudgetMiB"] = "64",
            ["Auth:ApiKeys:0:Tenant"] = "tenant-a",
            ["Auth:ApiKeys:0:Key"] = KeyA,
            ["Auth:ApiKeys:1:Tenant"] = "tenant-b",
            ["Auth:ApiKeys:1:Key"] = KeyB,
            ["Auth:ApiKeys:2:Tenant"] = "tenant-quota",
            ["Auth:ApiKeys:2:Key"] = KeyQuota,
            ["Quotas:Tenants:tenant-quota:MaxSessions"] = "1",
            ["Auth:ApiKeys:3:Tenant"] = "tenant-bytes",
            ["Auth:ApiKeys:3:Key"] = KeyBytes,
            ["Quotas:Tenants:tenant-bytes:MaxCacheBytes"] = "1",
        });
        _channel = _gateway.CreateChannel();
        _grpc = new KvCacheClient(_channel);
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        await _gateway.DisposeAsync();
        Directory.Delete(_model, recursive: true);
    }

    [Fact]
    public async Task A_three_turn_streamed_conversation_through_previous_response_id_sends_only_each_new_input()
    {
        string? previous = null;
        string? session = null;
        long end = 0;
        foreach (var input in (string[])["Tell me a fortune.", "Another one.", "And a third."])
        {
            var turn = await RunAsync(KeyA, "responses", new { model = Model, input, previous_response_id = previous, max_output_tokens = 8, stream = true });
            var events = turn["events"]!.AsArray().Select(e => (string)e!).ToList();
            Assert.Equal(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"], events.Take(4));
            Assert.Equal(["response.output_text.done", "response.content_part.done", "response.output_item.done"], events[^4..^1]);
            Assert.Contains(events[^1], (string[])["response.completed", "response.incomplete"]);
            Assert.Equal((string)turn["deltas"]!, (string)turn["text"]!);

            // The session already holds everything before this turn: only the new input is appended.
            session ??= (string)turn["kvcache"]!["session_id"]!;
            Assert.Equal(session, (string)turn["kvcache"]!["session_id"]!);
            var usage = turn["usage"]!;
            Assert.Equal(end, (long)usage["input_tokens_details"]!["cached_tokens"]!);
            Assert.True((long)usage["input_tokens"]! > end);
            end = (long)usage["input_tokens"]! + (long)usage["output_tokens"]!;
            Assert.Equal(end, (long)turn["kvcache"]!["position"]!);
            Assert.Equal(end, await PositionAsync(session));

            var stored = await RunAsync(KeyA, "get", new { id = (string)turn["id"]! });
            Assert.Equal((string)turn["text"]!, (string)stored["text"]!);
            previous = (string)turn["id"]!;
        }
    }

    [Fact]
    public async Task Continuing_from_an_older_response_forks_and_leaves_the_original_conversation_unchanged()
    {
        var first = await RunAsync(KeyA, "responses", new { model = Model, input = "Hello.", max_output_tokens = 6 });
        var second = await RunAsync(KeyA, "responses", new { model = Model, input = "Go on.", previous_response_id = (string)first["id"]!, max_output_tokens = 6 });
        var session = (string)first["kvcache"]!["session_id"]!;
        var end = (long)second["kvcache"]!["position"]!;

        var fork = await RunAsync(KeyA, "responses", new { model = Model, input = "Something else.", previous_response_id = (string)first["id"]!, max_output_tokens = 6, stream = true });

        Assert.NotEqual(session, (string)fork["kvcache"]!["session_id"]!);
        Assert.Equal(end, await PositionAsync(session));
        Assert.Equal((long)fork["kvcache"]!["position"]!, await PositionAsync((string)fork["kvcache"]!["session_id"]!));

        // The fork holds the first turn's very tokens (copied from the token log; the original has no snapshot, so its
        // first load replays them all): it replies as a conversation that took that turn directly.
        var position = (long)first["kvcache"]!["position"]!;
        Assert.Equal(position, (long)fork["usage"]!["input_tokens_details"]!["cached_tokens"]!);
        Assert.Contains($"Activated session tenant-a/{(string)fork["kvcache"]!["session_id"]!}: {position} tokens, snapshot at -1, replayed {position}", _gateway.LogLines);
        var twinFirst = await RunAsync(KeyA, "responses", new { model = Model, input = "Hello.", max_output_tokens = 6 });
        var twin = await RunAsync(KeyA, "responses", new { model = Model, input = "Something else.", previous_response_id = (string)twinFirst["id"]!, max_output_tokens = 6 });
        Assert.Equal((string)twin["text"]!, (string)fork["text"]!);
        Assert.Equal((long)twin["kvcache"]!["position"]!, (long)fork["kvcache"]!["position"]!);

        // The original still continues in place from its latest response.
        var third = await RunAsync(KeyA, "responses", new { model = Model, input = "Finish.", previous_response_id = (string)second["id"]!, max_output_tokens = 6 });
        Assert.Equal(session, (string)third["kvcache"]!["session_id"]!);
        Assert.Equal(end, (long)third["usage"]!["input_tokens_details"]!["cached_tokens"]!);

        // A deleted response is gone; the session (still the conversation's) is not.
        Assert.True((bool)(await RunAsync(KeyA, "delete", new { id = (string)second["id"]! }))["deleted"]!);
        Assert.Equal(404, (int)(await RunAsync(KeyA, "get", new { id = (string)second["id"]! }))["error"]!["status"]!);
        Assert.Equal((long)third["kvcache"]!["position"]!, await PositionAsync(session));
    }

    [Fact]
    public async Task A_fork_its_sources_snapshot_covers_restores_that_snapshot_and_recomputes_nothing()
    {
        var first = await RunAsync(KeyA, "responses", new { model = Model, input = "Hello.", max_output_tokens = 6 });
        var session = (string)first["kvcache"]!["session_id"]!;
        var position = (long)first["kvcache"]!["position"]!;

        // The original's snapshot is taken at the first response's end; then the conversation goes on past it.
        await _grpc.SpillSessionAsync(new SpillSessionRequest { SessionId = session }, A);
        var second = await RunAsync(KeyA, "responses", new { model = Model, input = "Go on.", previous_response_id = (string)first["id"]!, max_output_tokens = 6 });
        Assert.Equal(session, (string)second["kvcache"]!["session_id"]!);

        var fork = await RunAsync(KeyA, "responses", new { model = Model, input = "Something else.", previous_response_id = (string)first["id"]!, max_output_tokens = 6 });

        var forkId = (string)fork["kvcache"]!["session_id"]!;
        Assert.NotEqual(session, forkId);
        Assert.Contains($"Forked session tenant-a/{forkId} from session {session} at position {position}, with its snapshot: True", _gateway.LogLines);
        Assert.Contains($"Activated session tenant-a/{forkId}: {position} tokens, snapshot at {position}, replayed 0", _gateway.LogLines);
        Assert.Equal(position, (long)fork["usage"]!["input_tokens_details"]!["cached_tokens"]!);

        var twinFirst = await RunAsync(KeyA, "responses", new { model = Model, input = "Hello.", max_output_tokens = 6 });
        var twin = await RunAsync(KeyA, "responses", new { model = Model, input = "Something else.", previous_response_id = (string)twinFirst["id"]!, max_output_tokens = 6 });
        Assert.Equal((string)twin["text"]!, (string)fork["text"]!);
        Assert.Equal((long)twin["kvcache"]!["position"]!, (long)fork["kvcache"]!["position"]!);
        Assert.Equal((long)second["kvcache"]!["position"]!, await PositionAsync(session));
    }

    [Fact]
    public async Task Concurrent_turns_continuing_one_response_end_in_different_sessions_and_the_conversation_takes_one()
    {
        var first = await RunAsync(KeyA, "responses", new { model = Model, input = "Hello.", max_output_tokens = 6 });
        var session = (string)first["kvcache"]!["session_id"]!;
        var start = (long)first["kvcache"]!["position"]!;

        // Sent from this process at once (no Node start-up between them), so they overlap as closely as they can.
        using var http = new HttpClient { BaseAddress = _gateway.OpenAIAddress };
        http.DefaultRequestHeaders.Authorization = new("Bearer", KeyA);
        var body = System.Text.Json.JsonSerializer.Serialize(
            new { model = Model, input = "Go on.", previous_response_id = (string)first["id"]!, max_output_tokens = 6, temperature = 0 });
        var turns = await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
        {
            using var response = await http.PostAsync("/v1/responses", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
            return JsonNode.Parse(text)!;
        }));

        var sessions = turns.Select(t => (string)t["kvcache"]!["session_id"]!).ToList();
        Assert.Equal(4, sessions.Distinct().Count());
        var inPlace = Assert.Single(turns, t => (string)t["kvcache"]!["session_id"]! == session);
        var end = (long)inPlace["kvcache"]!["position"]!;
        Assert.Equal(end, await PositionAsync(session));

        // Each turn continued the same conversation by itself: greedy, they reply alike from the same cached prefix.
        var reply = (string)inPlace["output"]![0]!["content"]![0]!["text"]!;
        Assert.All(turns, t =>
        {
            Assert.Equal(reply, (string)t["output"]![0]!["content"]![0]!["text"]!);
            Assert.Equal(start, (long)t["usage"]!["input_tokens_details"]!["cached_tokens"]!);
            Assert.Equal(end, (long)t["kvcache"]!["position"]!);
        });

        // Each of the others forked: refused by the compare-and-append when it raced the first, or from the moved-on
        // session when it came after (both are logged).
        var previous = $"response {(string)first["id"]!} ";
        Assert.Equal(3, _gateway.LogLines.Count(l => l.Contains(previous, StringComparison.Ordinal) && l.Contains("forked into session", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_grpc_append_with_expected_position_appends_only_at_that_position()
    {
        var id = $"cas-{Guid.NewGuid():N}";
        await _grpc.CreateSessionAsync(new CreateSessionRequest { SessionId = id, Model = Model }, A);
        AppendRequest Append(int count, long? expected, string? requestId = null)
        {
            var request = new AppendRequest { SessionId = id, RequestId = requestId ?? "" };
            request.TokenIds.AddRange(Enumerable.Range(1, count));
            if (expected is { } position)
            {
                request.ExpectedPosition = position;
            }

            return request;
        }

        Assert.Equal(10, (await _grpc.AppendAsync(Append(10, expected: 0), A)).Position);

        var refused = await Assert.ThrowsAsync<RpcException>(() => _grpc.AppendAsync(Append(2, expected: 5), A).ResponseAsync);
        Assert.Equal(StatusCode.Aborted, refused.StatusCode);
        Assert.Contains("at position 10, not the expected 5", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(10, await PositionAsync(id));

        // A request id's retry returns what it did, though the session has moved past the position it expected.
        var applied = await _grpc.AppendAsync(Append(2, expected: 10, requestId: "cas-1"), A);
        var retried = await _grpc.AppendAsync(Append(2, expected: 10, requestId: "cas-1"), A);
        Assert.Equal((12, false, 12, true), (applied.Position, applied.Replayed, retried.Position, retried.Replayed));

        // Without the field, Append appends wherever the session is, as before.
        Assert.Equal(15, (await _grpc.AppendAsync(Append(3, expected: null), A)).Position);
        Assert.Equal(15, await PositionAsync(id));
    }

    [Fact]
    public async Task Chat_completions_with_a_conversation_key_reuse_the_session_and_without_one_are_stateless()
    {
        var conversation = $"conv-{Guid.NewGuid():N}";
        List<object> history = [new { role = "system", content = "Be brief." }, new { role = "user", content = "Hi there." }];
        var first = await RunAsync(KeyA, "chat", new { model = Model, messages = history, max_tokens = 6, stream = true, conversation });
        var session = (string)first["kvcache"]!["session_id"]!;
        var end = (long)first["kvcache"]!["position"]!;
        Assert.Equal(0, (long)first["usage"]!["prompt_tokens_details"]!["cached_tokens"]!);
        Assert.Equal(end, (long)first["usage"]!["total_tokens"]!);

        // The whole history again, as the API requires: only the new message is appended.
        history.Add(new { role = "assistant", content = (string)first["text"]! });
        history.Add(new { role = "user", content = "More." });
        var second = await RunAsync(KeyA, "chat", new { model = Model, messages = history, max_tokens = 6, conversation });
        Assert.Equal(session, (string)second["kvcache"]!["session_id"]!);
        Assert.Equal(end, (long)second["usage"]!["prompt_tokens_details"]!["cached_tokens"]!);
        Assert.Equal((long)second["usage"]!["total_tokens"]!, await PositionAsync(session));

        // A history that is not what the session holds starts it afresh.
        var edited = await RunAsync(KeyA, "chat", new { model = Model, messages = new[] { new { role = "user", content = "Something new." } }, max_tokens = 6, conversation });
        Assert.Equal(0, (long)edited["usage"]!["prompt_tokens_details"]!["cached_tokens"]!);
        Assert.Equal((long)edited["usage"]!["total_tokens"]!, await PositionAsync(session));

        // Without a key: nothing is cached, nothing is left behind, and the same request gives the same reply.
        var before = await SessionCountAsync();
        var plain = await RunAsync(KeyA, "chat", new { model = Model, messages = history, max_tokens = 6, stream = true });
        var again = await RunAsync(KeyA, "chat", new { model = Model, messages = history, max_tokens = 6 });
        Assert.Null(plain["kvcache"]);
        Assert.Equal(0, (long)again["usage"]!["prompt_tokens_details"]!["cached_tokens"]!);
        Assert.Equal((string)plain["text"]!, (string)again["text"]!);
        Assert.Equal(before, await SessionCountAsync());
    }

    [Fact]
    public async Task Concurrent_chat_completions_of_one_conversation_key_each_answer_once_and_leave_one_session()
    {
        var conversation = $"conv-{Guid.NewGuid():N}";
        var first = await RunAsync(KeyA, "chat", new { model = Model, messages = new[] { new { role = "user", content = "Hi there." } }, max_tokens = 6, conversation });
        var session = (string)first["kvcache"]!["session_id"]!;
        var before = await SessionCountAsync();

        using var http = new HttpClient { BaseAddress = _gateway.OpenAIAddress };
        http.DefaultRequestHeaders.Authorization = new("Bearer", KeyA);
        http.DefaultRequestHeaders.Add("X-KvCache-Conversation", conversation);
        var body = System.Text.Json.JsonSerializer.Serialize(new
        {
            model = Model,
            max_tokens = 6,
            temperature = 0,
            messages = new[]
            {
                new { role = "user", content = "Hi there." },
                new { role = "assistant", content = (string)first["text"]! },
                new { role = "user", content = "More." },
            },
        });
        var replies = await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
        {
            using var response = await http.PostAsync("/v1/chat/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
            return JsonNode.Parse(text)!;
        }));

        // Each request was answered from exactly its own history: greedy, alike. The conversation's session holds
        // one answered turn (not four appended one after another), and no temporary fork is left behind.
        var total = (long)replies[0]["usage"]!["total_tokens"]!;
        Assert.All(replies, r =>
        {
            Assert.Equal((string)replies[0]["choices"]![0]!["message"]!["content"]!, (string)r["choices"]![0]!["message"]!["content"]!);
            Assert.Equal(total, (long)r["usage"]!["total_tokens"]!);
        });
        Assert.Equal(total, await PositionAsync(session));
        Assert.Equal(before, await SessionCountAsync());
    }

    [Fact]
    public async Task Another_tenants_response_id_is_not_found_a_missing_key_is_unauthorized_and_a_quota_hit_is_429()
    {
        var mine = await RunAsync(KeyA, "responses", new { model = Model, input = "Private.", max_output_tokens = 4 });
        var id = (string)mine["id"]!;
        foreach (var (operation, args) in new (string, object)[]
                 {
                     ("get", new { id }),
                     ("delete", new { id }),
                     ("responses", new { model = Model, input = "Steal.", previous_response_id = id, max_output_tokens = 4 }),
                 })
        {
            var error = (await RunAsync(KeyB, operation, args))["error"]!;
            Assert.Equal(404, (int)error["status"]!);
            Assert.Equal("not_found", (string)error["body"]!["code"]!);
            Assert.DoesNotContain("Private", error.ToJsonString(), StringComparison.Ordinal);
        }

        Assert.Equal((string)mine["text"]!, (string)(await RunAsync(KeyA, "get", new { id }))["text"]!);

        var unknown = (await RunAsync("not-a-key", "models", new { }))["error"]!;
        Assert.Equal(401, (int)unknown["status"]!);
        Assert.Equal("invalid_api_key", (string)unknown["body"]!["code"]!);
        var missing = await OpenAINode.CurlAsync("-i", new Uri(_gateway.OpenAIAddress, "/v1/models").ToString());
        Assert.StartsWith("HTTP/1.1 401", missing, StringComparison.Ordinal);
        var body = JsonNode.Parse(missing[missing.IndexOf("\r\n\r\n", StringComparison.Ordinal)..])!["error"]!;
        Assert.Equal("invalid_request_error", (string)body["type"]!);
        Assert.Contains("param", body.AsObject().Select(p => p.Key));

        // tenant-quota may hold one session: a second conversation is refused before anything runs.
        Assert.Null((await RunAsync(KeyQuota, "responses", new { model = Model, input = "One.", max_output_tokens = 4 }))["error"]);
        var refused = (await RunAsync(KeyQuota, "responses", new { model = Model, input = "Two.", max_output_tokens = 4 }))["error"]!;
        Assert.Equal(429, (int)refused["status"]!);
        Assert.Equal("rate_limit_error", (string)refused["body"]!["type"]!);
        Assert.Equal("rate_limit_exceeded", (string)refused["body"]!["code"]!);

        // A cache quota refuses the input before a stream opens: a streamed request gets the status too, and the
        // session made for it is gone.
        foreach (var (operation, args) in new (string, object)[]
                 {
                     ("responses", new { model = Model, input = "Too much.", max_output_tokens = 4, stream = true }),
                     ("chat", new { model = Model, messages = new[] { new { role = "user", content = "Too much." } }, max_tokens = 4, stream = true }),
                 })
        {
            var error = (await RunAsync(KeyBytes, operation, args))["error"]!;
            Assert.Equal(429, (int)error["status"]!);
            Assert.Equal("rate_limit_error", (string)error["body"]!["type"]!);
        }

        var bytesTenant = new CallOptions(new Metadata { { "authorization", $"Bearer {KeyBytes}" } });
        Assert.Empty((await _grpc.ListSessionsAsync(new ListSessionsRequest { PageSize = 10 }, bytesTenant)).Sessions);
    }

    [Fact]
    public async Task Curl_reads_both_raw_event_streams()
    {
        var responses = await OpenAINode.CurlAsync(
            "-H", $"Authorization: Bearer {KeyA}", "-H", "Content-Type: application/json",
            "-d", $$"""{"model":"{{Model}}","input":"Stream it.","max_output_tokens":4,"temperature":0,"stream":true}""",
            new Uri(_gateway.OpenAIAddress, "/v1/responses").ToString());
        var blocks = responses.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(blocks, b => Assert.Matches("^event: [a-z_.]+\ndata: \\{.*\\}$", b));
        var types = blocks.Select(b => b.Split('\n')[0]["event: ".Length..]).ToList();
        Assert.Equal("response.created", types[0]);
        Assert.Equal(4, types.Count(t => t == "response.output_text.delta"));
        Assert.Equal("response.incomplete", types[^1]);
        Assert.Equal(Enumerable.Range(0, blocks.Length), blocks.Select(b => (int)JsonNode.Parse(b.Split('\n')[1]["data: ".Length..])!["sequence_number"]!));

        var chat = await OpenAINode.CurlAsync(
            "-H", $"Authorization: Bearer {KeyA}", "-H", "Content-Type: application/json",
            "-d", $$"""{"model":"{{Model}}","messages":[{"role":"user","content":"Stream it."}],"max_tokens":4,"temperature":0,"stream":true}""",
            new Uri(_gateway.OpenAIAddress, "/v1/chat/completions").ToString());
        var chunks = chat.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", chunks[^1]);
        Assert.All(chunks[..^1], c => Assert.Equal("chat.completion.chunk", (string)JsonNode.Parse(c["data: ".Length..])!["object"]!));
        Assert.Equal("length", (string)JsonNode.Parse(chunks[^2]["data: ".Length..])!["choices"]![0]!["finish_reason"]!);
    }

    [Fact]
    public async Task Models_are_listed_and_bad_requests_get_400_with_bounded_messages()
    {
        var models = await RunAsync(KeyA, "models", new { });
        Assert.Contains(Model, models["ids"]!.AsArray().Select(m => (string)m!));

        var longId = new string('x', 5000);
        var error = (await RunAsync(KeyA, "get", new { id = longId }))["error"]!;
        Assert.Equal(404, (int)error["status"]!);
        Assert.True(((string)error["body"]!["message"]!).Length < 200);

        var empty = (await RunAsync(KeyA, "responses", new { model = Model, input = "", max_output_tokens = 4 }))["error"]!;
        Assert.Equal(400, (int)empty["status"]!);
        Assert.Equal("input", (string)empty["body"]!["param"]!);

        var tooLong = (await RunAsync(KeyA, "responses", new { model = Model, input = "Hi.", max_output_tokens = 1_000_000 }))["error"]!;
        Assert.Equal(400, (int)tooLong["status"]!);
        Assert.Equal("max_output_tokens", (string)tooLong["body"]!["param"]!);
    }

    private Task<JsonNode> RunAsync(string key, string operation, object args) => OpenAINode.RunAsync(_gateway.OpenAIAddress, key, operation, args);

    private async Task<long> PositionAsync(string sessionId) =>
        (await _grpc.GetSessionAsync(new GetSessionRequest { SessionId = sessionId }, A)).Position;

    private async Task<int> SessionCountAsync() =>
        (await _grpc.ListSessionsAsync(new ListSessionsRequest { PageSize = 1000 }, A)).Sessions.Count;
}
