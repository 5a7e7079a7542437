using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker.Tests;

public sealed class SymmetricEigenUnitTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 2)]
    [InlineData(32, 3)]
    public void Random_symmetric_matrices_decompose_into_orthonormal_sorted_eigenpairs(int n, int seed)
    {
        var random = new Random(seed);
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                a[i * n + j] = a[j * n + i] = random.NextDouble() * 2 - 1;
            }
        }

        var (values, vectors) = Decompose(a, n);
        AssertEigenpairs(a, n, values, vectors, 1e-12);
    }

    [Fact]
    public void A_rank_deficient_gram_matrix_still_gets_a_full_orthonormal_basis()
    {
        // XᵀX of 3 rows in 8 dimensions: rank 3, five zero eigenvalues (the SVD-GQA case of few calibration tokens).
        const int n = 8;
        var random = new Random(5);
        var x = Enumerable.Range(0, 3 * n).Select(_ => random.NextDouble() - 0.5).ToArray();
        var gram = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                for (int r = 0; r < 3; r++)
                {
                    gram[i * n + j] += x[r * n + i] * x[r * n + j];
                }
            }
        }

        var (values, vectors) = Decompose(gram, n);
        AssertEigenpairs(gram, n, values, vectors, 1e-12);
        Assert.All(values.Take(3), v => Assert.True(v > 1e-3));
        Assert.All(values.Skip(3), v => Assert.True(Math.Abs(v) < 1e-12, $"eigenvalue {v} should be zero"));
    }

    [Fact]
    public void Known_spectra_are_reproduced_including_repeated_eigenvalues()
    {
        var (values, vectors) = Decompose([1, 0, 0, 0, 5, 0, 0, 0, 3], 3);
        Assert.Equal(new double[] { 5, 3, 1 }, values);
        Assert.Equal(1, Math.Abs(vectors[1 * 3 + 0]));
        Assert.Equal(1, Math.Abs(vectors[2 * 3 + 1]));

        // [[2, 1], [1, 2]]: eigenvalues 3 and 1 with eigenvectors (1, 1)/√2 and (1, -1)/√2.
        (values, vectors) = Decompose([2, 1, 1, 2], 2);
        Assert.Equal(3, values[0], 14);
        Assert.Equal(1, values[1], 14);
        Assert.Equal(Math.Abs(vectors[0]), Math.Abs(vectors[2]), 14);

        var identity = new double[16];
        for (int i = 0; i < 4; i++)
        {
            identity[i * 5] = 2;
        }

        (values, vectors) = Decompose(identity, 4);
        AssertEigenpairs(identity, 4, values, vectors, 1e-15);
    }

    [Fact]
    public void Non_symmetric_non_finite_or_misshapen_input_is_refused()
    {
        var values = new double[2];
        var vectors = new double[4];
        Assert.Throws<ArgumentException>(() => SymmetricEigen.Decompose([1, 2, 3, 4], 2, values, vectors));
        Assert.Throws<ArgumentException>(() => SymmetricEigen.Decompose([1, double.NaN, double.NaN, 4], 2, values, vectors));
        Assert.Throws<ArgumentException>(() => SymmetricEigen.Decompose([1, 2, 2], 2, values, vectors));
        Assert.Throws<ArgumentOutOfRangeException>(() => SymmetricEigen.Decompose([], 0, [], []));
    }

    private static (double[] Values, double[] Vectors) Decompose(double[] a, int n)
    {
        var values = new double[n];
        var vectors = new double[n * n];
        SymmetricEigen.Decompose(a, n, values, vectors);
        return (values, vectors);
    }

    /// <summary>A v = λ v per column, VᵀV = I, eigenvalues descending.</summary>
    private static void AssertEigenpairs(double[] a, int n, double[] values, double[] vectors, double tolerance)
    {
        double scale = Math.Max(1, a.Max(Math.Abs));
        for (int k = 0; k < n; k++)
        {
            if (k > 0)
            {
                Assert.True(values[k - 1] >= values[k], "eigenvalues must be sorted descending");
            }

            for (int i = 0; i < n; i++)
            {
                double av = 0;
                for (int j = 0; j < n; j++)
                {
                    av += a[i * n + j] * vectors[j * n + k];
                }

                Assert.True(Math.Abs(av - values[k] * vectors[i * n + k]) <= tolerance * scale * n, $"residual of pair {k} row {i}");
            }

            for (int m = 0; m < n; m++)
            {
                double dot = 0;
                for (int i = 0; i < n; i++)
                {
                    dot += vectors[i * n + k] * vectors[i * n + m];
                }

                Assert.True(Math.Abs(dot - (k == m ? 1 : 0)) <= 1e-12, $"columns {k} and {m} are not orthonormal ({dot})");
            }
        }
    }
}
