// The generated gRPC clients, by short names: their outer classes (KvCache, Admin) share names with namespaces.
global using AdminClient = KvCache.Contracts.Admin.V1.Admin.AdminClient;
global using KvCacheClient = KvCache.Contracts.V1.KvCache.KvCacheClient;
