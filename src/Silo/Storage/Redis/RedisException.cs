namespace KvCache.Silo.Storage.Redis;

/// <summary>Redis answered with an error reply; the message is the server's.</summary>
public class RedisException : Exception
{
    public RedisException(string message) : base(message)
    {
    }

    public RedisException(string message, Exception? innerException) : base(message, innerException)
    {
    }
}

/// <summary>
/// The connection failed or was lost; a command that was in flight may or may not have run. The next command
/// reconnects.
/// </summary>
public sealed class RedisConnectionException(string message, Exception? innerException = null) : RedisException(message, innerException);
