// Fast kernels for products with half-precision weights, tested against the
// plain path (convert the whole matrix, then gemm):
//   - few rows (decoding): each weight row is converted and multiplied while
//     it streams from memory, AVX-512 when the CPU has it, output rows split
//     over the thread pool; memory bandwidth is the limit.
//   - many rows (prefill): blocks of weight rows are converted into a
//     cache-sized float buffer and multiplied with one BLAS GEMM per block.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../core/gemm.hpp"
#include "../core/half_matrix.hpp"
#include "../core/parallel.hpp"

namespace mplug_owl2 {
namespace kernels {

inline bool cpu_has_avx512() {
    static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    return has;
}

namespace detail {

// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512
// intrinsics (_mm512_setzero_ps, _mm512_reduce_add_ps).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// 16 halves at p -> 16 floats.
__attribute__((target("avx512f,avx512bw"))) inline __m512 load16(DType dt, const std::uint8_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if (dt == DType::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx512f,avx512bw"))) inline void to_float_avx512(DType dt, const std::uint8_t* src,
                                                                         std::size_t n, float* dst) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16(dt, src + 2 * i));
    if (i < n) convert_elements<float>(dt, src + 2 * i, n - i, dst + i);
}

// y[l, j] (+)= x[l, :] · w[j, :] for j in [j0, j1), l < L ≤ 8.
__attribute__((target("avx512f,avx512bw"))) inline void rows_dot_avx512(const float* x, std::size_t L,
                                                                         const HalfMatrix& w, std::size_t j0,
                                                                         std::size_t j1, float beta, float* y,
                                                                         std::size_t ldy) {
    const std::size_t K = w.cols;
    for (std::size_t j = j0; j < j1; ++j) {
        const std::uint8_t* wr = w.data + 2 * j * K;
        __m512 acc[8];
        for (std::size_t l = 0; l < L; ++l) acc[l] = _mm512_setzero_ps();
        std::size_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const __m512 wv = load16(w.dtype, wr + 2 * k);
            for (std::size_t l = 0; l < L; ++l) acc[l] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + l * K + k), acc[l]);
        }
        float tail[16];
        const std::size_t rest = K - k;
        if (rest) convert_elements<float>(w.dtype, wr + 2 * k, rest, tail);
        for (std::size_t l = 0; l < L; ++l) {
            float s = _mm512_reduce_add_ps(acc[l]);
            for (std::size_t t = 0; t < rest; ++t) s += tail[t] * x[l * K + k + t];
            float& out = y[l * ldy + j];
            out = beta == 0.f ? s : beta * out + s;
        }
    }
}

#pragma GCC diagnostic pop

}  // namespace detail

// n stored halves -> float.
inline void halves_to_float(DType dt, const std::uint8_t* src, std::size_t n, float* dst) {
    if (cpu_has_avx512())
        detail::to_float_avx512(dt, src, n, dst);
    else
        convert_elements<float>(dt, src, n, dst);
}

// y[L, N] = x[L, K] · Wᵀ + beta · y, W half [N, K], y with row stride ldy.
template <class T>
void gemm_half_nt(const T* x, std::size_t L, const HalfMatrix& w, T beta, T* y, std::size_t ldy,
                  ThreadPool& pool = thread_pool()) {
    const std::size_t N = w.rows, K = w.cols;
    if (L == 0 || N == 0) return;
    if constexpr (std::is_same<T, float>::value) {
        if (L <= 8 && cpu_has_avx512()) {
            pool.parallel_for(N, [&](std::size_t j0, std::size_t j1) {
                detail::rows_dot_avx512(x, L, w, j0, j1, beta, y, ldy);
            });
            return;
        }
    }
    // Blocks of weight rows converted to T (about 4 MB of floats at a time),
    // each multiplied with one GEMM into its columns of y.
    const std::size_t block = std::max<std::size_t>(16, (std::size_t(1) << 20) / std::max<std::size_t>(K, 1));
    std::vector<T> buf(std::min(block, N) * K);
    for (std::size_t j0 = 0; j0 < N; j0 += block) {
        const std::size_t nb = std::min(block, N - j0);
        pool.parallel_for(nb, [&](std::size_t r0, std::size_t r1) {
            for (std::size_t r = r0; r < r1; ++r) {
                const std::uint8_t* src = w.data + 2 * (j0 + r) * K;
                if constexpr (std::is_same<T, float>::value)
                    halves_to_float(w.dtype, src, K, buf.data() + r * K);
                else
                    convert_elements<T>(w.dtype, src, K, buf.data() + r * K);
            }
        });
        gemm<T>(Trans::No, Trans::Yes, L, nb, K, T(1), x, K, buf.data(), K, beta, y + j0, ldy);
    }
}

}  // namespace kernels
}  // namespace mplug_owl2
