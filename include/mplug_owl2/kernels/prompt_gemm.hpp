// y[L, N] = x[L, K] · Wᵀ + beta · y for the rows of a prompt (9 to 512) and
// a weight matrix W [N, K] stored in float32, fp16 or bf16 (AVX-512 CPUs),
// tested against the plain gemm.
//
// The decoder's prefill multiplies ~100 rows with weight matrices of 64 to
// 180 MB. A blocked GEMM that packs its whole right operand before it
// multiplies would write and read W again, and tiles of a fixed width pad
// the rows (89 rows = 96 in 32-wide tiles; the multiway modules' 65 visual
// and 24 text rows, 96 and 32). Here:
//   - x is packed once, in panels of 14 rows (sgemm_detail::pack_a), shared
//     by the threads;
//   - the threads take blocks of 64 weight rows (= columns of y) in turn;
//     for each 256-deep slice a block is transposed into two 32-column
//     panels in the thread's own buffer (halves converted on the way), then
//     multiplied with every 14-row panel of x while it stays in L1; weights
//     packed in that order once for all (kernels/packed_weights.hpp) are
//     read where they lie instead;
//   - the micro-kernel is compiled for each row count 1..14, so the last
//     panel of x costs its own rows only, and y is written in place (a
//     Linear's bias added as the first slice's tiles are stored).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "../core/half.hpp"
#include "../core/half_matrix.hpp"
#include "../core/parallel.hpp"
#include "gemv.hpp"
#include "sgemm.hpp"

namespace mplug_owl2 {
namespace kernels {

// Most rows of x for which the prompt product is taken; above it (the vision
// encoder's 1025 rows) the blocked sgemm of kernels/sgemm.hpp is used.
constexpr std::size_t kPromptMaxRows = 512;

// True when the product of L rows with W [N, K] goes through prompt_gemm_nt.
inline bool prompt_gemm_applies(std::size_t L, std::size_t N, std::size_t K) {
    static const bool has_vl = __builtin_cpu_supports("avx512vl");  // masked 16-bit loads of half weights
    return cpu_has_avx512() && has_vl && L > kGemvMaxRows && L <= kPromptMaxRows && N >= 16 && K >= 1;
}

namespace prompt_detail {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

using sgemm_detail::KC;
using sgemm_detail::MR;
using sgemm_detail::NR;
using sgemm_detail::ceil_div;

constexpr std::size_t kBlockRows = 2 * NR;  // weight rows a task takes: two panels of y's columns

// C[M, NR] (columns in masks m0, m1) += or = Ap·Bp over kc, for M rows:
// Ap [kc][MR] (rows ≥ M unused), Bp [kc][NR]. `first`: C = beta · C + Ap·Bp
// (+ bias on every row when given; C not read when beta is 0); otherwise
// C += Ap·Bp.
template <std::size_t M>
__attribute__((target("avx512f"))) inline void micro_kernel_rows(std::size_t kc, const float* a, const float* b,
                                                                  bool first, float beta, float* c, std::size_t ldc,
                                                                  __mmask16 m0, __mmask16 m1, const float* bias) {
    __m512 acc0[M], acc1[M];
    sgemm_detail::accumulate<M>(kc, a, b, acc0, acc1);
    const __m512 vb = _mm512_set1_ps(first ? beta : 1.f);
    const bool read_c = !first || beta != 0.f, add_bias = first && bias;
    const __m512 bias0 = add_bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 bias1 = add_bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 14
    for (std::size_t r = 0; r < M; ++r) {
        float* cr = c + r * ldc;
        __m512 x0 = acc0[r], x1 = acc1[r];
        if (add_bias) {
            x0 = _mm512_add_ps(x0, bias0);
            x1 = _mm512_add_ps(x1, bias1);
        }
        if (read_c) {
            x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), x0);
            x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), x1);
        }
        _mm512_mask_storeu_ps(cr, m0, x0);
        _mm512_mask_storeu_ps(cr + 16, m1, x1);
    }
}

