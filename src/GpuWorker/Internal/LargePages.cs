using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Native memory for weights and cache pools, 2 MiB-aligned and, on Linux, advised into transparent huge pages.
/// The bench measures its memory ceiling on the same pages. A paged cache jumps to another block every few KiB: with 4 KiB pages every jump is a TLB miss whose page walk
/// misses the caches too, which cost a quarter of attention's bandwidth with 32-token blocks.
/// </summary>
internal static unsafe partial class LargePages
{
    private const nuint HugePageBytes = 2 << 20;
    private const int MadviseHugePage = 14;

    /// <summary>Free with <see cref="NativeMemory.AlignedFree"/>.</summary>
    public static void* Allocate(nuint bytes)
    {
        void* memory = NativeMemory.AlignedAlloc(Math.Max(bytes, 64), HugePageBytes);
        if (OperatingSystem.IsLinux() && bytes >= HugePageBytes)
        {
            // Best effort: where THP is off the memory simply stays on 4 KiB pages.
            _ = Madvise(memory, bytes, MadviseHugePage);
        }

        return memory;
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);
}
