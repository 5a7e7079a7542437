using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Internal;
using Xunit;

namespace KvCache.Silo.Tests.Storage;

/// <summary>
/// The behaviour every <see cref="ISessionStore"/> must have; each implementation's test class derives from it.
/// Every test uses its own tenants, so implementations may share one backing server across tests.
/// </summary>
public abstract class SessionStoreContract
{
    private readonly string _tenant = "t" + Guid.NewGuid().ToString("N")[..12];

    protected abstract ISessionStore Store { get; }

    /// <summary>
    /// Asserts nothing is stored for the session but, at most, its epoch counter (the Redis test checks raw keys).
    /// </summary>
    protected virtual Task AssertNothingStoredAsync(SessionKey key) => Task.CompletedTask;

    protected SessionKey Key(string session, string? tenant = null) => new(tenant ?? _tenant, session);

    protected static SessionRecord Record(SessionKey key, string model = "llama-tiny", string codec = "full") =>
        new(key, model, codec, new DateTimeOffset(2025, 1, 2, 3, 4, 5, 678, TimeSpan.Zero).AddTicks(9));

    protected async Task<SessionKey> CreateAsync(string session, string? tenant = null)
    {
        var key = Key(session, tenant);
        Assert.True(await Store.TryCreateAsync(Record(key)));
        return key;
    }

    [Fact]
    public async Task Create_get_and_delete()
    {
        var key = Key("s1");
        Assert.Null(await Store.GetAsync(key));
        Assert.True(await Store.TryCreateAsync(Record(key)));
        Assert.False(await Store.TryCreateAsync(Record(key, model: "other")));
        Assert.Equal(Record(key), await Store.GetAsync(key));
        Assert.True(await Store.DeleteAsync(key));
        Assert.Null(await Store.GetAsync(key));
        Assert.False(await Store.DeleteAsync(key));
    }

    [Fact]
    public async Task List_pages_a_tenants_sessions_in_id_order()
    {
        foreach (string id in new[] { "d", "b", "e", "a", "c" })
        {
            await CreateAsync(id);
        }

        string other = _tenant + "x";
        await CreateAsync("a", other);
        await CreateAsync("z", other);

        var seen = new List<string>();
        string? token = null;
        int pages = 0;
        do
        {
            var page = await Store.ListAsync(_tenant, token, 2);
            Assert.True(page.Sessions.Count <= 2);
            Assert.All(page.Sessions, s => Assert.Equal(_tenant, s.Record.Key.Tenant));
            seen.AddRange(page.Sessions.Select(s => s.Record.Key.SessionId));
            token = page.NextPageToken;
            pages++;
        }
        while (token is not null);

        Assert.Equal(["a", "b", "c", "d", "e"], seen);
        Assert.Equal(3, pages);

        var all = await Store.ListAsync(other, null, 10);
        Assert.Equal(["a", "z"], all.Sessions.Select(s => s.Record.Key.SessionId));
        Assert.Null(all.NextPageToken);
        Assert.Equal(new SessionState(Record(Key("a", other)), 0, null), all.Sessions[0]);

        var empty = await Store.ListAsync(_tenant + "none", null, 10);
        Assert.Empty(empty.Sessions);
        Assert.Null(empty.NextPageToken);

        Assert.True(await Store.DeleteAsync(Key("c")));
        var afterDelete = await Store.ListAsync(_tenant, "b", 10);
        Assert.Equal(["d", "e"], afterDelete.Sessions.Select(s => s.Record.Key.SessionId));
    }

    [Fact]
    public async Task Tenants_are_isolated()
    {
        var mine = await CreateAsync("same");
        var theirs = await CreateAsync("same", _tenant + "other");
        await Store.AppendTokensAsync(mine, 0, new[] { 1, 2, 3 });
        Assert.Equal(3, await Store.GetTokenCountAsync(mine));
        Assert.Equal(0, await Store.GetTokenCountAsync(theirs));
        Assert.Equal(5, (await Store.GetOrAddDecodeRequestAsync(mine, "r", 5, "f")).Start);
        Assert.Equal(9, (await Store.GetOrAddDecodeRequestAsync(theirs, "r", 9, "f")).Start);

        Assert.True(await Store.DeleteAsync(mine));
        Assert.NotNull(await Store.GetAsync(theirs));
        Assert.Equal(0, await Store.GetTokenCountAsync(theirs));
    }