// The kernel for m rows (1 ≤ m ≤ MR).
inline void tile_rows(std::size_t m, std::size_t kc, const float* a, const float* b, bool first, float beta, float* c,
                      std::size_t ldc, __mmask16 m0, __mmask16 m1, const float* bias) {
    switch (m) {
#define MPLUG_OWL2_ROWS_CASE(n) \
    case n: return micro_kernel_rows<n>(kc, a, b, first, beta, c, ldc, m0, m1, bias);
        MPLUG_OWL2_ROWS_CASE(1) MPLUG_OWL2_ROWS_CASE(2) MPLUG_OWL2_ROWS_CASE(3) MPLUG_OWL2_ROWS_CASE(4)
        MPLUG_OWL2_ROWS_CASE(5) MPLUG_OWL2_ROWS_CASE(6) MPLUG_OWL2_ROWS_CASE(7) MPLUG_OWL2_ROWS_CASE(8)
        MPLUG_OWL2_ROWS_CASE(9) MPLUG_OWL2_ROWS_CASE(10) MPLUG_OWL2_ROWS_CASE(11) MPLUG_OWL2_ROWS_CASE(12)
        MPLUG_OWL2_ROWS_CASE(13) MPLUG_OWL2_ROWS_CASE(14)
#undef MPLUG_OWL2_ROWS_CASE
        default: return;
    }
}

// Weight rows [j0, j0 + n) (n ≤ NR), columns [k0, k0 + kc), transposed
// into one panel dst [kc][NR], zero columns past n. Float weights.
__attribute__((target("avx512f"))) inline void pack_weights(const float* w, std::size_t K, std::size_t j0,
                                                             std::size_t n, std::size_t k0, std::size_t kc,
                                                             float* dst) {
    for (std::size_t c = 0; c < NR; c += 16)
        for (std::size_t k = 0; k < kc; k += 16)
            sgemm_detail::transpose16(w + (j0 + c) * K + k0 + k, K, n > c ? std::min<std::size_t>(16, n - c) : 0,
                        std::min<std::size_t>(16, kc - k), dst + k * NR + c, NR, 0xFFFF);
}

// The same from fp16 or bf16 weights, converted as they are loaded.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void pack_weights(const HalfMatrix& w, std::size_t j0,
                                                                               std::size_t n, std::size_t k0,
                                                                               std::size_t kc, float* dst) {
    const std::size_t K = w.cols;
    for (std::size_t c = 0; c < NR; c += 16) {
        const std::size_t rows = n > c ? std::min<std::size_t>(16, n - c) : 0;
        for (std::size_t k = 0; k < kc; k += 16) {
            const std::size_t cols = std::min<std::size_t>(16, kc - k);
            const __mmask16 in_cols = static_cast<__mmask16>((1u << cols) - 1);
            __m512 r[16];
            for (std::size_t i = 0; i < 16; ++i) {
                if (i >= rows) {
                    r[i] = _mm512_setzero_ps();
                    continue;
                }
                const auto* p = reinterpret_cast<const std::int16_t*>(w.data) + (j0 + c + i) * K + k0 + k;
                const __m256i h = _mm256_maskz_loadu_epi16(in_cols, p);
                r[i] = w.dtype == DType::F16 ? _mm512_cvtph_ps(h)
                                             : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            }
            sgemm_detail::transpose16_store(r, cols, dst + k * NR + c, NR, 0xFFFF);
        }
    }
}

