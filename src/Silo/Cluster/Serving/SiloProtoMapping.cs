using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Sessions;
using KvCache.Transport;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Silo.Cluster.Serving;

/// <summary>Conversions between the session service's types and the protobuf messages, both ways.</summary>
public static class SiloProtoMapping
{
    public static V1.Session ToProto(SessionInfo info) => new()
    {
        Id = info.Id,
        Model = info.Model,
        Codec = info.Codec,
        Position = info.Position,
        State = info.Residency == SessionResidency.Active ? V1.SessionState.Active : V1.SessionState.Spilled,
        OwnerSilo = info.OwnerSilo ?? "",
        CacheBytes = info.CacheBytes,
        BytesPerToken = info.BytesPerToken,
        MaxPosition = info.MaxPosition,
    };

    public static SessionInfo ToInfo(V1.Session session) => new(
        session.Id,
        session.Model,
        session.Codec,
        session.Position,
        session.State == V1.SessionState.Active ? SessionResidency.Active : SessionResidency.Spilled,
        session.OwnerSilo.Length == 0 ? null : session.OwnerSilo,
        session.CacheBytes,
        session.BytesPerToken,
        session.MaxPosition);

    public static V1.AppendResponse ToProto(AppendResult result)
    {
        var response = new V1.AppendResponse { Position = result.Position };
        foreach (var top in result.TopLogprobs)
        {
            response.TopLogprobs.Add(new V1.TokenLogprob { TokenId = top.TokenId, Logprob = top.Logprob });
        }

        return response;
    }

    public static AppendResult ToResult(V1.AppendResponse response) =>
        new(response.Position, response.TopLogprobs.Select(t => new TokenLogprob(t.TokenId, t.Logprob)).ToArray());

    public static V1.DecodeEvent ToProto(DecodedToken token) => new()
    {
        TokenId = token.TokenId,
        Position = token.Position,
        Logprob = token.Logprob,
        FinishReason = token.Finish switch
        {
            FinishReason.StopToken => V1.FinishReason.StopToken,
            FinishReason.MaxTokens => V1.FinishReason.MaxTokens,
            FinishReason.MaxPosition => V1.FinishReason.MaxPosition,
            _ => V1.FinishReason.Unspecified,
        },
        Replayed = token.Replayed,
    };

    public static DecodedToken ToToken(V1.DecodeEvent e) => new(
        e.TokenId,
        e.Position,
        e.Logprob,
        e.FinishReason switch
        {
            V1.FinishReason.StopToken => FinishReason.StopToken,
            V1.FinishReason.MaxTokens => FinishReason.MaxTokens,
            V1.FinishReason.MaxPosition => FinishReason.MaxPosition,
            _ => FinishReason.None,
        },
        e.Replayed);

    public static V1.DecodeRequest ToProto(string sessionId, DecodeRequestOptions options)
    {
        var request = new V1.DecodeRequest
        {
            SessionId = sessionId,
            MaxTokens = options.MaxTokens,
            Sampling = new V1.SamplingParams
            {
                Temperature = options.Sampling.Temperature,
                TopK = options.Sampling.TopK,
                TopP = options.Sampling.TopP,
                Seed = options.Sampling.Seed,
            },
            RequestId = options.RequestId ?? "",
        };
        request.StopTokenIds.AddRange(options.StopTokenIds);
        return request;
    }

    public static DecodeRequestOptions ToOptions(V1.DecodeRequest request)
    {
        var sampling = request.Sampling ?? new V1.SamplingParams();
        return new DecodeRequestOptions(
            request.MaxTokens,
            new SamplingOptions(sampling.Temperature, sampling.TopK, sampling.TopP, sampling.Seed),
            request.StopTokenIds.ToHashSet(),
            string.IsNullOrEmpty(request.RequestId) ? null : request.RequestId);
    }

    public static V1.Model ToProto(ModelDescription model)
    {
        var proto = new V1.Model
        {
            Id = model.Id,
            VocabSize = model.VocabSize,
            MaxPosition = model.MaxPosition,
            NumLayers = model.NumLayers,
            HiddenSize = model.HiddenSize,
            Parameters = model.Parameters,
        };
        proto.Codecs.AddRange(model.Codecs);
        return proto;
    }

    public static ModelDescription ToModel(V1.Model model) =>
        new(model.Id, model.VocabSize, model.MaxPosition, model.Codecs.ToArray(), model.NumLayers, model.HiddenSize, model.Parameters);

    /// <summary>The status code a session error travels as (NotOwner: ABORTED, which no other error uses).</summary>
    public static StatusCode ToStatusCode(SessionErrorCode code) => code switch
    {
        SessionErrorCode.NotFound => StatusCode.NotFound,
        SessionErrorCode.AlreadyExists => StatusCode.AlreadyExists,
        SessionErrorCode.InvalidArgument => StatusCode.InvalidArgument,
        SessionErrorCode.FailedPrecondition => StatusCode.FailedPrecondition,
        SessionErrorCode.ResourceExhausted => StatusCode.ResourceExhausted,
        SessionErrorCode.NotOwner => StatusCode.Aborted,
        _ => StatusCode.Unavailable,
    };
}
