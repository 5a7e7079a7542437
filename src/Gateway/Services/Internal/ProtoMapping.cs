using Grpc.Core;
using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Sessions;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Gateway.Services.Internal;

/// <summary>Conversions between the session service's types and the public protobuf messages.</summary>
internal static class ProtoMapping
{
    public static V1.Session ToProto(SessionInfo info) => new()
    {
        Id = info.Id,
        Model = info.Model,
        Codec = info.Codec,
        Position = info.Position,
        State = info.Residency switch
        {
            SessionResidency.Active => V1.SessionState.Active,
            SessionResidency.Empty => V1.SessionState.Empty,
            _ => V1.SessionState.Spilled,
        },
        OwnerSilo = info.OwnerSilo ?? "",
        CacheBytes = info.CacheBytes,
        BytesPerToken = info.BytesPerToken,
        MaxPosition = info.MaxPosition,
    };

    public static AppendInput ToInput(V1.AppendRequest request, int topLogprobs) => new(
        [.. request.TokenIds],
        string.IsNullOrEmpty(request.Text) ? null : request.Text,
        [.. request.Messages.Select(m => new ChatTurn(m.Role, m.Content))],
        topLogprobs,
        request.PromptLogprobs,
        string.IsNullOrEmpty(request.RequestId) ? null : request.RequestId,
        request.ExpectedPosition);

    public static V1.AppendResponse ToProto(AppendResult result)
    {
        var response = new V1.AppendResponse { Position = result.Position, AppendedTokens = result.AppendedTokens, Replayed = result.Replayed };
        foreach (var top in result.TopLogprobs)
        {
            response.TopLogprobs.Add(new V1.TokenLogprob { TokenId = top.TokenId, Logprob = top.Logprob });
        }

        foreach (var scored in result.PromptLogprobs)
        {
            response.PromptLogprobs.Add(new V1.TokenLogprob { TokenId = scored.TokenId, Logprob = scored.Logprob });
        }

        return response;
    }

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
            FinishReason.StopString => V1.FinishReason.StopString,
            _ => V1.FinishReason.Unspecified,
        },
        Replayed = token.Replayed,
        Text = token.Text,
    };

    public static DecodeRequestOptions ToOptions(V1.DecodeRequest request)
    {
        var sampling = request.Sampling ?? new V1.SamplingParams();
        return new DecodeRequestOptions(
            request.MaxTokens,
            new SamplingOptions(sampling.Temperature, sampling.TopK, sampling.TopP, sampling.Seed),
            [.. request.StopTokenIds.Distinct()],
            string.IsNullOrEmpty(request.RequestId) ? null : request.RequestId,
            request.Stop.Count == 0 ? null : [.. request.Stop],
            request.IgnoreEos);
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
        proto.Tokenizer = model.Tokenizer;
        proto.ChatTemplate = model.ChatTemplate;
        proto.EosTokenIds.AddRange(model.EosTokenIds);
        return proto;
    }

    public static StatusCode ToStatusCode(SessionErrorCode code) => code switch
    {
        SessionErrorCode.NotFound => StatusCode.NotFound,
        SessionErrorCode.AlreadyExists => StatusCode.AlreadyExists,
        SessionErrorCode.InvalidArgument => StatusCode.InvalidArgument,
        SessionErrorCode.FailedPrecondition => StatusCode.FailedPrecondition,
        SessionErrorCode.ResourceExhausted => StatusCode.ResourceExhausted,
        SessionErrorCode.Aborted => StatusCode.Aborted,
        _ => StatusCode.Unavailable,
    };
}
