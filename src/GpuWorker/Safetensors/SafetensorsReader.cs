using System.IO.MemoryMappedFiles;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>
/// Reads a <c>.safetensors</c> file through a read-only memory map: an 8-byte little-endian header length,
/// a JSON header naming each tensor's dtype, shape and byte range, then the data section.
/// </summary>
public sealed unsafe class SafetensorsReader : IDisposable
{
    private const long MaxHeaderBytes = 100 << 20;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _data;
    private readonly Dictionary<string, SafetensorsTensorInfo> _tensors;
    private bool _disposed;

    private SafetensorsReader(
        MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* data,
        Dictionary<string, SafetensorsTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        _map = map;
        _view = view;
        _data = data;
        _tensors = tensors;
        Metadata = metadata;
    }

    public IReadOnlyDictionary<string, SafetensorsTensorInfo> Tensors => _tensors;

    /// <summary>The header's <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Maps <paramref name="path"/> and validates its header.</summary>
    /// <exception cref="InvalidDataException">A truncated file, malformed header or inconsistent tensor ranges.</exception>
    /// <exception cref="NotSupportedException">A tensor dtype other than F32, F16 or BF16.</exception>
    public static SafetensorsReader Open(string path)
    {
        long length = new FileInfo(path).Length;
        if (length < 8)
        {
            throw new InvalidDataException($"{path}: {length} bytes is too short for a safetensors file.");
        }

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            basePtr += view.PointerOffset;
            ulong headerLength = *(ulong*)basePtr;
            if (headerLength > (ulong)Math.Min(length - 8, MaxHeaderBytes))
            {
                throw new InvalidDataException($"{path}: header length {headerLength} exceeds the file ({length} bytes).");
            }

            var header = new ReadOnlySpan<byte>(basePtr + 8, (int)headerLength);
            long dataLength = length - 8 - (long)headerLength;
            var (tensors, metadata) = ParseHeader(header, dataLength, path);
            return new SafetensorsReader(map, view, basePtr + 8 + (long)headerLength, tensors, metadata);
        }
        catch
        {
            if (view is not null)
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }

            map.Dispose();
            throw;
        }
    }

    /// <summary>The raw stored bytes of one tensor (valid until the reader is disposed).</summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var info = Find(name);
        if (info.ByteLength > int.MaxValue)
        {
            throw new NotSupportedException($"Tensor '{name}' is larger than 2 GiB.");
        }

        return new ReadOnlySpan<byte>(_data + info.DataOffset, (int)info.ByteLength);
    }

    /// <summary>Converts one tensor to f32 into <paramref name="destination"/> (length = element count).</summary>
    public void ReadAsSingle(string name, Span<float> destination)
    {
        var info = Find(name);
        if (destination.Length != info.ElementCount)
        {
            throw new ArgumentException($"Tensor '{name}' has {info.ElementCount} elements, destination {destination.Length}.", nameof(destination));
        }

        var bytes = GetBytes(name);
        switch (info.Dtype)
        {
            case TensorDtype.F32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
                break;
            case TensorDtype.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), destination);
                break;
            default:
                var raw = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < raw.Length; i++)
                {
                    destination[i] = Bf16.ToSingle(raw[i]);
                }

                break;
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }

        _map?.Dispose();
    }

    private SafetensorsTensorInfo Find(string name) =>
        _tensors.TryGetValue(name, out var info) ? info : throw new KeyNotFoundException($"No tensor '{name}' in the safetensors file.");

    private static (Dictionary<string, SafetensorsTensorInfo>, Dictionary<string, string>) ParseHeader(
        ReadOnlySpan<byte> header, long dataLength, string path)
    {
        var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(header);
        JsonDocument document;
        try
        {
            document = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: safetensors header is not valid JSON: {e.Message}", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{path}: safetensors header must be a JSON object.");
            }

            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    if (property.Value.ValueKind == JsonValueKind.Object)
                    {
                        foreach (var m in property.Value.EnumerateObject())
                        {
                            metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                        }
                    }

                    continue;
                }

                tensors[property.Name] = ParseTensor(property.Name, property.Value, dataLength, path);
            }
        }

        // Tensors must not overlap (the format forbids it; overlapping ranges mean a corrupt header).
        var ordered = tensors.Values.Where(t => t.ByteLength > 0).OrderBy(t => t.DataOffset).ToArray();
        for (int i = 1; i < ordered.Length; i++)
        {
            if (ordered[i].DataOffset < ordered[i - 1].DataOffset + ordered[i - 1].ByteLength)
            {
                throw new InvalidDataException($"{path}: tensors '{ordered[i - 1].Name}' and '{ordered[i].Name}' overlap.");
            }
        }

        return (tensors, metadata);
    }

    private static SafetensorsTensorInfo ParseTensor(string name, JsonElement e, long dataLength, string path)
    {
        if (e.ValueKind != JsonValueKind.Object
            || !e.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String
            || !e.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array
            || !e.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array
            || offsetsElement.GetArrayLength() != 2)
        {
            throw new InvalidDataException($"{path}: tensor '{name}' needs dtype, shape and data_offsets [begin, end].");
        }

        string? dtypeName = dtypeElement.GetString();
        if (!TensorDtypes.TryParse(dtypeName, out var dtype))
        {
            throw new NotSupportedException($"{path}: tensor '{name}' has dtype {dtypeName}; only F32, F16 and BF16 are supported.");
        }

        var shape = new int[shapeElement.GetArrayLength()];
        long elements = 1;
        int k = 0;
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int dim) || dim < 0)
            {
                throw new InvalidDataException($"{path}: tensor '{name}' has an invalid shape {shapeElement.GetRawText()}.");
            }

            shape[k++] = dim;
            elements = checked(elements * dim);
        }

        long begin = OffsetAt(offsetsElement, 0, name, path);
        long end = OffsetAt(offsetsElement, 1, name, path);
        if (begin > end || end > dataLength)
        {
            throw new InvalidDataException($"{path}: tensor '{name}' data_offsets [{begin}, {end}] fall outside the {dataLength}-byte data section.");
        }

        if (end - begin != elements * TensorDtypes.Size(dtype))
        {
            throw new InvalidDataException(
                $"{path}: tensor '{name}' of shape [{string.Join(", ", shape)}] {dtypeName} needs {elements * TensorDtypes.Size(dtype)} bytes, data_offsets give {end - begin}.");
        }

        return new SafetensorsTensorInfo(name, dtype, shape, begin, end - begin);
    }

    private static long OffsetAt(JsonElement offsets, int index, string name, string path)
    {
        var o = offsets[index];
        return o.ValueKind == JsonValueKind.Number && o.TryGetInt64(out long v) && v >= 0
            ? v
            : throw new InvalidDataException($"{path}: tensor '{name}' has invalid data_offsets {offsets.GetRawText()}.");
    }
}
