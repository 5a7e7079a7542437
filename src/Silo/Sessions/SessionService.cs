using System.Buffers.Text;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using KvCache.GpuWorker;
using KvCache.Silo.Hosting;
using KvCache.Silo.Models;
using KvCache.Silo.Runtime;
using KvCache.Silo.Storage;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Sessions;

/// <summary>The silo's sessions, served in process: the single-node service's <see cref="ISessionService"/>.</summary>
internal sealed class SessionService(
    SessionCatalog catalog,
    ModelCatalog models,
    ISessionStore store,
    IOptions<SiloOptions> options,
    TimeProvider time) : ISessionService
{
    public const string FullCodec = "full";
    private const int MaxIdLength = 128;

    private readonly SiloOptions _options = options.Value;

    public async Task<SessionInfo> CreateAsync(string tenant, string? model, string? codec, string? sessionId, CancellationToken cancellationToken)
    {
        var languageModel = string.IsNullOrEmpty(model)
            ? models.Default
            : models.Get(model) ?? throw new SessionException(SessionErrorCode.InvalidArgument, $"Unknown model '{model}'; ListModels names the served ones.");
        codec = string.IsNullOrEmpty(codec) ? FullCodec : codec;
        if (!languageModel.Codecs.Contains(codec))
        {
            throw new SessionException(
                SessionErrorCode.InvalidArgument,
                $"Model '{languageModel.Id}' has no codec '{codec}'; it has: {string.Join(", ", languageModel.Codecs)}.");
        }

        if (string.IsNullOrEmpty(sessionId))
        {
            sessionId = NewSessionId();
        }
        else
        {
            ValidateId(sessionId, "session_id");
        }

        var key = new SessionKey(tenant, sessionId);
        var record = new SessionRecord(key, languageModel.Id, codec, time.GetUtcNow());
        if (!await StoreCall(() => store.TryCreateAsync(record, cancellationToken)))
        {
            throw new SessionException(SessionErrorCode.AlreadyExists, $"Session '{sessionId}' already exists.");
        }

        return SpilledInfo(record, languageModel, 0);
    }

    public Task<AppendResult> AppendAsync(SessionKey key, ReadOnlyMemory<int> tokens, int topLogprobs, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        if (tokens.Length > _options.MaxAppendTokens)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"Append carries {tokens.Length} tokens; the limit is {_options.MaxAppendTokens}.");
        }

        return catalog.InvokeAsync(key, grain => grain.AppendAsync(tokens, topLogprobs, cancellationToken));
    }

    public IAsyncEnumerable<DecodedToken> DecodeAsync(SessionKey key, DecodeRequestOptions options, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        if (options.MaxTokens < 1 || options.MaxTokens > _options.MaxDecodeTokens)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"max_tokens must be in [1, {_options.MaxDecodeTokens}], not {options.MaxTokens}.");
        }

        if (options.RequestId is not null)
        {
            ValidateId(options.RequestId, "request_id");
        }

        var sampling = options.Sampling;
        if (!float.IsFinite(sampling.Temperature) || sampling.Temperature < 0 || sampling.TopK < 0
            || !float.IsFinite(sampling.TopP) || sampling.TopP < 0 || sampling.TopP > 1)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, "sampling needs temperature >= 0, top_k >= 0 and top_p in [0, 1].");
        }

        return catalog.InvokeStreamAsync(key, grain => grain.DecodeAsync(options, cancellationToken));
    }

    public async Task<SessionInfo> GetAsync(SessionKey key, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        if (catalog.TryGetActive(key)?.TryGetInfo() is { } active)
        {
            return active;
        }

        var record = await StoreCall(() => store.GetAsync(key, cancellationToken)) ?? throw SessionException.NotFound(key.SessionId);
        return await SpilledInfoAsync(record, cancellationToken);
    }

    public async Task<SessionInfo> SpillAsync(SessionKey key, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        if (catalog.TryGetActive(key) is { } grain)
        {
            try
            {
                return await grain.SpillAsync(cancellationToken);
            }
            catch (GrainDeactivatedException)
            {
                // Spilled by someone else meanwhile: report what the store holds.
            }
        }

        return await GetAsync(key, cancellationToken);
    }

    public async Task DeleteAsync(SessionKey key, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        if (catalog.TryGetActive(key) is { } grain)
        {
            try
            {
                await grain.DeleteAsync(cancellationToken);
                return;
            }
            catch (GrainDeactivatedException)
            {
            }
        }

        if (!await StoreCall(() => store.DeleteAsync(key, cancellationToken)))
        {
            throw SessionException.NotFound(key.SessionId);
        }
    }

    public async Task<SessionListPage> ListAsync(string tenant, int pageSize, string? pageToken, CancellationToken cancellationToken)
    {
        if (pageSize is < 0 or > 1000)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, "page_size must be in [0, 1000].");
        }

        if (!string.IsNullOrEmpty(pageToken))
        {
            ValidateId(pageToken, "page_token");
        }

        var page = await StoreCall(() => store.ListAsync(tenant, string.IsNullOrEmpty(pageToken) ? null : pageToken, pageSize == 0 ? 100 : pageSize, cancellationToken));
        var sessions = await Task.WhenAll(page.Sessions.Select(record =>
            catalog.TryGetActive(record.Key)?.TryGetInfo() is { } active ? Task.FromResult(active) : SpilledInfoAsync(record, cancellationToken)));
        return new SessionListPage(sessions, page.NextPageToken);
    }

    public IReadOnlyList<ModelDescription> ListModels() =>
        models.All.Select(m => new ModelDescription(
            m.Id,
            m.Config.VocabSize,
            m.Config.MaxPositionEmbeddings,
            m.Codecs,
            m.Config.NumHiddenLayers,
            m.Config.HiddenSize,
            m.ParameterCount)).ToArray();

    private async Task<SessionInfo> SpilledInfoAsync(SessionRecord record, CancellationToken cancellationToken)
    {
        var position = await StoreCall(() => store.GetTokenCountAsync(record.Key, cancellationToken));
        return models.Get(record.Model) is { } model
            ? SpilledInfo(record, model, position)
            : new SessionInfo(record.Key.SessionId, record.Model, record.Codec, position, SessionResidency.Spilled, null, 0, 0, 0);
    }

    private static SessionInfo SpilledInfo(SessionRecord record, ILanguageModel model, long position) =>
        new(
            record.Key.SessionId,
            record.Model,
            record.Codec,
            position,
            SessionResidency.Spilled,
            null,
            model.CacheBytesAt(record.Codec, (int)position),
            model.BytesPerToken(record.Codec),
            model.Config.MaxPositionEmbeddings);

    private static string NewSessionId()
    {
        Span<byte> random = stackalloc byte[16];
        RandomNumberGenerator.Fill(random);
        Span<byte> text = stackalloc byte[Base64Url.GetEncodedLength(random.Length)];
        Base64Url.EncodeToUtf8(random, text);
        return "s-" + System.Text.Encoding.ASCII.GetString(text);
    }

    private static void ValidateKey(SessionKey key) => ValidateId(key.SessionId, "session_id");

    /// <summary>Ids become parts of store keys and log lines: a strict alphabet keeps both safe.</summary>
    private static void ValidateId(string id, string field)
    {
        if (id.Length is 0 or > MaxIdLength)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"{field} must be 1-{MaxIdLength} characters.");
        }

        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                throw new SessionException(SessionErrorCode.InvalidArgument, $"{field} may only hold A-Z a-z 0-9 . _ -");
            }
        }
    }

    private static async Task<T> StoreCall<T>(Func<ValueTask<T>> call)
    {
        try
        {
            return await call();
        }
        catch (SessionNotFoundException ex)
        {
            throw SessionException.NotFound(ex.Key.SessionId);
        }
        catch (Exception ex) when (ex is not SessionException and not OperationCanceledException and not ArgumentException)
        {
            throw new SessionException(SessionErrorCode.Unavailable, "The spill store is unavailable.", ex);
        }
    }
}
