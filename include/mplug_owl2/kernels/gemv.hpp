// Products of a few rows with a weight matrix, y[L, N] = x[L, K] · Wᵀ + beta·y
// for L ≤ 8 (decoding: L = 1), W [N, K] stored in float, fp16 or bf16.
// Every weight is read once and used L times, so memory bandwidth is the
// limit, and what matters is to stream W at full speed:
//   - the threads of the pool take blocks of 64 weight rows in turn (a
//     thread that another process holds up takes fewer);
//   - each thread takes R weight rows at a time (R·L ≤ 8 accumulators; 8
//     rows for one row of x streamed 10% faster than 4 at 11008 columns),
//     so that R independent FMA chains hide the FMA latency and x is loaded
//     once per R rows, and asks for each row's next kilobyte ahead of use,
//     near a row's end for the start of the row it takes next;
//   - half weights are converted in registers as they stream (fp16 with
//     vcvtph2ps, bf16 by a shift), never written back.
// Used by kernels/weight_gemm.hpp (float weights) and kernels/half_gemm.hpp
// (half weights) on AVX-512 CPUs; tested against the plain path (gemm on the
// converted matrix).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../core/half.hpp"
#include "../core/half_matrix.hpp"
#include "../core/parallel.hpp"

namespace mplug_owl2 {
namespace kernels {

// The most rows of x the kernel takes.
constexpr std::size_t kGemvMaxRows = 8;

// AVX-512 F and BW (the bf16 conversion widens 16-bit lanes).
inline bool cpu_has_avx512() {
    static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    return has;
}

namespace gemv_detail {

// GCC 12 reports false -W(maybe-)uninitialized warnings inside its own
// AVX-512 reductions.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// Weights read this many bytes after the ones being multiplied are prefetched.
constexpr std::size_t kPrefetchBytes = 1024;

// Prefetches the weight kPrefetchBytes after byte `at` of row j (rows of
// row_bytes from w) in the order a thread reads them when it takes R rows
// at a time: along row j, and past its end into row j + R, which it reads
// next. (Straight on past the end would land in row j + 1, already being
// read, and leave the start of every next row to demand misses: 10–20% of
// the bandwidth at 4096 columns.) A prefetch past the matrix is harmless.
inline void prefetch_ahead(const char* w, std::size_t row_bytes, std::size_t j, std::size_t at, std::size_t R) {
    std::size_t ahead = at + kPrefetchBytes;
    if (ahead >= row_bytes) ahead += (R - 1) * row_bytes;
    _mm_prefetch(w + j * row_bytes + ahead, _MM_HINT_T0);
}

// The three storage formats of W: 16 weights of row j from column k as
// floats, and one weight as a float (for the columns past the last 16).
struct F32Weights {
    const float* w;
    std::size_t K;
    __attribute__((target("avx512f,avx512bw"))) __m512 load16(std::size_t j, std::size_t k) const {
        return _mm512_loadu_ps(w + j * K + k);
    }
    void prefetch(std::size_t j, std::size_t k, std::size_t R) const {
        prefetch_ahead(reinterpret_cast<const char*>(w), K * sizeof(float), j, k * sizeof(float), R);
    }
    float at(std::size_t j, std::size_t k) const { return w[j * K + k]; }
};

// Half weights: little-endian 16-bit values at any alignment.
struct HalfWeights {
    const std::uint8_t* w;
    std::size_t K;
    std::uint16_t bits(std::size_t j, std::size_t k) const {
        std::uint16_t h;
        std::memcpy(&h, w + 2 * (j * K + k), 2);
        return h;
    }
    __attribute__((target("avx512f,avx512bw"))) __m256i load16_bits(std::size_t j, std::size_t k) const {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * (j * K + k)));
    }
    void prefetch(std::size_t j, std::size_t k, std::size_t R) const {
        prefetch_ahead(reinterpret_cast<const char*>(w), 2 * K, j, 2 * k, R);
    }
};

struct F16Weights : HalfWeights {
    __attribute__((target("avx512f,avx512bw"))) __m512 load16(std::size_t j, std::size_t k) const {
        return _mm512_cvtph_ps(load16_bits(j, k));
    }
    float at(std::size_t j, std::size_t k) const { return fp16_to_float(bits(j, k)); }
};

struct BF16Weights : HalfWeights {
    __attribute__((target("avx512f,avx512bw"))) __m512 load16(std::size_t j, std::size_t k) const {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(load16_bits(j, k)), 16));
    }
    float at(std::size_t j, std::size_t k) const { return bf16_to_float(bits(j, k)); }
};