// The product (plus bias[N] on every row when given) for weights whose
// block of rows [j0, j0 + nb) × columns [k0, k0 + kc) slice(j0, nb, k0, kc,
// buffer) returns as panels [⌈nb/32⌉][kc][32], either packed into `buffer`
// (room for 64 × 256 floats) or where they are stored.
template <class Slice>
void prompt_gemm(const float* x, std::size_t L, std::size_t N, std::size_t K, float beta, float* y, std::size_t ldy,
                 ThreadPool& pool, const float* bias, const Slice& slice) {
    if (L == 0 || N == 0) return;
    const std::size_t panels = ceil_div(L, MR);
    // 1. x packed: for each slice of KC columns, the panels of MR rows one
    //    after the other, each [kc][MR]
    thread_local sgemm_detail::Buffer x_storage;
    float* const xp = x_storage.get(panels * MR * std::max<std::size_t>(K, 1));
    const std::size_t slices = ceil_div(K, KC);
    pool.parallel_for(slices * panels, [&](std::size_t t0, std::size_t t1) {
        for (std::size_t t = t0; t < t1; ++t) {
            const std::size_t s = t / panels, p = t % panels, k0 = s * KC, kc = std::min(KC, K - k0);
            sgemm_detail::pack_a(false, std::min(MR, L - p * MR), kc, x + p * MR * K + k0, K,
                                 xp + k0 * panels * MR + p * MR * kc);
        }
    });
    if (K == 0) {  // no products: y = beta · y (+ bias)
        for (std::size_t l = 0; l < L; ++l)
            for (std::size_t j = 0; j < N; ++j)
                y[l * ldy + j] = (beta == 0.f ? 0.f : beta * y[l * ldy + j]) + (bias ? bias[j] : 0.f);
        return;
    }
    // 2. blocks of weight rows, taken in turn by the threads
    const std::size_t blocks = ceil_div(N, kBlockRows);
    std::atomic<std::size_t> next{0};
    pool.parallel_for(pool.size(), [&](std::size_t, std::size_t) {
        thread_local sgemm_detail::Buffer w_storage;  // this thread's panels of the block, [kc][NR] each
        float* const wp = w_storage.get(kBlockRows * KC);
        for (std::size_t b; (b = next.fetch_add(1)) < blocks;) {
            const std::size_t j0 = b * kBlockRows, nb = std::min(kBlockRows, N - j0);
            for (std::size_t k0 = 0; k0 < K; k0 += KC) {
                const std::size_t kc = std::min(KC, K - k0);
                const float* const wb = slice(j0, nb, k0, kc, wp);
                for (std::size_t c = 0; c < nb; c += NR) {
                    const std::size_t n = std::min(NR, nb - c);
                    const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
                    const __mmask16 m1 = static_cast<__mmask16>(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0);
                    for (std::size_t p = 0; p < panels; ++p)
                        tile_rows(std::min(MR, L - p * MR), kc, xp + k0 * panels * MR + p * MR * kc, wb + c * kc,
                                  k0 == 0, beta, y + p * MR * ldy + j0 + c, ldy, m0, m1,
                                  bias ? bias + j0 + c : nullptr);
                }
            }
        }
    });
}

#pragma GCC diagnostic pop

}  // namespace prompt_detail

// y[L, N] = x[L, K] · Wᵀ + beta · y (+ bias[N] on every row when given), W
// float [N, K]; needs prompt_gemm_applies.
inline void prompt_gemm_nt(const float* x, std::size_t L, const float* w, std::size_t N, std::size_t K, float beta,
                           float* y, std::size_t ldy, ThreadPool& pool = thread_pool(), const float* bias = nullptr) {
    prompt_detail::prompt_gemm(x, L, N, K, beta, y, ldy, pool, bias,
                               [&](std::size_t j0, std::size_t nb, std::size_t k0, std::size_t kc, float* dst) {
                                   for (std::size_t c = 0; c < nb; c += prompt_detail::NR)
                                       prompt_detail::pack_weights(w, K, j0 + c, std::min(prompt_detail::NR, nb - c),
                                                                   k0, kc, dst + c * kc);
                                   return static_cast<const float*>(dst);
                               });
}

// The same with W in fp16 or bf16.
inline void prompt_gemm_half_nt(const float* x, std::size_t L, const HalfMatrix& w, float beta, float* y,
                                std::size_t ldy, ThreadPool& pool = thread_pool(), const float* bias = nullptr) {
    prompt_detail::prompt_gemm(x, L, w.rows, w.cols, beta, y, ldy, pool, bias,
                               [&](std::size_t j0, std::size_t nb, std::size_t k0, std::size_t kc, float* dst) {
                                   for (std::size_t c = 0; c < nb; c += prompt_detail::NR)
                                       prompt_detail::pack_weights(w, j0 + c, std::min(prompt_detail::NR, nb - c), k0,
                                                                   kc, dst + c * kc);
                                   return static_cast<const float*>(dst);
                               });
}

}  // namespace kernels
}  // namespace mplug_owl2
