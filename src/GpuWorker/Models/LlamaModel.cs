using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;
using KvCache.GpuWorker.Sampling;

namespace KvCache.GpuWorker;

/// <summary>
/// A Llama-style decoder (LlamaForCausalLM semantics: RMSNorm, rotate-half RoPE, SwiGLU, grouped-query
/// attention, optional tied embeddings) with its weights in one native arena (linear weights f32 or bf16, see
/// <see cref="WeightFormat"/>) and a preallocated KV block pool, both on huge pages where the OS allows.
/// </summary>
/// <remarks>
/// <para>Batch invariance: every output element (matmul, norm, attention per query row and head) is one
/// reduction whose order depends only on that row's length, never on how many rows a call carries or which
/// thread runs it, so any chunking of the same tokens gives bit-identical caches and logits.</para>
/// <para>Codecs: a plain checkpoint offers "full" (<see cref="FullKvCache"/>); a checkpoint converted by
/// <see cref="SvdGqaConverter"/> (config.json <c>kv_compression</c>) offers "svd-gqa" (<see cref="SvdGqaKvCache"/>),
/// whose attention runs on compressed keys and folded values. Both use a <see cref="PagedKvCache"/>. A plain
/// checkpoint also offers "fourier" (<see cref="FourierKvCache"/>, parameters from fourier.json or defaults), whose
/// caches take blocks of the same pool, so CacheBytesTotal and CacheBytesFree count every codec's sessions. YOCO and FusedKV checkpoints
/// (<see cref="YocoConfig"/>, <see cref="FusedKvConfig"/>) run their own architecture and offer only their codec
/// ("yoco", "fusedkv" or "fusedkv-lite"; see LlamaModel.Variants.cs).</para>
/// <para>Batching: <see cref="ForwardBatch"/> runs several caches' tokens as the rows of one pass (a pass is
/// the same code whether its rows are one cache's chunk or many sessions' decode steps); the service drives it
/// through a <see cref="Batching.BatchScheduler"/>.</para>
/// <para>Concurrency: Forward may be called concurrently for different caches. Each call rents activation
/// buffers from a small pool (one is preallocated at load; a second concurrent caller adds another, once), and
/// the backend serializes its parallel ops, each of which uses all compute threads.</para>
/// </remarks>
public sealed unsafe partial class LlamaModel : ILanguageModel
{
    /// <summary>Tokens processed per pass; longer inputs run in chunks of this size.</summary>
    public const int ChunkTokens = 64;

    private readonly byte* _weights;
    private readonly float* _cos;
    private readonly float* _sin;
    private readonly float* _embedding;
    private readonly float* _finalNorm;
    private readonly LinearWeight _lmHead;
    private readonly LayerWeights[] _layers;
    private readonly IComputeBackend _backend;
    private readonly KvBlockPool _pool;
    private readonly int _blockTokens;
    private readonly string _codec;
    private readonly KvLayout _layout;
    private readonly Stack<ForwardScratch> _scratch = new();
    private readonly List<ForwardScratch> _allScratch = [];
    private readonly float _eps;

    // Scores scale by the original head dim: q̃ · c equals q · k, whatever the rank.
    private readonly float _attentionScale;
    private bool _disposed;

