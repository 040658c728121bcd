// y[L, N] = x[L, K] · Wᵀ + beta · y (+ bias[N] on every row when given) for
// weights packed once (kernels/packed_weights.hpp), tested against the plain
// gemm on the row-major matrix:
//   - L ≤ 8 (decoding), AVX-512: the threads take blocks of 64 weight rows
//     in turn and stream each front to back (its two panels side by side,
//     prefetched 1 KB ahead); for every k, one row of a [kc][32] panel (two
//     vectors) times x[l, k] broadcast is added into the panel's 32 sums per
//     row of x, so no horizontal sums are needed;
//   - more rows, AVX-512: the prompt product (kernels/prompt_gemm.hpp),
//     reading the packed slices where they lie, at most 512 rows of x at a
//     time;
//   - otherwise (CPUs without AVX-512): blocks of rows unpacked into a
//     float buffer and multiplied by gemm.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <vector>

#include "../core/gemm.hpp"
#include "../core/parallel.hpp"
#include "gemv.hpp"
#include "packed_weights.hpp"
#include "prompt_gemm.hpp"
#include "weight_gemm.hpp"

namespace mplug_owl2 {
namespace kernels {

namespace packed_detail {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

constexpr std::size_t kBlockRows = PackedWeights::kBlockRows, KC = PackedWeights::KC, NR = PackedWeights::NR;

// Weights this many bytes ahead of the ones being multiplied are prefetched.
constexpr std::size_t kPrefetchBytes = 1024;

// The sums of P panels of one slice (P = 1 or the block's 2, read side by
// side: two streams per thread draw more of the memory bandwidth than one)
// with the L rows of x: acc0/acc1[q][l] (columns 0..15, 16..31 of panel q).
template <std::size_t L, std::size_t P>
__attribute__((target("avx512f"), always_inline)) inline void panel_sums(const float* x, std::size_t K, std::size_t k0,
                                                                          std::size_t kc, const float* p,
                                                                          __m512 (&acc0)[P][L], __m512 (&acc1)[P][L]) {
    for (std::size_t q = 0; q < P; ++q)
        for (std::size_t l = 0; l < L; ++l) acc0[q][l] = acc1[q][l] = _mm512_setzero_ps();
    for (std::size_t k = 0; k < kc; ++k) {
        __m512 w0[P], w1[P];
        for (std::size_t q = 0; q < P; ++q) {
            const float* row = p + q * kc * NR + k * NR;  // 32 weights: two cache lines
            if (k % 2 == 0) {  // half the lines: the core's adjacent-line prefetch takes the others
                _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetchBytes, _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(row + 16) + kPrefetchBytes, _MM_HINT_T0);
            }
            w0[q] = _mm512_load_ps(row);
            w1[q] = _mm512_load_ps(row + 16);
        }
        for (std::size_t l = 0; l < L; ++l) {
            const __m512 xv = _mm512_set1_ps(x[l * K + k0 + k]);
            for (std::size_t q = 0; q < P; ++q) {
                acc0[q][l] = _mm512_fmadd_ps(w0[q], xv, acc0[q][l]);
                acc1[q][l] = _mm512_fmadd_ps(w1[q], xv, acc1[q][l]);
            }
        }
    }
}

// Columns [j0 + c, j0 + c + n) of the L rows of y from a panel's sums: the
// first slice sets beta · y (+ bias), the later ones add.
template <std::size_t L>
__attribute__((target("avx512f"), always_inline)) inline void store_sums(const __m512 (&s0)[L], const __m512 (&s1)[L],
                                                                          std::size_t n, bool first, float beta,
                                                                          const float* bias, float* y,
                                                                          std::size_t ldy) {
    const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
    const __mmask16 m1 = static_cast<__mmask16>(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0);
    const bool read_y = !first || beta != 0.f, add_bias = first && bias;
    const __m512 vb = _mm512_set1_ps(first ? beta : 1.f);
    const __m512 bias0 = add_bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 bias1 = add_bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (std::size_t l = 0; l < L; ++l) {
        float* const yr = y + l * ldy;
        __m512 v0 = _mm512_add_ps(s0[l], bias0), v1 = _mm512_add_ps(s1[l], bias1);
        if (read_y) {
            v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, yr), v0);
            v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, yr + 16), v1);
        }
        _mm512_mask_storeu_ps(yr, m0, v0);
        _mm512_mask_storeu_ps(yr + 16, m1, v1);
    }
}

