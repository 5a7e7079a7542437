namespace KvCache.Transport;

/// <summary>
/// A call that ended with a non-OK status. Handlers throw it to choose the status the client sees;
/// clients receive it for every failed call (mirrors Grpc.Core.RpcException).
/// </summary>
public class RpcException : Exception
{
    public RpcException(Status status)
        : this(status, new Metadata())
    {
    }

    public RpcException(Status status, Metadata trailers)
        : base(status.ToString())
    {
        ArgumentNullException.ThrowIfNull(trailers);
        Status = status;
        Trailers = trailers;
    }

    public Status Status { get; }

    public StatusCode StatusCode => Status.StatusCode;

    public Metadata Trailers { get; }
}
