using System.Net;
using System.Net.Sockets;

namespace KvCache.Testing.Net;

/// <summary>
/// Free loopback ports from one range for child processes to bind. A range below Linux's ephemeral ports
/// (32768-60999) keeps an outgoing connection from taking a port between the probe and the child's bind; a port is
/// never handed out twice, since children bind theirs only later.
/// </summary>
public sealed class LoopbackPorts(int first, int last)
{
    private readonly HashSet<int> _handedOut = [];

    public int Take()
    {
        for (var attempt = 0; attempt < 500; attempt++)
        {
            var port = Random.Shared.Next(first, last + 1);
            lock (_handedOut)
            {
                if (!_handedOut.Add(port))
                {
                    continue;
                }
            }

            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // In use: try another.
            }
        }

        throw new InvalidOperationException($"No free loopback port in {first}-{last}.");
    }
}