    private LlamaModel(string id, ModelConfig config, byte* weights, long weightBytes, LoadedTensors tensors, string fingerprint, ModelLoadOptions options, FourierConfig? fourier)
    {
        Id = id;
        WeightBytes = weightBytes;
        Config = config;
        Fingerprint = fingerprint;
        ParameterCount = config.ParameterCount;
        _weights = weights;
        _eps = (float)config.RmsNormEps;
        _attentionScale = 1f / MathF.Sqrt(config.HeadDim);
        _embedding = tensors.F32(LlamaTensors.Embedding);
        _finalNorm = tensors.F32(LlamaTensors.FinalNorm);
        _lmHead = config.TieWordEmbeddings ? LinearWeight.F32(_embedding) : tensors.Linear(LlamaTensors.LmHead);
        _variant = VariantWeights.Load(config, tensors);
        _layers = new LayerWeights[config.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            _layers[i] = new LayerWeights
            {
                InputNorm = tensors.F32(p + "input_layernorm.weight"),
                Q = tensors.Linear(p + "self_attn.q_proj.weight"),
                // Absent in the layers of YOCO's cross-decoder and FusedKV's upper half, which have no K/V projections.
                K = tensors.LinearOrDefault(p + "self_attn.k_proj.weight"),
                V = tensors.LinearOrDefault(p + "self_attn.v_proj.weight"),
                O = tensors.Linear(p + "self_attn.o_proj.weight"),
                PostNorm = tensors.F32(p + "post_attention_layernorm.weight"),
                Gate = tensors.Linear(p + "mlp.gate_proj.weight"),
                Up = tensors.Linear(p + "mlp.up_proj.weight"),
                Down = tensors.Linear(p + "mlp.down_proj.weight"),
                KeyBasis = config.SvdGqa is null ? null : tensors.F32(p + LlamaTensors.KeyBasis),
                // Only in a gated-retention self-decoder layer.
                RetentionGate = tensors.LinearOrDefault(p + VariantTensors.RetentionGate),
                RetentionDecay = tensors.LinearOrDefault(p + VariantTensors.RetentionDecay),
            };
        }

        var (cos, sin) = RopeTables(config);
        _cos = (float*)cos;
        _sin = (float*)sin;
        _backend = new CpuBackend(options.ComputeThreads, config.MaxPositionEmbeddings);
        _blockTokens = options.BlockTokens;
        (_codec, var layout) = VariantCodec(config) ?? (config.SvdGqa is null
            ? (FullKvCache.CodecId, KvLayout.Full(config))
            : (SvdGqaKvCache.CodecId, KvLayout.SvdGqa(config)));
        _layout = layout.In(options.CacheFormat);
        CacheFormat = options.CacheFormat;
        Codecs = fourier is null ? [_codec] : [_codec, FourierKvCache.CodecId];
        _pool = new KvBlockPool(options.BlockTokens * _layout.BytesPerToken, options.CacheBudgetBytes);
        _fourier = fourier is null ? null : new FourierParts(config, fourier, options, _pool);
        var first = new ForwardScratch(config, ChunkTokens);
        _allScratch.Add(first);
        _scratch.Push(first);
    }

    public string Id { get; }

    public ModelConfig Config { get; }

    public string Fingerprint { get; }

    /// <summary>Precision the paged caches keep their keys and values in.</summary>
    public KvCacheFormat CacheFormat { get; }

    public long ParameterCount { get; }

    public IReadOnlyList<string> Codecs { get; }

    public long CacheBytesTotal => _pool.BlockCount * _pool.BlockBytes;

    public long CacheBytesFree => _pool.FreeBlocks * _pool.BlockBytes;

    /// <summary>Bytes the weights take in memory (linear weights at their <see cref="WeightFormat"/>).</summary>
    public long WeightBytes { get; }

    /// <summary>Bytes of the embedding table, of which a pass reads only its tokens' rows (unless it is the tied LM head).</summary>
    public long EmbeddingBytes => (long)Config.VocabSize * Config.HiddenSize * sizeof(float);

    /// <summary>Name of the compute backend ("cpu").</summary>
    public string Backend => _backend.Name;

    public static LlamaModel Load(string directory) => Load(directory, new ModelLoadOptions());