// Columns [j0, j0 + 64) of y (fewer in the last block) for the L rows of x:
// one block of W, slice by slice; both panels of a slice at once when the
// sums fit the registers (L ≤ 4), else one after the other.
template <std::size_t L>
__attribute__((target("avx512f"))) void gemv_block(const float* x, const PackedWeights& w, std::size_t j0, float beta,
                                                   float* y, std::size_t ldy, const float* bias) {
    const std::size_t K = w.cols(), nb = std::min(kBlockRows, w.rows() - j0);
    const bool together = L <= 4 && nb > NR;
    for (std::size_t k0 = 0; k0 < K; k0 += KC) {
        const std::size_t kc = std::min(KC, K - k0);
        const float* const s = w.slice(j0, k0);
        const bool first = k0 == 0;
        if (together) {
            __m512 acc0[2][L], acc1[2][L];
            panel_sums<L, 2>(x, K, k0, kc, s, acc0, acc1);
            for (std::size_t q = 0; q < 2; ++q)
                store_sums<L>(acc0[q], acc1[q], std::min(NR, nb - q * NR), first, beta,
                              bias ? bias + j0 + q * NR : nullptr, y + j0 + q * NR, ldy);
            continue;
        }
        for (std::size_t c = 0; c < nb; c += NR) {
            __m512 acc0[1][L], acc1[1][L];
            panel_sums<L, 1>(x, K, k0, kc, s + c * kc, acc0, acc1);
            store_sums<L>(acc0[0], acc1[0], std::min(NR, nb - c), first, beta, bias ? bias + j0 + c : nullptr,
                          y + j0 + c, ldy);
        }
    }
}

#pragma GCC diagnostic pop

// The few-rows product: blocks of 64 weight rows taken in turn by the threads.
inline void gemv(const float* x, std::size_t L, const PackedWeights& w, float beta, float* y, std::size_t ldy,
                 ThreadPool& pool, const float* bias) {
    using Fn = void (*)(const float*, const PackedWeights&, std::size_t, float, float*, std::size_t, const float*);
    static constexpr Fn by_rows[kGemvMaxRows] = {gemv_block<1>, gemv_block<2>, gemv_block<3>, gemv_block<4>,
                                                 gemv_block<5>, gemv_block<6>, gemv_block<7>, gemv_block<8>};
    const Fn fn = by_rows[L - 1];
    const std::size_t blocks = sgemm_detail::ceil_div(w.rows(), kBlockRows);
    std::atomic<std::size_t> next{0};
    pool.parallel_for(std::min(pool.size(), blocks), [&](std::size_t, std::size_t) {
        for (std::size_t b; (b = next.fetch_add(1)) < blocks;) fn(x, w, b * kBlockRows, beta, y, ldy, bias);
    });
}

// The plain path: blocks of 1024 weight rows unpacked, each multiplied by gemm.
inline void gemm_unpacked(const float* x, std::size_t L, const PackedWeights& w, float beta, float* y,
                          std::size_t ldy, ThreadPool& pool, const float* bias) {
    const std::size_t N = w.rows(), K = w.cols(), block = 1024;
    thread_local std::vector<float> storage;  // the calling thread's, reused from call to call
    storage.resize(std::min(block, N) * K);
    float* const buf = storage.data();  // (the pool's threads see their own thread_local)
    for (std::size_t j0 = 0; j0 < N; j0 += block) {
        const std::size_t nb = std::min(block, N - j0);
        pool.parallel_for(sgemm_detail::ceil_div(nb, kBlockRows), [&](std::size_t b0, std::size_t b1) {
            for (std::size_t b = b0; b < b1; ++b) {
                const std::size_t r0 = b * kBlockRows, n = std::min(kBlockRows, nb - r0);
                w.unpack_rows(j0 + r0, n, buf + r0 * K);
            }
        });
        // y = beta · y + bias on these columns first (when there is a bias), then the product added
        const float b = add_bias_rows(bias ? bias + j0 : nullptr, L, nb, beta, y + j0, ldy);
        gemm<float>(Trans::No, Trans::Yes, L, nb, K, 1.f, x, K, buf, K, b, y + j0, ldy);
    }
}

}  // namespace packed_detail

// y[L, N] = x[L, K] · Wᵀ + beta · y (+ bias[N] on every row when given), W
// packed [N, K], y with row stride ldy.
inline void packed_gemm_nt(const float* x, std::size_t L, const PackedWeights& w, float beta, float* y,
                           std::size_t ldy, ThreadPool& pool = thread_pool(), const float* bias = nullptr) {
    const std::size_t N = w.rows(), K = w.cols();
    if (L == 0 || N == 0) return;
    if (K == 0) {  // no products: y = beta · y (+ bias)
        for (std::size_t l = 0; l < L; ++l)
            for (std::size_t j = 0; j < N; ++j)
                y[l * ldy + j] = (beta == 0.f ? 0.f : beta * y[l * ldy + j]) + (bias ? bias[j] : 0.f);
        return;
    }
    if (gemv_applies(L)) return packed_detail::gemv(x, L, w, beta, y, ldy, pool, bias);
    static const bool has_vl = __builtin_cpu_supports("avx512vl");  // the prompt product's masked loads
    if (!(cpu_has_avx512() && has_vl)) return packed_detail::gemm_unpacked(x, L, w, beta, y, ldy, pool, bias);
    // at most 512 rows at a time, in parts of equal size (1025 rows: 342, 342, 341)
    const std::size_t parts = sgemm_detail::ceil_div(L, kPromptMaxRows), rows = sgemm_detail::ceil_div(L, parts);
    for (std::size_t l0 = 0; l0 < L; l0 += rows)
        prompt_detail::prompt_gemm(x + l0 * K, std::min(rows, L - l0), N, K, beta, y + l0 * ldy, ldy, pool,
                                   bias, [&](std::size_t j0, std::size_t, std::size_t k0, std::size_t, float*) {
                                       return w.slice(j0, k0);
                                   });
}

}  // namespace kernels
}  // namespace mplug_owl2
