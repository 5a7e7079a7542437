using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>Name, storage dtype and shape of a tensor to write.</summary>
public sealed record SafetensorsTensorSpec(string Name, TensorDtype Dtype, int[] Shape)
{
    public long ElementCount => Shape.Aggregate(1L, (n, d) => n * d);
}

/// <summary>
/// Streams a <c>.safetensors</c> file: the header is written up front from the specs, then
/// <see cref="Write"/> appends f32 values (converted to each tensor's dtype) in spec order, so a large model
/// never needs to sit in memory whole.
/// </summary>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly FileStream _stream;
    private readonly IReadOnlyList<SafetensorsTensorSpec> _specs;
    private int _current;
    private long _writtenInCurrent;
    private bool _disposed;

    public SafetensorsWriter(string path, IReadOnlyList<SafetensorsTensorSpec> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (tensors.Select(t => t.Name).Distinct(StringComparer.Ordinal).Count() != tensors.Count)
        {
            throw new ArgumentException("Tensor names must be unique.", nameof(tensors));
        }

        _specs = tensors;
        var header = BuildHeader(tensors, metadata);
        _stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> length = stackalloc byte[8];
        BitConverter.TryWriteBytes(length, (ulong)header.Length);
        _stream.Write(length);
        _stream.Write(header);
        SkipEmpty();
    }

    /// <summary>Appends values to the current tensor, moving on to the next one when it is full.</summary>
    public void Write(ReadOnlySpan<float> values)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        try
        {
            while (!values.IsEmpty)
            {
                if (_current >= _specs.Count)
                {
                    throw new InvalidOperationException("More values written than the tensors hold.");
                }

                var spec = _specs[_current];
                int n = (int)Math.Min(Math.Min(values.Length, spec.ElementCount - _writtenInCurrent), buffer.Length / 4);
                var src = values[..n];
                int bytes = n * TensorDtypes.Size(spec.Dtype);
                switch (spec.Dtype)
                {
                    case TensorDtype.F32:
                        MemoryMarshal.AsBytes(src).CopyTo(buffer);
                        break;
                    case TensorDtype.F16:
                        TensorPrimitives.ConvertToHalf(src, MemoryMarshal.Cast<byte, Half>(buffer.AsSpan(0, bytes)));
                        break;
                    default:
                        var dst = MemoryMarshal.Cast<byte, ushort>(buffer.AsSpan(0, bytes));
                        for (int i = 0; i < n; i++)
                        {
                            dst[i] = Bf16.FromSingle(src[i]);
                        }

                        break;
                }

                _stream.Write(buffer, 0, bytes);
                _writtenInCurrent += n;
                values = values[n..];
                SkipEmpty();
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Flushes the file after checking that every tensor was written in full.</summary>
    public void Complete()
    {
        if (_current < _specs.Count)
        {
            throw new InvalidOperationException($"Tensor '{_specs[_current].Name}' and those after it were not written in full.");
        }

        _stream.Flush();
    }

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _stream.Dispose();
        }
    }

    private void SkipEmpty()
    {
        while (_current < _specs.Count && _writtenInCurrent == _specs[_current].ElementCount)
        {
            _current++;
            _writtenInCurrent = 0;
        }
    }

    private static byte[] BuildHeader(IReadOnlyList<SafetensorsTensorSpec> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    w.WriteString(k, v);
                }

                w.WriteEndObject();
            }

            long offset = 0;
            foreach (var t in tensors)
            {
                long bytes = t.ElementCount * TensorDtypes.Size(t.Dtype);
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", TensorDtypes.Name(t.Dtype));
                w.WriteStartArray("shape");
                foreach (int d in t.Shape)
                {
                    w.WriteNumberValue(d);
                }

                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }

            w.WriteEndObject();
        }

        // Pad with spaces to a multiple of 8 so the data section is aligned, as the reference writer does.
        int padded = (buffer.WrittenCount + 7) & ~7;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }
}
