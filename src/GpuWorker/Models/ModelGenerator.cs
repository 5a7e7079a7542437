using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>
/// Writes deterministic random Llama checkpoints (config.json + model.safetensors) of any shape, for tests
/// and benchmarks; a config with <see cref="ModelConfig.Yoco"/> or <see cref="ModelConfig.FusedKv"/> gives a model
/// of that architecture. The same config, seed and dtype give the same bytes on every platform.
/// </summary>
public static class ModelGenerator
{
    /// <summary>
    /// Generates weights into <paramref name="directory"/> (created if needed). Matrices are uniform with variance
    /// 1/in (embeddings: 1/hidden, so tied logits stay near unit scale), norm weights lie in [0.9, 1.1), FusedKV
    /// fusion weights in [0.25, 0.75) (key weights drawn once per RoPE pair, so both channels of a pair are equal).
    /// </summary>
    public static void Write(string directory, ModelConfig config, ulong seed, TensorDtype dtype = TensorDtype.F32)
    {
        config = config with { TorchDtype = TensorDtypes.TorchName(dtype) };
        config.Validate();
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJson());

        var tensors = LlamaTensors.List(config);
        var specs = tensors.Select(t => new SafetensorsTensorSpec(t.Name, dtype, t.Shape)).ToArray();
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["generator"] = $"KvCache.ModelGenerator seed={seed}" };
        var buffer = new float[1 << 16];
        using var writer = new SafetensorsWriter(Path.Combine(directory, "model.safetensors"), specs, metadata);
        for (int index = 0; index < tensors.Count; index++)
        {
            var t = tensors[index];

            // One stream per tensor, keyed by its index, so a tensor's values don't depend on the others' sizes.
            var rng = new SplitMix64(SplitMix64.Mix(seed, (ulong)index));
            (float scale, float offset) = t.Role switch
            {
                TensorRole.Norm => (0.1f, 1f),
                TensorRole.KeyFusion or TensorRole.ValueFusion => (0.25f, 0.5f),
                _ => ((float)Math.Sqrt(3.0 / t.Shape[1]), 0f),
            };
            if (t.Role == TensorRole.KeyFusion)
            {
                writer.Write(PairedFusionWeights(t, config.HeadDim, ref rng, scale, offset));
                continue;
            }

            for (long remaining = t.ElementCount; remaining > 0;)
            {
                int n = (int)Math.Min(remaining, buffer.Length);
                for (int i = 0; i < n; i++)
                {
                    buffer[i] = rng.NextSigned() * scale + offset;
                }

                writer.Write(buffer.AsSpan(0, n));
                remaining -= n;
            }
        }

        writer.Complete();
    }

    private static float[] PairedFusionWeights(LlamaTensor t, int headDim, ref SplitMix64 rng, float scale, float offset)
    {
        var values = new float[t.ElementCount];
        int half = headDim / 2;
        for (int head = 0; head < values.Length; head += headDim)
        {
            for (int j = 0; j < half; j++)
            {
                values[head + j] = values[head + j + half] = rng.NextSigned() * scale + offset;
            }
        }

        return values;
    }
}
