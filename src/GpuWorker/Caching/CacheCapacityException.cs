namespace KvCache.GpuWorker;

/// <summary>The model's cache pool has no room for the request.</summary>
public sealed class CacheCapacityException(string message) : Exception(message);