    /// <summary>Loads <c>config.json</c> and <c>model.safetensors</c> from <paramref name="directory"/>.</summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A tensor is missing or has the wrong shape, or the file is malformed.</exception>
    public static LlamaModel Load(string directory, ModelLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BlockTokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ComputeThreads, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(options.CacheBudgetBytes);
        string configPath = Path.Combine(directory, "config.json");
        string weightsPath = Path.Combine(directory, "model.safetensors");
        if (!File.Exists(configPath))
        {
            throw new FileNotFoundException($"No config.json in {directory}.", configPath);
        }

        if (!File.Exists(weightsPath))
        {
            throw new FileNotFoundException($"No model.safetensors in {directory}.", weightsPath);
        }

        var config = ModelConfig.Load(configPath);
        var fourier = FourierFor(directory, config, options);
        var expected = LlamaTensors.List(config);
        var bf16 = expected.Where(t => options.WeightFormat == WeightFormat.Bf16 && LoadedTensors.MayBeBf16(t)).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        long Bytes(LlamaTensor t) => ((t.ElementCount * (bf16.Contains(t.Name) ? sizeof(ushort) : sizeof(float))) + 63) & ~63L;
        long weightBytes = expected.Sum(Bytes);
        byte* weights = (byte*)LargePages.Allocate((nuint)weightBytes);

        // bf16 tensors are read as f32 into one staging buffer, then rounded into the arena.
        long staging = expected.Where(t => bf16.Contains(t.Name)).Select(t => t.ElementCount).DefaultIfEmpty(0).Max();
        float* buffer = staging == 0 ? null : (float*)NativeMemory.AlignedAlloc((nuint)(staging * sizeof(float)), 64);
        try
        {
            var pointers = new Dictionary<string, nint>(StringComparer.Ordinal);
            var hash = new Hash64(0x6B76636163686531UL);
            hash.Append(System.Text.Encoding.UTF8.GetBytes(config.ToJson()));
            if (fourier is not null && File.Exists(Path.Combine(directory, FourierConfig.FileName)))
            {
                // Fourier state is only meaningful under the dims and basis it was built with.
                hash.Append(System.Text.Encoding.UTF8.GetBytes(fourier.ToJson()));
            }

            using (var reader = SafetensorsReader.Open(weightsPath))
            {
                byte* next = weights;
                foreach (var t in expected)
                {
                    if (!reader.Tensors.TryGetValue(t.Name, out var info))
                    {
                        throw new InvalidDataException($"{weightsPath}: tensor '{t.Name}' is missing.");
                    }

                    if (!info.Shape.AsSpan().SequenceEqual(t.Shape))
                    {
                        throw new InvalidDataException(
                            $"{weightsPath}: tensor '{t.Name}' has shape [{string.Join(", ", info.Shape)}], the config needs [{string.Join(", ", t.Shape)}].");
                    }

                    int count = checked((int)t.ElementCount);
                    bool half = bf16.Contains(t.Name);
                    var span = new Span<float>(half ? buffer : (float*)next, count);
                    reader.ReadAsSingle(t.Name, span);
                    if (half)
                    {
                        var rounded = new Span<ushort>(next, count);
                        Bf16.Convert(span, rounded);

                        // The fingerprint hashes the values computed with: a bf16 checkpoint keeps its fingerprint.
                        for (int i = 0; i < count; i++)
                        {
                            span[i] = Bf16.ToSingle(rounded[i]);
                        }
                    }

                    hash.Append(MemoryMarshal.AsBytes(span));
                    pointers[t.Name] = (nint)next;
                    next += Bytes(t);
                }
            }

            if (options.CacheFormat != KvCacheFormat.F32)
            {
                // Cached keys and values are rounded: snapshots and logits belong to this cache format only.
                hash.Append(System.Text.Encoding.UTF8.GetBytes($"kv-cache:{options.CacheFormat}"));
            }

            string id = options.Id ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)));
            return new LlamaModel(id, config, weights, weightBytes, new LoadedTensors(pointers, bf16), hash.Finish().ToString("x16"), options, fourier);
        }
        catch
        {
            NativeMemory.AlignedFree(weights);
            throw;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    public long CacheBytesAt(string codec, int position) => codec == FourierKvCache.CodecId && _fourier is not null
        ? _fourier.Layout.BytesAt(position)
        : codec == _codec
        ? Config.Yoco is null ? position * _layout.BytesPerToken : YocoKvCache.BytesAt(Config, position, CacheFormat)
        : throw new ArgumentException($"Unknown codec '{codec}'; this model has: {string.Join(", ", Codecs)}.", nameof(codec));

    /// <summary>
    /// Bytes of cache one decode step at <paramref name="position"/> reads: the bytes held, except where layers share
    /// a cache — each of YOCO's cross-decoder layers reads the global K̂V̂, and each upper FusedKV layer reads the
    /// K and V of lower layers (two layers' worth; one for FusedKV-Lite, which reads the last layer's K and the
    /// first's V).
    /// </summary>
    /// <exception cref="ArgumentException">Unknown codec.</exception>
    public long CacheBytesReadAt(string codec, int position)
    {
        long held = CacheBytesAt(codec, position);
        if (codec != _codec)
        {
            return held;
        }

        int upper = _layers.Length - _layers.Length / 2;
        long layer = _layout.BytesPerToken / _layout.Layers * position;
        return Config switch
        {
            { Yoco: not null } => held + (upper - 1) * layer,
            { FusedKv.Lite: true } => held + upper * layer,
            { FusedKv: not null } => held + 2 * upper * layer,
            _ => held,
        };
    }

    public IKvCache CreateCache(string codec)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return codec == FourierKvCache.CodecId && _fourier is not null
            ? new FourierKvCache(this, _pool, _fourier.Layout, Config.MaxPositionEmbeddings)
            : codec == _codec
            ? Config.Yoco is null
                ? new PagedKvCache(this, _pool, _codec, _layout, Config.MaxPositionEmbeddings, _blockTokens)
                : new YocoKvCache(this, _pool, Config, CacheFormat, _blockTokens)
            : throw new ArgumentException($"Unknown codec '{codec}'; this model has: {string.Join(", ", Codecs)}.", nameof(codec));
    }

    public int MaxBatchTokens => ChunkTokens;

    public void Forward(IKvCache cache, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckLogits(logits.Length);
        var target = Reserve(cache, tokens);
        var s = RentScratch();
        try
        {
            for (int start = 0; start < tokens.Length; start += ChunkTokens)
            {
                var chunk = tokens.Slice(start, Math.Min(ChunkTokens, tokens.Length - start));
                bool last = start + chunk.Length == tokens.Length;
                s.Begin();
                s.Add(target, chunk, logits: last, item: 0);
                Pass(s);
            }

            fixed (float* l = logits)
            {
                Head(s, 1, l);
            }
        }
        finally
        {
            ReturnScratch(s);
        }
    }

    public void ForwardBatch(ReadOnlySpan<ForwardItem> items)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int total = 0;
        for (int i = 0; i < items.Length; i++)
        {
            total += items[i].Tokens.Length;
            for (int j = 0; j < i; j++)
            {
                if (ReferenceEquals(items[j].Cache, items[i].Cache))
                {
                    throw new ArgumentException("A cache appears twice in one batch.", nameof(items));
                }
            }

            if (!items[i].Logits.IsEmpty)
            {
                CheckLogits(items[i].Logits.Length);
            }

            if (items[i].ScoreTargets.Length > items[i].Tokens.Length || items[i].Scores.Length < items[i].ScoreTargets.Length)
            {
                throw new ArgumentException("An item scores at most its own rows, into as many scores.", nameof(items));
            }
        }

        if (items.IsEmpty || total > MaxBatchTokens)
        {
            throw new ArgumentException($"A batch carries 1 to {MaxBatchTokens} tokens, got {total}.", nameof(items));
        }

        var s = RentScratch();
        try
        {
            s.Begin();
            for (int i = 0; i < items.Length; i++)
            {
                var tokens = items[i].Tokens.Span;
                s.Add(Reserve(items[i].Cache, tokens), tokens, logits: !items[i].Logits.IsEmpty, item: i, scored: !items[i].ScoreTargets.IsEmpty);
            }

            int rows = Pass(s);
            if (rows > 0)
            {
                // One LM-head matmul for every row, then each row's logits (or log-probability) to its caller.
                Head(s, rows, s.Logits);
                int vocab = Config.VocabSize;
                for (int i = 0, k = 0; i < s.SegmentCount; i++)
                {
                    ref readonly var seg = ref s.Segments[i];
                    ref readonly var item = ref items[seg.Item];
                    int head = seg.HeadRows;
                    if (seg.Logits)
                    {
                        new ReadOnlySpan<float>(s.Logits + (long)(k + head - 1) * vocab, vocab).CopyTo(item.Logits.Span);
                    }

                    var targets = item.ScoreTargets.Span;
                    var scores = item.Scores.Span;
                    for (int r = 0; r < targets.Length && seg.Scored; r++)
                    {
                        scores[r] = TokenSampler.Logprob(new ReadOnlySpan<float>(s.Logits + (long)(k + r) * vocab, vocab), targets[r]);
                    }

                    k += head;
                }
            }
        }
        finally
        {
            ReturnScratch(s);
        }
    }

    void ILanguageModel.Reserve(IKvCache cache, ReadOnlySpan<int> tokens) => Reserve(cache, tokens);

    /// <summary>
    /// Checks tokens against the cache and takes the cache memory they need, so that a pass cannot fail halfway.
    /// </summary>
    private IForwardCache Reserve(IKvCache cache, ReadOnlySpan<int> tokens)
    {
        if (cache is not IForwardCache target || target.Owner != this)
        {
            throw new ArgumentException("The cache was not created by this model.", nameof(cache));
        }

        CheckInput(target.Position, tokens);
        target.EnsureCapacity(target.Position + tokens.Length);
        return target;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _backend.Dispose();
        _pool.Dispose();
        _fourier?.Dispose();
        foreach (var s in _allScratch)
        {
            s.Dispose();
        }

        NativeMemory.AlignedFree(_weights);
        NativeMemory.AlignedFree(_cos);
        NativeMemory.AlignedFree(_sin);
    }

    /// <summary>
    /// One forward pass over the scratch's rows: every layer's weights are read once for all of them, each row attends
    /// over its own cache. Leaves the rows whose logits are wanted compacted at the top of X, final-normed by
    /// <see cref="Head"/>, and returns how many there are.
    /// </summary>
    private int Pass(ForwardScratch s)
    {
        _backend.Embed(_embedding, s.Tokens.AsSpan(0, s.Rows), Config.HiddenSize, s.X);
        if (Config.Yoco is not null)
        {
            YocoSelfDecoder(s);
        }
        else
        {
            Layers(s);
        }

        int rows = GatherLogitRows(s);
        if (Config.Yoco is not null && rows > 0)
        {
            YocoCrossDecoder(s, rows);
        }

        for (int i = 0; i < s.SegmentCount; i++)
        {
            s.Segments[i].Cache.Advance(s.Segments[i].Count);
        }

        return rows;
    }

    /// <summary>The decoder layers of a plain, SVD-GQA or FusedKV model.</summary>
    private void Layers(ForwardScratch s)
    {
        var c = Config;
        int n = s.Rows, heads = c.NumAttentionHeads, kvWidth = _layout.Heads * _layout.Dim;
        var attend = s.Attend;
        attend.Clear();
        for (int i = 0; i < s.SegmentCount; i++)
        {
            ref readonly var seg = ref s.Segments[i];
            if (seg.Cache is PagedKvCache paged)
            {
                var view = paged.View;
                for (int r = 0; r < seg.Count; r++)
                {
                    attend.Add(seg.Row + r, view, seg.Start + r);
                }
            }
        }

        for (int l = 0; l < _layers.Length; l++)
        {
            ref readonly var w = ref _layers[l];
            if (_variant.Fusion is not null && l >= _layers.Length / 2)
            {
                FusedUpperLayer(w, _variant.Fusion[l - _layers.Length / 2], s);
                continue;
            }

            ProjectQkv(w, s);
            float* q = s.Q, k = s.K;
            if (c.SvdGqa is { } svd)
            {
                // Keys with RoPE cannot fold into W_K: cache c = [R k¹ … R kᵗ] Ψ_K and attend with q̃ = (R q) Ψ_K,j;
                // values are already x W_V' (rank-wide), and W_O' takes the rank-wide attention output.
                _backend.ProjectGroups(s.K, n, _layout.Heads, svd.GroupSize * c.HeadDim, w.KeyBasis, svd.Rank, s.KeyCompressed);
                _backend.ProjectQueries(s.Q, n, heads, c.HeadDim, c.NumKeyValueHeads, svd.GroupSize, w.KeyBasis, svd.Rank, s.QueryTilde);
                q = s.QueryTilde;
                k = s.KeyCompressed;
            }

            for (int i = 0; i < s.SegmentCount; i++)
            {
                ref readonly var seg = ref s.Segments[i];
                if (seg.Cache is PagedKvCache paged)
                {
                    _backend.StoreKv(paged.View, l, k + (long)seg.Row * kvWidth, s.V + (long)seg.Row * kvWidth, seg.Count, seg.Start);
                }
                else
                {
                    FourierAttention((FourierKvCache)seg.Cache, l, seg, s);
                }
            }

            if (attend.Count > 0)
            {
                _backend.Attention(attend, l, q, heads, _attentionScale, s.Attention);
            }

            OutputAndMlp(w, s.X, n, s);
        }
    }

    /// <summary>Rotary embedding of each segment's rows at its own positions.</summary>
    private void RopeSegments(ForwardScratch s, float* x, int heads)
    {
        int hd = Config.HeadDim;
        for (int i = 0; i < s.SegmentCount; i++)
        {
            ref readonly var seg = ref s.Segments[i];
            _backend.Rope(x + (long)seg.Row * heads * hd, seg.Count, heads, hd, seg.Start, _cos, _sin);
        }
    }

    /// <summary>Moves the rows that go through the LM head (the last row of each segment that wants logits, every
    /// row of a scored one) to the top of X, in segment order.</summary>
    private static int GatherLogitRows(ForwardScratch s)
    {
        int h = s.HiddenSize, rows = 0;
        for (int i = 0; i < s.SegmentCount; i++)
        {
            ref readonly var seg = ref s.Segments[i];
            int head = seg.HeadRows;
            int from = seg.Row + seg.Count - head;
            if (head > 0 && from != rows)
            {
                // Rows only move up (from >= rows), so a forward copy of overlapping ranges is safe row by row.
                for (int r = 0; r < head; r++)
                {
                    new ReadOnlySpan<float>(s.X + (long)(from + r) * h, h).CopyTo(new Span<float>(s.X + (long)(rows + r) * h, h));
                }
            }

            rows += head;
        }

        return rows;
    }

    /// <summary>Final norm and LM head of the top <paramref name="rows"/> rows of X into logits [rows, vocab].</summary>
    private void Head(ForwardScratch s, int rows, float* logits)
    {
        int h = Config.HiddenSize;
        _backend.RmsNorm(s.X, _finalNorm, s.Normed, rows, h, _eps);
        _backend.MatMul(s.Normed, rows, h, _lmHead, Config.VocabSize, logits);
    }

    private ForwardScratch RentScratch()
    {
        lock (_scratch)
        {
            if (_scratch.TryPop(out var s))
            {
                return s;
            }

            s = new ForwardScratch(Config, ChunkTokens);
            _allScratch.Add(s);
            return s;
        }
    }

    private void ReturnScratch(ForwardScratch s)
    {
        lock (_scratch)
        {
            _scratch.Push(s);
        }
    }

    /// <summary>cos/sin of position × theta^(-2i/d), computed in double and rounded once.</summary>
    private static (nint Cos, nint Sin) RopeTables(ModelConfig c)
    {
        int half = c.HeadDim / 2;
        long count = (long)c.MaxPositionEmbeddings * half;
        float* cos = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
        float* sin = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
        var inv = new double[half];
        for (int i = 0; i < half; i++)
        {
            inv[i] = 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / c.HeadDim);
        }

        for (long p = 0; p < c.MaxPositionEmbeddings; p++)
        {
            for (int i = 0; i < half; i++)
            {
                double angle = p * inv[i];
                cos[p * half + i] = (float)Math.Cos(angle);
                sin[p * half + i] = (float)Math.Sin(angle);
            }
        }

        return ((nint)cos, (nint)sin);
    }

    private struct LayerWeights
    {
        public float* InputNorm, PostNorm, KeyBasis;
        public LinearWeight Q, K, V, O, Gate, Up, Down, RetentionGate, RetentionDecay;
    }

    /// <summary>Where each loaded tensor lives, and which linear weights were kept in bf16.</summary>
    private sealed class LoadedTensors(Dictionary<string, nint> pointers, HashSet<string> bf16)
    {
        /// <summary>Linear weights the matmul kernels read; the SVD-GQA key basis feeds f32-only projections.</summary>
        public static bool MayBeBf16(LlamaTensor t) =>
            t.Role is TensorRole.Linear or TensorRole.LmHead && !t.Name.EndsWith(LlamaTensors.KeyBasis, StringComparison.Ordinal);

        public float* F32(string name) => bf16.Contains(name)
            ? throw new InvalidOperationException($"Tensor '{name}' is bf16.")
            : (float*)pointers[name];

        public LinearWeight Linear(string name) => new((void*)pointers[name], bf16.Contains(name));

        public LinearWeight LinearOrDefault(string name) => pointers.ContainsKey(name) ? Linear(name) : default;
    }
}