    [Fact]
    public async Task Any_tenant_name_is_held_apart_from_every_other()
    {
        // Characters a key layout gives meaning to, one tenant that looks like another's encoding, and non-ASCII.
        string[] names = ["alice@example.com", "a:b", "a{b}", "a/b", "a@b", "a%40b", "a%2540b", "ünï 💾", new string('x', 128 - _tenant.Length)];
        var tenants = names.Select(n => _tenant + n).ToArray();
        for (var i = 0; i < tenants.Length; i++)
        {
            var key = await CreateAsync("same", tenants[i]);
            await Store.AppendTokensAsync(key, 0, new[] { i });
        }

        for (var i = 0; i < tenants.Length; i++)
        {
            var key = Key("same", tenants[i]);
            var tokens = new int[4];
            Assert.Equal(1, await Store.ReadTokensAsync(key, 0, tokens));
            Assert.Equal(i, tokens[0]);
            Assert.Equal(key, (await Store.ListAsync(tenants[i], null, 10)).Sessions.Single().Record.Key);
        }

        Assert.True(await Store.DeleteAsync(Key("same", tenants[0])));
        Assert.All(tenants.Skip(1), t => Assert.Single(Store.ListAsync(t, null, 10).AsTask().Result.Sessions));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.TryCreateAsync(Record(Key("s", new string('x', 129)))).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.TryCreateAsync(Record(new SessionKey("", "s"))).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.ListAsync("", null, 10).AsTask());
    }

    [Fact]
    public async Task Token_log_appends_and_reads()
    {
        var key = await CreateAsync("log");
        Assert.Equal(0, await Store.GetTokenCountAsync(key));
        await Store.AppendTokensAsync(key, 0, new[] { 10, -1, int.MaxValue });
        await Store.AppendTokensAsync(key, 3, new[] { 40, 50 });
        await Store.AppendTokensAsync(key, 5, ReadOnlyMemory<int>.Empty);
        Assert.Equal(5, await Store.GetTokenCountAsync(key));

        var buffer = new int[10];
        Assert.Equal(4, await Store.ReadTokensAsync(key, 1, buffer));
        Assert.Equal([-1, int.MaxValue, 40, 50], buffer[..4]);
        Assert.Equal(2, await Store.ReadTokensAsync(key, 0, buffer.AsMemory(0, 2)));
        Assert.Equal([10, -1], buffer[..2]);
        Assert.Equal(0, await Store.ReadTokensAsync(key, 5, buffer));
        Assert.Equal(0, await Store.ReadTokensAsync(key, 100, buffer));
        Assert.Equal(0, await Store.ReadTokensAsync(key, 2, Memory<int>.Empty));
    }

    [Fact]
    public async Task Append_at_a_stale_count_conflicts_and_changes_nothing()
    {
        var key = await CreateAsync("conflict");
        await Store.AppendTokensAsync(key, 0, new[] { 1, 2, 3 });
        var e = await Assert.ThrowsAsync<TokenLogConflictException>(() => Store.AppendTokensAsync(key, 2, new[] { 9 }).AsTask());
        Assert.Equal(2, e.Expected);
        Assert.Equal(3, e.Actual);
        await Assert.ThrowsAsync<TokenLogConflictException>(() => Store.AppendTokensAsync(key, 4, new[] { 9 }).AsTask());
        Assert.Equal(3, await Store.GetTokenCountAsync(key));
    }

    [Fact]
    public async Task Of_concurrent_appenders_at_one_count_exactly_one_wins()
    {
        var key = await CreateAsync("race");
        for (int round = 0; round < 10; round++)
        {
            var attempts = Enumerable.Range(0, 8).Select(async writer =>
            {
                try
                {
                    await Task.Yield();
                    await Store.AppendTokensAsync(key, round * 2, new[] { writer, writer });
                    return true;
                }
                catch (TokenLogConflictException)
                {
                    return false;
                }
            }).ToArray();
            var won = await Task.WhenAll(attempts);
            Assert.Equal(1, won.Count(w => w));
        }

        // The log is whole pairs: no two writers interleaved.
        var tokens = new int[40];
        Assert.Equal(20, await Store.ReadTokensAsync(key, 0, tokens));
        for (int i = 0; i < 20; i += 2)
        {
            Assert.Equal(tokens[i], tokens[i + 1]);
        }
    }

    [Fact]
    public async Task Snapshots_commit_atomically_and_replace_the_previous_one()
    {
        var key = await CreateAsync("snap");
        Assert.Null(await Store.GetSnapshotAsync(key));

        byte[][] first = [Bytes(1 << 20, 1), Bytes(1000, 2), Bytes(1, 3)];
        for (int i = 0; i < first.Length; i++)
        {
            await Store.WriteSnapshotChunkAsync(key, 7, i, first[i]);
        }

        Assert.Null(await Store.GetSnapshotAsync(key));
        await Store.CommitSnapshotAsync(key, 7, new byte[] { 1, 2, 3 });
        var snapshot = await Store.GetSnapshotAsync(key);
        Assert.NotNull(snapshot);
        Assert.Equal(7, snapshot.SnapshotId);
        Assert.Equal([1, 2, 3], snapshot.Header.ToArray());
        var buffer = new byte[(1 << 20) + 10];
        for (int i = 0; i < first.Length; i++)
        {
            int n = await Store.ReadSnapshotChunkAsync(key, 7, i, buffer);
            Assert.Equal(first[i], buffer[..n]);
        }

        await Store.WriteSnapshotChunkAsync(key, 8, 0, Bytes(500, 4));
        Assert.Equal(7, (await Store.GetSnapshotAsync(key))!.SnapshotId);
        await Store.CommitSnapshotAsync(key, 8, new byte[] { 4 });
        snapshot = await Store.GetSnapshotAsync(key);
        Assert.Equal(8, snapshot!.SnapshotId);
        Assert.Equal([4], snapshot.Header.ToArray());
        Assert.Equal(500, await Store.ReadSnapshotChunkAsync(key, 8, 0, buffer));
        Assert.Equal(Bytes(500, 4), buffer[..500]);
        await Assert.ThrowsAsync<SnapshotChunkNotFoundException>(() => Store.ReadSnapshotChunkAsync(key, 7, 0, buffer).AsTask());
        await Assert.ThrowsAsync<SnapshotChunkNotFoundException>(() => Store.ReadSnapshotChunkAsync(key, 8, 1, buffer).AsTask());
    }

    [Fact]
    public async Task Snapshot_chunks_are_bounded_in_size_and_on_read()
    {
        var key = await CreateAsync("bounds");
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.WriteSnapshotChunkAsync(key, 1, 0, new byte[(1 << 20) + 1]).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.WriteSnapshotChunkAsync(key, 1, -1, new byte[1]).AsTask());
        await Store.WriteSnapshotChunkAsync(key, 1, 0, Bytes(100, 5));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.ReadSnapshotChunkAsync(key, 1, 0, new byte[99]).AsTask());

        // The store is still usable after a refused read.
        var buffer = new byte[100];
        Assert.Equal(100, await Store.ReadSnapshotChunkAsync(key, 1, 0, buffer));
        Assert.Equal(Bytes(100, 5), buffer);
    }

    [Fact]
    public async Task Decode_requests_are_recorded_once()
    {
        var key = await CreateAsync("requests");
        Assert.Equal(10, (await Store.GetOrAddDecodeRequestAsync(key, "req-1", 10, "f")).Start);
        Assert.Equal(10, (await Store.GetOrAddDecodeRequestAsync(key, "req-1", 20, "f")).Start);
        Assert.Equal(long.MaxValue - 1, (await Store.GetOrAddDecodeRequestAsync(key, "req-2", long.MaxValue - 1, "f")).Start);
        Assert.Equal(10, (await Store.GetOrAddDecodeRequestAsync(key, "req-1", 30, "f")).Start);
    }

    [Fact]
    public async Task Appends_record_their_request_with_their_tokens_and_a_decode_request_ends_where_another_writer_follows()
    {
        var key = await CreateAsync("writers");
        long epoch = await Store.TakeEpochAsync(key);
        Assert.Null(await Store.GetAppendRequestAsync(key, "a1"));
        await Store.AppendTokensAsync(key, 0, new[] { 1, 2 }, TokenLogWriter.Append("a1", new byte[] { 9, 8 }), epoch);
        Assert.Equal(new byte[] { 9, 8 }, (await Store.GetAppendRequestAsync(key, "a1"))!.Value.ToArray());

        // A refused append records nothing.
        await Assert.ThrowsAsync<TokenLogConflictException>(() => Store.AppendTokensAsync(key, 0, new[] { 3 }, TokenLogWriter.Append("a2", new byte[] { 1 }), epoch).AsTask());
        Assert.Null(await Store.GetAppendRequestAsync(key, "a2"));

        // A decode request is open while it is the log's writer, and ends where anyone else writes after it.
        Assert.Equal(new DecodeRequestRecord(2, "abc", null), await Store.GetOrAddDecodeRequestAsync(key, "d1", 2, "abc", epoch));
        await Store.AppendTokensAsync(key, 2, new[] { 3 }, TokenLogWriter.Decode("d1"), epoch);
        await Store.AppendTokensAsync(key, 3, new[] { 4 }, TokenLogWriter.Decode("d1"), epoch);
        Assert.Equal(new DecodeRequestRecord(2, "abc", null), await Store.GetOrAddDecodeRequestAsync(key, "d1", 9, "fff", epoch));
        await Store.AppendTokensAsync(key, 4, new[] { 5 }, epoch);
        Assert.Equal(new DecodeRequestRecord(2, "abc", 4), await Store.GetOrAddDecodeRequestAsync(key, "d1", 9, "abc", epoch));

        // A new request takes the writer role as it starts: the one before it ends there, before either writes.
        Assert.Equal(new DecodeRequestRecord(5, "d2", null), await Store.GetOrAddDecodeRequestAsync(key, "d2", 5, "d2", epoch));
        await Store.GetOrAddDecodeRequestAsync(key, "d3", 5, "d3", epoch);
        Assert.Equal(new DecodeRequestRecord(5, "d2", 5), await Store.GetOrAddDecodeRequestAsync(key, "d2", 5, "d2", epoch));
        Assert.Equal(new DecodeRequestRecord(5, "d3", null), await Store.GetOrAddDecodeRequestAsync(key, "d3", 5, "d3", epoch));

        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.GetOrAddDecodeRequestAsync(key, "a:x", 5, "d3", epoch).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.GetOrAddDecodeRequestAsync(key, "d4", 5, "not hex", epoch).AsTask());
    }

    [Fact]
    public async Task Delete_removes_everything_stored_for_the_session_but_its_epoch()
    {
        var key = await CreateAsync("doomed");
        long epoch = await Store.TakeEpochAsync(key);
        await Store.AppendTokensAsync(key, 0, new[] { 1, 2, 3 });
        await Store.WriteSnapshotChunkAsync(key, 1, 0, Bytes(100, 1));
        await Store.CommitSnapshotAsync(key, 1, new byte[] { 1 });
        await Store.WriteSnapshotChunkAsync(key, 2, 0, Bytes(100, 2)); // never committed
        await Store.GetOrAddDecodeRequestAsync(key, "r", 3, "f");
        await Store.SetResidentAsync(key, "silo-1", epoch);

        Assert.True(await Store.DeleteAsync(key));
        await AssertNothingStoredAsync(key);
        Assert.Empty((await Store.ListAsync(key.Tenant, null, 10)).Sessions);
        Assert.Null(await Store.GetStateAsync(key));

        // A new session under the same key starts empty, and its epochs go on from the old ones.
        Assert.True(await Store.TryCreateAsync(Record(key)));
        Assert.Equal(new SessionState(Record(key), 0, null), await Store.GetStateAsync(key));
        Assert.Equal(epoch + 1, await Store.TakeEpochAsync(key));
        Assert.Equal(0, await Store.GetTokenCountAsync(key));
        Assert.Null(await Store.GetSnapshotAsync(key));
        await Assert.ThrowsAsync<SnapshotChunkNotFoundException>(() => Store.ReadSnapshotChunkAsync(key, 1, 0, new byte[100]).AsTask());
        await Assert.ThrowsAsync<SnapshotChunkNotFoundException>(() => Store.ReadSnapshotChunkAsync(key, 2, 0, new byte[100]).AsTask());
        Assert.Equal(7, (await Store.GetOrAddDecodeRequestAsync(key, "r", 7, "f")).Start);
    }

    [Fact]
    public async Task Operations_on_a_missing_session_throw_SessionNotFound()
    {
        var key = Key("missing");
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.GetTokenCountAsync(key).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.AppendTokensAsync(key, 0, new[] { 1 }).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.ReadTokensAsync(key, 0, new int[4]).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.WriteSnapshotChunkAsync(key, 1, 0, new byte[4]).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.CommitSnapshotAsync(key, 1, new byte[4]).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.GetSnapshotAsync(key).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.ReadSnapshotChunkAsync(key, 1, 0, new byte[4]).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.GetOrAddDecodeRequestAsync(key, "r", 0, "f").AsTask());
        Assert.Null(await Store.GetStateAsync(key));
        await AssertNothingStoredAsync(key);

        // With an epoch taken (an activation does before it creates the session), fenced writes still find no session.
        long epoch = await Store.TakeEpochAsync(key);
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.AppendTokensAsync(key, 0, new[] { 1 }, epoch).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.WriteSnapshotChunkAsync(key, 1, 0, new byte[4], epoch).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.CommitSnapshotAsync(key, 1, new byte[4], epoch).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.GetOrAddDecodeRequestAsync(key, "r", 0, "f", epoch).AsTask());
        await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.SetResidentAsync(key, "silo-1", epoch).AsTask());
        Assert.Null(await Store.GetAsync(key));
        await AssertNothingStoredAsync(key);
    }

    [Theory]
    [InlineData("a:b")]
    [InlineData("a{b")]
    [InlineData("a}b")]
    [InlineData("a/b")]
    [InlineData("a b")]
    [InlineData("a*")]
    [InlineData("")]
    [InlineData("é")]
    public async Task Session_ids_that_could_forge_keys_are_refused(string bad)
    {
        // Tenants may be any name (see Any_tenant_name_is_held_apart_from_every_other); session ids may not.
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.TryCreateAsync(Record(Key(bad))).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.GetTokenCountAsync(Key(bad)).AsTask());
        if (bad.Length > 0)
        {
            // Page tokens are session ids (an empty one is none).
            await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.ListAsync(_tenant, bad, 10).AsTask());
        }
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.TakeEpochAsync(Key(bad)).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.GetStateAsync(Key(bad)).AsTask());
    }

    [Theory]
    [InlineData("a{b")]
    [InlineData("a/b")]
    [InlineData("a b")]
    [InlineData("a*")]
    [InlineData("")]
    [InlineData("é")]
    public async Task Resident_silos_are_orleans_addresses_and_nothing_else(string bad)
    {
        var key = await CreateAsync("resident");
        long epoch = await Store.TakeEpochAsync(key);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.SetResidentAsync(key, bad, epoch).AsTask());
        Assert.Null((await Store.GetStateAsync(key))!.ResidentSilo);

        await Store.SetResidentAsync(key, "[::1]:11111@154321", epoch);
        Assert.Equal("[::1]:11111@154321", (await Store.GetStateAsync(key))!.ResidentSilo);
    }

    [Fact]
    public async Task Resident_silos_are_at_most_128_characters()
    {
        var key = await CreateAsync("long-silo");
        long epoch = await Store.TakeEpochAsync(key);
        string longest = new('s', 128);
        await Store.SetResidentAsync(key, longest, epoch);
        Assert.Equal(longest, (await Store.GetStateAsync(key))!.ResidentSilo);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.SetResidentAsync(key, longest + "s", epoch).AsTask());
        Assert.Equal(longest, (await Store.GetStateAsync(key))!.ResidentSilo);
    }

    [Fact]
    public async Task Session_state_has_the_token_count_and_resident_silo_in_get_and_list()
    {
        var key = await CreateAsync("state");
        var idle = await CreateAsync("state-idle");
        long epoch = await Store.TakeEpochAsync(key);
        await Store.AppendTokensAsync(key, 0, new[] { 1, 2, 3 }, epoch);
        await Store.SetResidentAsync(key, "10.0.0.7:11111@154321", epoch);

        var state = new SessionState(Record(key), 3, "10.0.0.7:11111@154321");
        Assert.Equal(state, await Store.GetStateAsync(key));
        Assert.Equal([state, new SessionState(Record(idle), 0, null)], (await Store.ListAsync(key.Tenant, null, 10)).Sessions);

        // Cleared when the silo lets the cache go; the record and tokens stay.
        await Store.SetResidentAsync(key, null, epoch);
        Assert.Equal(state with { ResidentSilo = null }, await Store.GetStateAsync(key));
        Assert.Equal(Record(key), await Store.GetAsync(key));
    }

    [Fact]
    public async Task Epochs_count_up_from_one_whether_or_not_the_session_exists()
    {
        var key = Key("epochs");
        Assert.Equal(1, await Store.TakeEpochAsync(key));
        Assert.Equal(2, await Store.TakeEpochAsync(key));
        Assert.Null(await Store.GetAsync(key));

        // Taken before the create, as an activation does: its writes go through once the session exists.
        Assert.True(await Store.TryCreateAsync(Record(key)));
        await Store.AppendTokensAsync(key, 0, new[] { 5 }, 2);
        Assert.Equal(3, await Store.TakeEpochAsync(key));

        // Each session key has its own counter.
        Assert.Equal(1, await Store.TakeEpochAsync(Key("epochs-other")));
        Assert.Equal(1, await Store.TakeEpochAsync(Key("epochs", _tenant + "other")));
    }

    [Fact]
    public async Task Epochs_survive_delete_and_re_create_so_none_is_handed_out_twice()
    {
        var key = await CreateAsync("reborn");
        long first = await Store.TakeEpochAsync(key);
        long second = await Store.TakeEpochAsync(key);
        Assert.True(await Store.DeleteAsync(key));
        Assert.True(await Store.TryCreateAsync(Record(key)));
        long third = await Store.TakeEpochAsync(key);
        Assert.Equal([1, 2, 3], [first, second, third]);

        // A zombie of the first life cannot write into the second.
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.AppendTokensAsync(key, 0, new[] { 1 }, second).AsTask());
        await Store.AppendTokensAsync(key, 0, new[] { 1 }, third);
        Assert.Equal(1, await Store.GetTokenCountAsync(key));
    }

    [Fact]
    public async Task Concurrent_TakeEpoch_calls_all_get_distinct_epochs()
    {
        var key = Key("contended");
        var taken = await Task.WhenAll(Enumerable.Range(0, 64).Select(async _ =>
        {
            await Task.Yield();
            return await Store.TakeEpochAsync(key);
        }));
        Assert.Equal(Enumerable.Range(1, 64).Select(i => (long)i), taken.Order());
    }

    [Fact]
    public async Task Fenced_writes_succeed_with_the_current_epoch()
    {
        var key = await CreateAsync("fenced");
        long epoch = await Store.TakeEpochAsync(key);

        await Store.AppendTokensAsync(key, 0, new[] { 1, 2 }, epoch);
        await Store.WriteSnapshotChunkAsync(key, 3, 0, Bytes(10, 1), epoch);
        await Store.CommitSnapshotAsync(key, 3, new byte[] { 9 }, epoch);
        Assert.Equal(2, (await Store.GetOrAddDecodeRequestAsync(key, "r", 2, "f", epoch)).Start);
        await Store.SetResidentAsync(key, "silo-1", epoch);

        Assert.Equal(new SessionState(Record(key), 2, "silo-1"), await Store.GetStateAsync(key));
        Assert.Equal(3, (await Store.GetSnapshotAsync(key))!.SnapshotId);
        var chunk = new byte[10];
        Assert.Equal(10, await Store.ReadSnapshotChunkAsync(key, 3, 0, chunk));
        Assert.Equal(Bytes(10, 1), chunk);
    }

    [Fact]
    public async Task Fenced_writes_with_a_stale_epoch_are_refused_and_change_nothing()
    {
        var key = await CreateAsync("stale");
        long old = await Store.TakeEpochAsync(key);
        await Store.AppendTokensAsync(key, 0, new[] { 1, 2 }, old);
        await Store.WriteSnapshotChunkAsync(key, 3, 0, Bytes(10, 1), old);
        await Store.CommitSnapshotAsync(key, 3, new byte[] { 9 }, old);
        await Store.SetResidentAsync(key, "old-silo", old);
        long current = await Store.TakeEpochAsync(key);
        Assert.Equal(old + 1, current);

        var e = await Assert.ThrowsAsync<StaleEpochException>(() => Store.AppendTokensAsync(key, 2, new[] { 7 }, old).AsTask());
        Assert.Equal(old, e.Epoch);
        Assert.Equal(key, e.Key);
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.WriteSnapshotChunkAsync(key, 4, 0, Bytes(10, 2), old).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.CommitSnapshotAsync(key, 4, new byte[] { 8 }, old).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.CommitSnapshotAsync(key, 3, new byte[] { 8 }, old).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.GetOrAddDecodeRequestAsync(key, "r", 2, "f", old).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.SetResidentAsync(key, "zombie-silo", old).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.SetResidentAsync(key, null, old).AsTask());

        // A future epoch is no better than a past one.
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.AppendTokensAsync(key, 2, new[] { 7 }, current + 1).AsTask());

        Assert.Equal(new SessionState(Record(key), 2, "old-silo"), await Store.GetStateAsync(key));
        var snapshot = await Store.GetSnapshotAsync(key);
        Assert.Equal(3, snapshot!.SnapshotId);
        Assert.Equal([9], snapshot.Header.ToArray());
        await Assert.ThrowsAsync<SnapshotChunkNotFoundException>(() => Store.ReadSnapshotChunkAsync(key, 4, 0, new byte[10]).AsTask());
        Assert.Equal(5, (await Store.GetOrAddDecodeRequestAsync(key, "r", 5, "f", current)).Start); // "r" was not recorded

        // The current epoch writes on.
        await Store.AppendTokensAsync(key, 2, new[] { 3 }, current);
        await Store.SetResidentAsync(key, "new-silo", current);
        Assert.Equal(new SessionState(Record(key), 3, "new-silo"), await Store.GetStateAsync(key));
    }

    [Fact]
    public async Task Fenced_writes_with_an_epoch_never_taken_are_refused()
    {
        var key = await CreateAsync("unowned");
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.AppendTokensAsync(key, 0, new[] { 1 }, 1).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.WriteSnapshotChunkAsync(key, 1, 0, new byte[4], 1).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.CommitSnapshotAsync(key, 1, new byte[4], 1).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.GetOrAddDecodeRequestAsync(key, "r", 0, "f", 1).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.SetResidentAsync(key, "silo-1", 1).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.AppendTokensAsync(key, 0, new[] { 1 }, 0).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.SetResidentAsync(key, "silo-1", 0).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.SetResidentAsync(key, "silo-1", -1).AsTask());

        Assert.Equal(new SessionState(Record(key), 0, null), await Store.GetStateAsync(key));
        Assert.Null(await Store.GetSnapshotAsync(key));
        await Assert.ThrowsAsync<SnapshotChunkNotFoundException>(() => Store.ReadSnapshotChunkAsync(key, 1, 0, new byte[4]).AsTask());
        Assert.Equal(7, (await Store.GetOrAddDecodeRequestAsync(key, "r", 7, "f")).Start);
    }

    [Fact]
    public async Task A_fenced_view_fences_the_plain_writes_of_its_session_only()
    {
        var key = await CreateAsync("view");
        var other = await CreateAsync("other");
        long epoch = await Store.TakeEpochAsync(key);
        var view = new FencedSessionStore(Store, key, epoch);

        await view.AppendTokensAsync(key, 0, new[] { 1 });
        await view.SetResidentAsync(key, "silo-1", epoch);
        Assert.Equal(new SessionState(Record(key), 1, "silo-1"), await view.GetStateAsync(key));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await view.AppendTokensAsync(other, 0, new[] { 1 }));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await view.WriteSnapshotChunkAsync(other, 1, 0, new byte[1]));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await view.SetResidentAsync(other, "silo-1", epoch));
        Assert.Equal(new SessionState(Record(other), 0, null), await Store.GetStateAsync(other));

        // Another session's epochs do not touch this view's.
        await Store.TakeEpochAsync(other);
        await view.AppendTokensAsync(key, 1, new[] { 2 });

        await Store.TakeEpochAsync(key);
        await Assert.ThrowsAsync<StaleEpochException>(() => view.AppendTokensAsync(key, 2, new[] { 3 }).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => view.WriteSnapshotChunkAsync(key, 1, 0, new byte[1]).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => view.CommitSnapshotAsync(key, 1, new byte[] { 1 }).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => view.GetOrAddDecodeRequestAsync(key, "r", 2, "f").AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => view.SetResidentAsync(key, null, epoch).AsTask());
        Assert.Equal(new SessionState(Record(key), 2, "silo-1"), await Store.GetStateAsync(key));
    }

    [Fact]
    public async Task A_fork_holds_the_log_prefix_and_the_covering_snapshot_and_nothing_else_of_the_source()
    {
        var source = await CreateAsync("source");
        await Store.AppendTokensAsync(source, 0, new[] { 1, 2, 3, 4, 5, 6 }, TokenLogWriter.Append("req", new byte[] { 7 }), await Store.TakeEpochAsync(source));
        await Store.WriteSnapshotChunkAsync(source, 7, 0, Bytes(100, 1));
        await Store.WriteSnapshotChunkAsync(source, 7, 1, Bytes(30, 2));
        await Store.CommitSnapshotAsync(source, 7, new byte[] { 9, 8 });
        await Store.WriteSnapshotChunkAsync(source, 8, 0, Bytes(10, 3)); // a later snapshot, not committed
        await Store.GetOrAddDecodeRequestAsync(source, "decode", 6, "f");
        var created = new DateTimeOffset(2026, 12, 2, 18, 0, 0, TimeSpan.Zero);

        var made = await Store.TryForkAsync(source, 4, 7, Key("fork"), created);

        var fork = Key("fork");
        var record = new SessionRecord(fork, "llama-tiny", "full", created);
        Assert.Equal(new SessionFork(record, SnapshotCopied: true), made);
        Assert.Equal(new SessionState(record, 4, null), await Store.GetStateAsync(fork));
        var tokens = new int[10];
        Assert.Equal(4, await Store.ReadTokensAsync(fork, 0, tokens));
        Assert.Equal([1, 2, 3, 4], tokens[..4]);
        var snapshot = await Store.GetSnapshotAsync(fork);
        Assert.Equal(7, snapshot!.SnapshotId);
        Assert.Equal([9, 8], snapshot.Header.ToArray());
        var chunk = new byte[100];
        Assert.Equal(100, await Store.ReadSnapshotChunkAsync(fork, 7, 0, chunk));
        Assert.Equal(Bytes(100, 1), chunk);
        Assert.Equal(30, await Store.ReadSnapshotChunkAsync(fork, 7, 1, chunk));
        Assert.Equal(Bytes(30, 2), chunk[..30]);
        await Assert.ThrowsAsync<SnapshotChunkNotFoundException>(() => Store.ReadSnapshotChunkAsync(fork, 8, 0, chunk).AsTask());
        Assert.Null(await Store.GetAppendRequestAsync(fork, "req"));
        Assert.Equal(3, (await Store.GetOrAddDecodeRequestAsync(fork, "decode", 3, "e")).Start); // not copied: new here
        Assert.Equal(["fork", "source"], (await Store.ListAsync(_tenant, null, 10)).Sessions.Select(s => s.Record.Key.SessionId));

        // The two go their own ways: neither's writes or deletion touch the other.
        await Store.AppendTokensAsync(fork, 4, new[] { 40 });
        await Store.AppendTokensAsync(source, 6, new[] { 60 });
        Assert.Equal(5, await Store.GetTokenCountAsync(fork));
        Assert.Equal(7, await Store.GetTokenCountAsync(source));
        Assert.True(await Store.DeleteAsync(source));
        Assert.Equal(100, await Store.ReadSnapshotChunkAsync(fork, 7, 0, chunk));
        Assert.Equal(Bytes(100, 1), chunk);
        Assert.True(await Store.DeleteAsync(fork));
        await AssertNothingStoredAsync(fork);
    }

    [Fact]
    public async Task A_fork_copies_only_the_log_when_the_snapshot_named_is_not_the_sources_committed_one()
    {
        var source = await CreateAsync("source");
        await Store.AppendTokensAsync(source, 0, new[] { 1, 2, 3 });
        await Store.WriteSnapshotChunkAsync(source, 7, 0, Bytes(10, 1));
        await Store.CommitSnapshotAsync(source, 7, new byte[] { 9 });

        foreach (var (id, snapshot) in new (string, long?)[] { ("other-id", 8), ("none", null) })
        {
            var made = await Store.TryForkAsync(source, 2, snapshot, Key(id), DateTimeOffset.UnixEpoch);
            Assert.False(made!.SnapshotCopied);
            Assert.Equal(2, await Store.GetTokenCountAsync(Key(id)));
            Assert.Null(await Store.GetSnapshotAsync(Key(id)));
            await Assert.ThrowsAsync<SnapshotChunkNotFoundException>(() => Store.ReadSnapshotChunkAsync(Key(id), 7, 0, new byte[10]).AsTask());
        }

        var empty = await Store.TryForkAsync(source, 0, 7, Key("empty"), DateTimeOffset.UnixEpoch);
        Assert.True(empty!.SnapshotCopied);
        Assert.Equal(0, await Store.GetTokenCountAsync(Key("empty")));
    }

    [Fact]
    public async Task A_fork_is_refused_whole_onto_an_existing_session_a_missing_source_a_short_log_another_tenant_or_a_stale_epoch()
    {
        var source = await CreateAsync("source");
        await Store.AppendTokensAsync(source, 0, new[] { 1, 2, 3 });
        var taken = await CreateAsync("taken");
        await Store.AppendTokensAsync(taken, 0, new[] { 9 });

        Assert.Null(await Store.TryForkAsync(source, 2, null, taken, DateTimeOffset.UnixEpoch));
        Assert.Equal(new SessionState(Record(taken), 1, null), await Store.GetStateAsync(taken));
        var missing = await Assert.ThrowsAsync<SessionNotFoundException>(() => Store.TryForkAsync(Key("missing"), 0, null, Key("f1"), DateTimeOffset.UnixEpoch).AsTask());
        Assert.Equal(Key("missing"), missing.Key);
        var shortLog = await Assert.ThrowsAsync<TokenLogConflictException>(() => Store.TryForkAsync(source, 4, null, Key("f2"), DateTimeOffset.UnixEpoch).AsTask());
        Assert.Equal((4, 3), (shortLog.Expected, shortLog.Actual));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.TryForkAsync(source, 1, null, Key("f3", _tenant + "other"), DateTimeOffset.UnixEpoch).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.TryForkAsync(source, 1, null, source, DateTimeOffset.UnixEpoch).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Store.TryForkAsync(source, -1, null, Key("f4"), DateTimeOffset.UnixEpoch).AsTask());

        // Fenced by the fork's epoch: a stale activation of the new session makes nothing; the current one does.
        var fenced = Key("fenced");
        long old = await Store.TakeEpochAsync(fenced);
        long current = await Store.TakeEpochAsync(fenced);
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.TryForkAsync(source, 3, null, fenced, DateTimeOffset.UnixEpoch, old).AsTask());
        foreach (var refused in (string[])["f1", "f2", "f3", "f4", "fenced"])
        {
            Assert.Null(await Store.GetAsync(Key(refused)));
        }

        Assert.Equal(2, (await Store.ListAsync(_tenant, null, 10)).Sessions.Count);
        Assert.NotNull(await Store.TryForkAsync(source, 3, null, fenced, DateTimeOffset.UnixEpoch, current));
        Assert.Equal(3, await Store.GetTokenCountAsync(fenced));
    }

    protected static byte[] Bytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
