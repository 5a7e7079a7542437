namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Eigendecomposition of a real symmetric matrix by cyclic Jacobi rotations, in double. Offline use only (SVD-GQA
/// calibration: the right singular vectors of X are the eigenvectors of XᵀX): O(n³) per sweep, a handful of sweeps,
/// and it returns a fully orthonormal basis even for singular (rank-deficient) matrices.
/// </summary>
internal static class SymmetricEigen
{
    private const int MaxSweeps = 64;

    /// <summary>
    /// Decomposes the symmetric n×n row-major <paramref name="matrix"/> (only read) into eigenvalues sorted in
    /// descending order and <paramref name="vectors"/> [n, n] row-major whose column k is eigenvector k.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong lengths, a non-square or non-symmetric or non-finite matrix.</exception>
    public static void Decompose(ReadOnlySpan<double> matrix, int n, Span<double> eigenvalues, Span<double> vectors)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        if (matrix.Length != n * n || eigenvalues.Length != n || vectors.Length != n * n)
        {
            throw new ArgumentException($"Expected a {n}×{n} matrix, {n} eigenvalues and {n}×{n} vectors.");
        }

        var a = matrix.ToArray();
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double x = a[i * n + j];
                if (!double.IsFinite(x) || Math.Abs(x - a[j * n + i]) > 1e-12 * (Math.Abs(x) + Math.Abs(a[j * n + i])))
                {
                    throw new ArgumentException($"The matrix must be finite and symmetric (element [{i}, {j}]).", nameof(matrix));
                }

                total += x * x;
            }
        }

        var v = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            v[i * n + i] = 1;
        }

        for (int sweep = 0; sweep < MaxSweeps && OffDiagonal(a, n) > 1e-30 * total; sweep++)
        {
            for (int p = 0; p < n - 1; p++)
            {
                for (int q = p + 1; q < n; q++)
                {
                    Rotate(a, v, n, p, q);
                }
            }
        }

        // Sort by descending eigenvalue; ties keep index order so the result is deterministic.
        var order = Enumerable.Range(0, n).OrderByDescending(k => a[k * n + k]).ThenBy(k => k).ToArray();
        for (int k = 0; k < n; k++)
        {
            eigenvalues[k] = a[order[k] * n + order[k]];
            for (int i = 0; i < n; i++)
            {
                vectors[i * n + k] = v[i * n + order[k]];
            }
        }
    }

    private static double OffDiagonal(double[] a, int n)
    {
        double s = 0;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                if (i != j)
                {
                    s += a[i * n + j] * a[i * n + j];
                }
            }
        }

        return s;
    }

    /// <summary>A ← Pᵀ A P and V ← V P with the rotation in the (p, q) plane that zeroes a[p, q].</summary>
    private static void Rotate(double[] a, double[] v, int n, int p, int q)
    {
        double apq = a[p * n + q];
        if (apq == 0)
        {
            return;
        }

        double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);

        // The smaller root of t² + 2θt − 1 = 0 keeps the rotation under 45° (stable; Numerical Recipes §11.1);
        // for huge θ, θ² would overflow and t ≈ 1 / (2θ).
        double t = Math.Abs(theta) > 1e150
            ? 1 / (2 * theta)
            : (theta >= 0 ? 1 : -1) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
        double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < n; k++)
        {
            double akp = a[k * n + p], akq = a[k * n + q];
            a[k * n + p] = c * akp - s * akq;
            a[k * n + q] = s * akp + c * akq;
        }

        for (int k = 0; k < n; k++)
        {
            double apk = a[p * n + k], aqk = a[q * n + k];
            a[p * n + k] = c * apk - s * aqk;
            a[q * n + k] = s * apk + c * aqk;
        }

        for (int k = 0; k < n; k++)
        {
            double vkp = v[k * n + p], vkq = v[k * n + q];
            v[k * n + p] = c * vkp - s * vkq;
            v[k * n + q] = s * vkp + c * vkq;
        }
    }
}
