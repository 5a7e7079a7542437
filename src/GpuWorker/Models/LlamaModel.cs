using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.GpuWorker;

/// <summary>
/// A Llama-style decoder (LlamaForCausalLM semantics: RMSNorm, rotate-half RoPE, SwiGLU, grouped-query
/// attention, optional tied embeddings) with f32 weights in one native arena and a preallocated KV block pool.
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
/// <para>Concurrency: Forward may be called concurrently for different caches. Each call rents activation
/// buffers from a small pool (one is preallocated at load; a second concurrent caller adds another, once), and
/// the backend serializes its parallel ops, each of which uses all compute threads.</para>
/// </remarks>
public sealed unsafe partial class LlamaModel : ILanguageModel
{
    /// <summary>Tokens processed per pass; longer inputs run in chunks of this size.</summary>
    public const int ChunkTokens = 64;

    private readonly float* _weights;
    private readonly float* _cos;
    private readonly float* _sin;
    private readonly float* _embedding;
    private readonly float* _finalNorm;
    private readonly float* _lmHead;
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

    private LlamaModel(string id, ModelConfig config, float* weights, Dictionary<string, nint> tensors, string fingerprint, ModelLoadOptions options, FourierConfig? fourier)
    {
        Id = id;
        Config = config;
        Fingerprint = fingerprint;
        ParameterCount = config.ParameterCount;
        _weights = weights;
        _eps = (float)config.RmsNormEps;
        _attentionScale = 1f / MathF.Sqrt(config.HeadDim);
        _embedding = (float*)tensors[LlamaTensors.Embedding];
        _finalNorm = (float*)tensors[LlamaTensors.FinalNorm];
        _lmHead = config.TieWordEmbeddings ? _embedding : (float*)tensors[LlamaTensors.LmHead];
        _variant = VariantWeights.Load(config, tensors);
        _layers = new LayerWeights[config.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            _layers[i] = new LayerWeights
            {
                InputNorm = (float*)tensors[p + "input_layernorm.weight"],
                Q = (float*)tensors[p + "self_attn.q_proj.weight"],
                // Null in the layers of YOCO's cross-decoder and FusedKV's upper half, which have no K/V projections.
                K = (float*)tensors.GetValueOrDefault(p + "self_attn.k_proj.weight"),
                V = (float*)tensors.GetValueOrDefault(p + "self_attn.v_proj.weight"),
                O = (float*)tensors[p + "self_attn.o_proj.weight"],
                PostNorm = (float*)tensors[p + "post_attention_layernorm.weight"],
                Gate = (float*)tensors[p + "mlp.gate_proj.weight"],
                Up = (float*)tensors[p + "mlp.up_proj.weight"],
                Down = (float*)tensors[p + "mlp.down_proj.weight"],
                KeyBasis = config.SvdGqa is null ? null : (float*)tensors[p + LlamaTensors.KeyBasis],
            };
        }

        var (cos, sin) = RopeTables(config);
        _cos = (float*)cos;
        _sin = (float*)sin;
        _backend = new CpuBackend(options.ComputeThreads, config.MaxPositionEmbeddings);
        _blockTokens = options.BlockTokens;
        (_codec, _layout) = VariantCodec(config) ?? (config.SvdGqa is null
            ? (FullKvCache.CodecId, KvLayout.Full(config))
            : (SvdGqaKvCache.CodecId, KvLayout.SvdGqa(config)));
        Codecs = fourier is null ? [_codec] : [_codec, FourierKvCache.CodecId];
        _pool = new KvBlockPool(options.BlockTokens * _layout.FloatsPerToken, options.CacheBudgetBytes);
        _fourier = fourier is null ? null : new FourierParts(config, fourier, options, _pool);
        var first = new ForwardScratch(config, ChunkTokens);
        _allScratch.Add(first);
        _scratch.Push(first);
    }

    public string Id { get; }

    public ModelConfig Config { get; }

    public string Fingerprint { get; }

    public long ParameterCount { get; }

    public IReadOnlyList<string> Codecs { get; }

    public long CacheBytesTotal => _pool.BlockCount * _pool.BlockBytes;

    public long CacheBytesFree => _pool.FreeBlocks * _pool.BlockBytes;

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
        long total = expected.Sum(t => t.ElementCount);
        float* weights = (float*)NativeMemory.AlignedAlloc((nuint)(total * sizeof(float)), 64);
        try
        {
            var pointers = new Dictionary<string, nint>(StringComparer.Ordinal);
            var hash = new Hash64(0x6B76636163686531UL);
            hash.Append(System.Text.Encoding.UTF8.GetBytes(config.ToJson()));
            if (File.Exists(Path.Combine(directory, FourierConfig.FileName)))
            {
                // Fourier state is only meaningful under the dims and basis it was built with.
                hash.Append(System.Text.Encoding.UTF8.GetBytes(fourier!.ToJson()));
            }

            using (var reader = SafetensorsReader.Open(weightsPath))
            {
                float* next = weights;
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

                    var span = new Span<float>(next, checked((int)t.ElementCount));
                    reader.ReadAsSingle(t.Name, span);
                    hash.Append(MemoryMarshal.AsBytes(span));
                    pointers[t.Name] = (nint)next;
                    next += t.ElementCount;
                }
            }