// Weight rows [j, j + R) against the L rows of x.
template <std::size_t L, std::size_t R, class W>
__attribute__((target("avx512f,avx512bw"))) inline void block(const float* x, const W& w, std::size_t j, float beta,
                                                               float* y, std::size_t ldy) {
    const std::size_t K = w.K;
    __m512 acc[R][L];
    for (std::size_t r = 0; r < R; ++r)
        for (std::size_t l = 0; l < L; ++l) acc[r][l] = _mm512_setzero_ps();
    std::size_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[R];
        for (std::size_t r = 0; r < R; ++r) {
            w.prefetch(j + r, k, R);
            wv[r] = w.load16(j + r, k);
        }
        for (std::size_t l = 0; l < L; ++l) {
            const __m512 xv = _mm512_loadu_ps(x + l * K + k);
            for (std::size_t r = 0; r < R; ++r) acc[r][l] = _mm512_fmadd_ps(wv[r], xv, acc[r][l]);
        }
    }
    for (std::size_t r = 0; r < R; ++r)
        for (std::size_t l = 0; l < L; ++l) {
            float s = _mm512_reduce_add_ps(acc[r][l]);
            for (std::size_t t = k; t < K; ++t) s += w.at(j + r, t) * x[l * K + t];
            float& out = y[l * ldy + j + r];
            out = beta == 0.f ? s : beta * out + s;
        }
}

// Output columns [j0, j1) on the calling thread.
template <std::size_t L, class W>
__attribute__((target("avx512f,avx512bw"))) void columns(const float* x, const W& w, std::size_t j0, std::size_t j1,
                                                          float beta, float* y, std::size_t ldy) {
    constexpr std::size_t R = L == 1 ? 8 : L == 2 ? 4 : L <= 4 ? 2 : 1;  // R·L ≤ 8 accumulators
    std::size_t j = j0;
    for (; j + R <= j1; j += R) block<L, R>(x, w, j, beta, y, ldy);
    for (; j < j1; ++j) block<L, 1>(x, w, j, beta, y, ldy);
}

#pragma GCC diagnostic pop

template <class W>
void gemv(const float* x, std::size_t L, const W& w, std::size_t N, float beta, float* y, std::size_t ldy,
          ThreadPool& pool) {
    using Fn = void (*)(const float*, const W&, std::size_t, std::size_t, float, float*, std::size_t);
    static constexpr Fn by_rows[kGemvMaxRows] = {columns<1, W>, columns<2, W>, columns<3, W>, columns<4, W>,
                                                 columns<5, W>, columns<6, W>, columns<7, W>, columns<8, W>};
    const Fn fn = by_rows[L - 1];
    // Blocks of 64 output columns (whole cache lines of y: no two threads write one).
    constexpr std::size_t kBlock = 64;
    const std::size_t blocks = (N + kBlock - 1) / kBlock;
    std::atomic<std::size_t> next{0};
    pool.parallel_for(std::min(pool.size(), blocks), [&](std::size_t, std::size_t) {
        for (std::size_t b; (b = next.fetch_add(1)) < blocks;)
            fn(x, w, b * kBlock, std::min(N, (b + 1) * kBlock), beta, y, ldy);
    });
}

}  // namespace gemv_detail

// True when gemv_nt takes a product of L rows: an AVX-512 CPU and L ≤ 8.
inline bool gemv_applies(std::size_t L) { return L >= 1 && L <= kGemvMaxRows && cpu_has_avx512(); }

// y[L, N] = x[L, K] · Wᵀ + beta · y (y with row stride ldy), W float [N, K]; needs gemv_applies(L).
inline void gemv_nt(const float* x, std::size_t L, const float* w, std::size_t N, std::size_t K, float beta, float* y,
                    std::size_t ldy, ThreadPool& pool = thread_pool()) {
    gemv_detail::gemv(x, L, gemv_detail::F32Weights{w, K}, N, beta, y, ldy, pool);
}

// ... W half [N, K].
inline void gemv_nt(const float* x, std::size_t L, const HalfMatrix& w, float beta, float* y, std::size_t ldy,
                    ThreadPool& pool = thread_pool()) {
    const gemv_detail::HalfWeights h{w.data, w.cols};
    if (w.dtype == DType::F16)
        gemv_detail::gemv(x, L, gemv_detail::F16Weights{h}, w.rows, beta, y, ldy, pool);
    else
        gemv_detail::gemv(x, L, gemv_detail::BF16Weights{h}, w.rows, beta, y, ldy, pool);
}

}  // namespace kernels
}  // namespace mplug_owl2
