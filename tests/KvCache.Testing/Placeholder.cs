namespace KvCache.Testing;