            string id = options.Id ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)));
            return new LlamaModel(id, config, weights, pointers, hash.Finish().ToString("x16"), options, fourier);
        }
        catch
        {
            NativeMemory.AlignedFree(weights);
            throw;
        }
    }

    public long CacheBytesAt(string codec, int position) => codec == FourierKvCache.CodecId && _fourier is not null
        ? _fourier.Layout.BytesAt(position)
        : codec == _codec
        ? Config.Yoco is null ? position * _layout.BytesPerToken : YocoKvCache.BytesAt(Config, position)
        : throw new ArgumentException($"Unknown codec '{codec}'; this model has: {string.Join(", ", Codecs)}.", nameof(codec));

    public IKvCache CreateCache(string codec)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return codec == FourierKvCache.CodecId && _fourier is not null
            ? new FourierKvCache(this, _pool, _fourier.Layout, Config.MaxPositionEmbeddings)
            : codec == _codec
            ? Config.Yoco is null
                ? new PagedKvCache(this, _pool, _codec, _layout, Config.MaxPositionEmbeddings, _blockTokens)
                : new YocoKvCache(this, _pool, Config, _blockTokens)
            : throw new ArgumentException($"Unknown codec '{codec}'; this model has: {string.Join(", ", Codecs)}.", nameof(codec));
    }

    public void Forward(IKvCache cache, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (cache is FourierKvCache fourier)
        {
            ForwardFourier(fourier, tokens, logits);
            return;
        }

        if (cache is YocoKvCache yoco)
        {
            ForwardYoco(yoco, tokens, logits);
            return;
        }

        if (cache is not PagedKvCache paged || paged.Owner != this)
        {
            throw new ArgumentException("The cache was not created by this model.", nameof(cache));
        }

        CheckInput(paged.Position, tokens, logits);

        paged.EnsureCapacity(paged.Position + tokens.Length);
        var scratch = RentScratch();
        try
        {
            var view = paged.View;
            for (int start = 0; start < tokens.Length; start += ChunkTokens)
            {
                var chunk = tokens.Slice(start, Math.Min(ChunkTokens, tokens.Length - start));
                ForwardChunk(view, paged.Position, chunk, scratch);
                paged.Advance(chunk.Length);
            }

            int h = Config.HiddenSize;
            int last = (tokens.Length - 1) % ChunkTokens;
            fixed (float* l = logits)
            {
                _backend.RmsNorm(scratch.X + (long)last * h, _finalNorm, scratch.Normed, 1, h, _eps);
                _backend.MatMul(scratch.Normed, 1, h, _lmHead, Config.VocabSize, l);
            }
        }
        finally
        {
            ReturnScratch(scratch);
        }
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

    private void ForwardChunk(in KvView view, int start, ReadOnlySpan<int> tokens, ForwardScratch s)
    {
        if (_variant.Fusion is not null)
        {
            ForwardFusedChunk(view, start, tokens, s);
            return;
        }

        var c = Config;
        int n = tokens.Length, h = c.HiddenSize, f = c.IntermediateSize;
        _backend.Embed(_embedding, tokens, h, s.X);
        for (int l = 0; l < _layers.Length; l++)
        {
            ref readonly var w = ref _layers[l];
            _backend.RmsNorm(s.X, w.InputNorm, s.Normed, n, h, _eps);
            _backend.MatMul(s.Normed, n, h, w.Q, c.QueryDim, s.Q);
            _backend.MatMul(s.Normed, n, h, w.K, c.KeyValueDim, s.K);
            _backend.MatMul(s.Normed, n, h, w.V, _layout.Heads * _layout.Dim, s.V);
            _backend.Rope(s.Q, n, c.NumAttentionHeads, c.HeadDim, start, _cos, _sin);
            _backend.Rope(s.K, n, c.NumKeyValueHeads, c.HeadDim, start, _cos, _sin);
            if (c.SvdGqa is { } svd)
            {
                // Keys with RoPE cannot fold into W_K: cache c = [R k¹ … R kᵗ] Ψ_K and attend with q̃ = (R q) Ψ_K,j;
                // values are already x W_V' (rank-wide), and W_O' takes the rank-wide attention output.
                _backend.ProjectGroups(s.K, n, _layout.Heads, svd.GroupSize * c.HeadDim, w.KeyBasis, svd.Rank, s.KeyCompressed);
                _backend.ProjectQueries(s.Q, n, c.NumAttentionHeads, c.HeadDim, c.NumKeyValueHeads, svd.GroupSize, w.KeyBasis, svd.Rank, s.QueryTilde);
                _backend.StoreKv(view, l, s.KeyCompressed, s.V, n, start);
                _backend.Attention(view, l, s.QueryTilde, n, c.NumAttentionHeads, start, _attentionScale, s.Attention);
            }
            else
            {
                _backend.StoreKv(view, l, s.K, s.V, n, start);
                _backend.Attention(view, l, s.Q, n, c.NumAttentionHeads, start, _attentionScale, s.Attention);
            }

            _backend.MatMul(s.Attention, n, c.NumAttentionHeads * _layout.Dim, w.O, h, s.Projected);
            _backend.Add(s.X, s.Projected, (long)n * h);

            _backend.RmsNorm(s.X, w.PostNorm, s.Normed, n, h, _eps);
            _backend.MatMul(s.Normed, n, h, w.Gate, f, s.Gate);
            _backend.MatMul(s.Normed, n, h, w.Up, f, s.Up);
            _backend.SiluMul(s.Gate, s.Up, s.Gate, (long)n * f);
            _backend.MatMul(s.Gate, n, f, w.Down, h, s.Projected);
            _backend.Add(s.X, s.Projected, (long)n * h);
        }
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
        public float* InputNorm, Q, K, V, O, PostNorm, Gate, Up, Down, KeyBasis;
    }
}
