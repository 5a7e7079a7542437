using KvCache.GpuWorker.Batching;

namespace KvCache.GpuWorker.Tests;

/// <summary>Concurrent sessions through one model's <see cref="BatchScheduler"/>, against unbatched forwards.</summary>
public sealed class BatchSchedulerUnitTests : IDisposable
{
    private static readonly ModelConfig Config = ModelConfig.Demo with { MaxPositionEmbeddings = 512 };

    private readonly TempModel _directory = TestModels.Generate(Config, seed: 51);
    private readonly LlamaModel _model;

    public BatchSchedulerUnitTests()
    {
        FourierConfig.Default(Config, dimsFraction: 0.5, window: 16, frequencies: 4).Write(_directory.Directory);
        _model = LlamaModel.Load(_directory.Directory, TestModels.SmallOptions(budget: 32 << 20));
    }

    public void Dispose()
    {
        _model.Dispose();
        _directory.Dispose();
    }

    [Fact]
    public async Task Concurrent_sessions_share_passes_and_get_the_tokens_they_would_get_alone()
    {
        const int sessions = 8, steps = 10;
        using var scheduler = new BatchScheduler(_model, new BatchSchedulerOptions { GatherWindow = TimeSpan.FromMilliseconds(20) });
        var prompts = Enumerable.Range(0, sessions).Select(i => TestModels.Tokens(5 + 9 * i, Config.VocabSize, (ulong)i)).ToArray();
        string Codec(int i) => i % 2 == 0 ? "full" : "fourier";

        var batched = await Task.WhenAll(Enumerable.Range(0, sessions).Select(i => Task.Run(() => DecodeAsync(scheduler, Codec(i), prompts[i], steps))));

        for (int i = 0; i < sessions; i++)
        {
            Assert.Equal(Unbatched(Codec(i), prompts[i], steps), batched[i]);
        }

        Assert.Equal(sessions * steps, scheduler.DecodeRows);
        Assert.Equal(prompts.Sum(p => p.Length), scheduler.PrefillRows);

        // Unbatched, the decode steps alone would take sessions × steps passes.
        Assert.True(scheduler.Passes < sessions * steps / 2, $"{scheduler.Passes} passes for {sessions * steps} decode steps: steps were not batched");
    }

    [Fact]
    public async Task A_long_prompt_runs_in_chunks_between_decode_steps_without_starving_them()
    {
        // A window far longer than a decoder's turnaround, even with other test classes loading both cores: every
        // prompt chunk then waits for the decoders it served last, which is the property under test. With 20 ms, a
        // decoder's continuation starved of CPU for a few passes let the whole prompt run alone.
        using var scheduler = new BatchScheduler(_model, new BatchSchedulerOptions { GatherWindow = TimeSpan.FromSeconds(2) });
        int[] prompt = TestModels.Tokens(400, Config.VocabSize, 99);
        using var stop = new CancellationTokenSource();
        // Decoders keep going until the prompt is in (a full cache starts over), however slow this machine is.
        var decoders = Enumerable.Range(0, 4).Select(i => Task.Run(async () =>
        {
            var cache = _model.CreateCache("full");
            var request = new ForwardRequest();
            var logits = new float[Config.VocabSize];
            int[] token = [i + 1];
            while (!stop.IsCancellationRequested)
            {
                if (cache.Position == Config.MaxPositionEmbeddings)
                {
                    cache.Dispose();
                    cache = _model.CreateCache("full");
                }

                await scheduler.ForwardAsync(request, cache, token, logits);
                token[0] = TestModels.ArgMax(logits);
            }

            cache.Dispose();
        })).ToArray();
        SpinWait.SpinUntil(() => scheduler.DecodeRows >= 8, TimeSpan.FromSeconds(30));

        using var longCache = _model.CreateCache("full");
        var longLogits = new float[Config.VocabSize];
        long decodesBefore = scheduler.DecodeRows, passesBefore = scheduler.Passes;
        await scheduler.ForwardAsync(new ForwardRequest(), longCache, prompt, longLogits);
        long decodesDuring = scheduler.DecodeRows - decodesBefore, passes = scheduler.Passes - passesBefore;
        stop.Cancel();
        await Task.WhenAll(decoders);

        Assert.Equal(prompt.Length, longCache.Position);
        Assert.True(passes >= prompt.Length / _model.MaxBatchTokens, $"the prompt took {passes} passes");
        Assert.True(decodesDuring >= 4, $"only {decodesDuring} decode steps ran while the prompt was prefilled in {passes} passes");
        Assert.Equal(Unbatched("full", prompt, 0), [longLogits]);
    }

    [Fact]
    public async Task Bad_input_and_a_full_pool_throw_at_the_call_and_the_request_stays_usable()
    {
        using var scheduler = new BatchScheduler(_model, new BatchSchedulerOptions());
        using var cache = _model.CreateCache("full");
        var request = new ForwardRequest();
        var logits = new float[Config.VocabSize];
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = scheduler.ForwardAsync(request, cache, new[] { Config.VocabSize }, logits); });
        Assert.Throws<ArgumentException>(() => { _ = scheduler.ForwardAsync(request, cache, new[] { 1 }, new float[2]); });
        using (var small = LlamaModel.Load(_directory.Directory, TestModels.SmallOptions(budget: 1)))
        using (var smallScheduler = new BatchScheduler(small, new BatchSchedulerOptions()))
        using (var smallCache = small.CreateCache("full"))
        {
            Assert.Throws<CacheCapacityException>(() => { _ = smallScheduler.ForwardAsync(request, smallCache, new[] { 1 }, logits); });
        }

        await scheduler.ForwardAsync(request, cache, new[] { 1, 2, 3 }, logits);
        Assert.Equal(3, cache.Position);
        var pending = scheduler.ForwardAsync(request, cache, new[] { 4 }, logits);
        Assert.Throws<InvalidOperationException>(() => { _ = scheduler.ForwardAsync(request, cache, new[] { 5 }, logits); });
        await pending;
        Assert.Equal(4, cache.Position);

        // Right after a decode pass, a prompt needing three passes runs to its end with nothing else arriving.
        using var other = _model.CreateCache("full");
        await scheduler.ForwardAsync(request, other, TestModels.Tokens(150, Config.VocabSize, 3), logits).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(150, other.Position);
    }

    private async Task<List<float[]>> DecodeAsync(BatchScheduler scheduler, string codec, int[] prompt, int steps)
    {
        using var cache = _model.CreateCache(codec);
        var request = new ForwardRequest();
        var logits = new float[Config.VocabSize];
        var result = new List<float[]>();
        await scheduler.ForwardAsync(request, cache, prompt, logits);
        result.Add((float[])logits.Clone());
        int[] token = new int[1];
        for (int step = 0; step < steps; step++)
        {
            token[0] = TestModels.ArgMax(logits);
            await scheduler.ForwardAsync(request, cache, token, logits);
            result.Add((float[])logits.Clone());
        }

        return result;
    }

    private List<float[]> Unbatched(string codec, int[] prompt, int steps)
    {
        using var cache = _model.CreateCache(codec);
        return CodecChecks.GreedyLogits(_model, cache, prompt, steps);
    }
}
