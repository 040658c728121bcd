// Matrix products with bf16 operands and float accumulation, as the release
// runs on GPUs: y[L, N] = bf16(x)[L, K] · Wᵀ (+ bias[N] on every row), W
// packed once from float32, bf16 or fp16 (kernels/bf16_weights.hpp), x
// rounded to bf16 (nearest even, as torch) as it is packed, sums in float.
// One of three kernels, chosen from the CPU's features at run time:
//   - AMX-BF16 tiles (kernels/bf16_amx.hpp) for 9+ rows, where the CPU has
//     them and Linux grants the tile state;
//   - AVX512-BF16 vdpbf16ps: tiles of 14 rows × 32 columns of y in 28
//     registers, each instruction adding the products of one pair of
//     columns of K to 16 sums. x is packed into panels of 14 rows as pairs
//     [kc/2][14] (one broadcast per pair and row), W read where it lies;
//     the kernel is compiled for each row count 1..14;
//   - float: x rounded to bf16 values, W unpacked to float by blocks of
//     rows, the float product (core/gemm.hpp); any x86-64 CPU.
// The threads take (block of 64 weight rows, chunk of rows of x) in turn,
// weight block first, so that the threads share a block while it is in
// cache and a prompt streams each weight once.
//
// Summation order, per element of y: the AVX512-BF16 kernel adds, over the
// pairs of K in order, first the odd column's product then the even one's
// to one float sum (each product exact, each sum rounded to nearest even;
// as Intel documents vdpbf16ps and as a Zen 5 computes it), the bias last;
// tests/test_bf16_gemm.cpp checks it bit for bit against a plain loop in
// that order. AMX and the float path sum the same exact products in their
// own orders (tested within the bound of float summation).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/gemm.hpp"
#include "../core/parallel.hpp"
#include "bf16_amx.hpp"
#include "bf16_weights.hpp"
#include "gemv.hpp"
#include "sgemm.hpp"

namespace mplug_owl2 {
namespace kernels {

enum class Bf16Kernel { Float, Avx512Bf16, AmxBf16 };

inline const char* bf16_kernel_name(Bf16Kernel k) {
    switch (k) {
        case Bf16Kernel::AmxBf16: return "amx-bf16";
        case Bf16Kernel::Avx512Bf16: return "avx512-bf16";
        case Bf16Kernel::Float: break;
    }
    return "float";
}

// AVX-512 F, BW, VL and BF16.
inline bool cpu_has_avx512_bf16() {
    static const bool has = cpu_has_avx512_vl() && __builtin_cpu_supports("avx512bf16");
    return has;
}

// Whether kernel k can run here (for AMX: asks Linux for the tile state on
// the first call).
inline bool bf16_kernel_available(Bf16Kernel k) {
    switch (k) {
        case Bf16Kernel::AmxBf16: return amx_bf16_permitted();
        case Bf16Kernel::Avx512Bf16: return cpu_has_avx512_bf16();
        case Bf16Kernel::Float: break;
    }
    return true;
}

// The kernel bf16_gemm_nt runs for L rows of x: AMX for more than a few
// rows (a tile holds 16), else AVX512-BF16, else float. `--timings` and
// `bench` report its name.
inline Bf16Kernel bf16_kernel_for(std::size_t L) {
    if (L > kGemvMaxRows && bf16_kernel_available(Bf16Kernel::AmxBf16)) return Bf16Kernel::AmxBf16;
    if (bf16_kernel_available(Bf16Kernel::Avx512Bf16)) return Bf16Kernel::Avx512Bf16;
    return Bf16Kernel::Float;
}

namespace bf16_detail {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

constexpr std::size_t MR = 14;  // rows of a vdpbf16ps tile of y (28 accumulators)

// A growable 64-byte aligned buffer of T.
template <class T>
class Buffer {
public:
    T* get(std::size_t n) { return reinterpret_cast<T*>(floats_.get(ceil_div(n * sizeof(T), sizeof(float)))); }

private:
    sgemm_detail::Buffer floats_;
};

// y[M, 32] (columns in masks m0, m1) = or += Ap·Bp over `pairs` pairs of K:
// Ap [pairs][MR] (rows ≥ M unused), Bp [pairs][32][2]. `first`: the sums
// start at zero, otherwise from y; `bias` (when given) is added at the end.
template <std::size_t M>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void dot_rows(
    std::size_t pairs, const std::uint32_t* a, const std::uint16_t* b, bool first, const float* bias, float* y,
    std::size_t ldy, __mmask16 m0, __mmask16 m1) {
    __m512 acc0[M], acc1[M];
#pragma GCC unroll 14
    for (std::size_t r = 0; r < M; ++r) {
        acc0[r] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, y + r * ldy);
        acc1[r] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, y + r * ldy + 16);
    }
    for (std::size_t p = 0; p < pairs; ++p, a += MR, b += 2 * NR) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 32);  // weight rows 16-31
#pragma GCC unroll 14
        for (std::size_t r = 0; r < M; ++r) {
            const __m512bh ar = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r]));
            acc0[r] = _mm512_dpbf16_ps(acc0[r], ar, b0);
            acc1[r] = _mm512_dpbf16_ps(acc1[r], ar, b1);
        }
    }
    const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 14
    for (std::size_t r = 0; r < M; ++r) {
        _mm512_mask_storeu_ps(y + r * ldy, m0, bias ? _mm512_add_ps(acc0[r], bias0) : acc0[r]);
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1, bias ? _mm512_add_ps(acc1[r], bias1) : acc1[r]);
    }
}

// The kernel for m rows (1 ≤ m ≤ MR).
inline void dot_tile(std::size_t m, std::size_t pairs, const std::uint32_t* a, const std::uint16_t* b, bool first,
                     const float* bias, float* y, std::size_t ldy, __mmask16 m0, __mmask16 m1) {
    switch (m) {
#define MPLUG_OWL2_BF16_ROWS_CASE(n) \
    case n: return dot_rows<n>(pairs, a, b, first, bias, y, ldy, m0, m1);
        MPLUG_OWL2_BF16_ROWS_CASE(1) MPLUG_OWL2_BF16_ROWS_CASE(2) MPLUG_OWL2_BF16_ROWS_CASE(3)
        MPLUG_OWL2_BF16_ROWS_CASE(4) MPLUG_OWL2_BF16_ROWS_CASE(5) MPLUG_OWL2_BF16_ROWS_CASE(6)
        MPLUG_OWL2_BF16_ROWS_CASE(7) MPLUG_OWL2_BF16_ROWS_CASE(8) MPLUG_OWL2_BF16_ROWS_CASE(9)
        MPLUG_OWL2_BF16_ROWS_CASE(10) MPLUG_OWL2_BF16_ROWS_CASE(11) MPLUG_OWL2_BF16_ROWS_CASE(12)
        MPLUG_OWL2_BF16_ROWS_CASE(13) MPLUG_OWL2_BF16_ROWS_CASE(14)
#undef MPLUG_OWL2_BF16_ROWS_CASE
        default: return;
    }
}

// dst[0, padded) = x[0, n) rounded to bf16, then zeros (padded: a multiple of 32).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void round_row(const float* x, std::size_t n,
                                                                            std::size_t padded, std::uint16_t* dst) {
    for (std::size_t k = 0; k < padded; k += 32)
        _mm512_storeu_si512(dst + k, k < n ? load32_bf16(x + k, std::min<std::size_t>(32, n - k)) : _mm512_setzero_si512());
}

// Runs task(j0, nb, r0, r1) for every block of 64 weight rows [j0, j0 + nb)
// and chunk [r0, r1) of `chunk` rows of x, taken in turn by the threads
// (`setup` and `done` run once per thread around its tasks).
template <class Task, class Setup, class Done>
void for_each_task(ThreadPool& pool, std::size_t N, std::size_t L, std::size_t chunk, const Task& task,
                   const Setup& setup, const Done& done) {
    const std::size_t chunks = ceil_div(L, chunk), tasks = ceil_div(N, kBlockRows) * chunks;
    std::atomic<std::size_t> next{0};
    pool.parallel_for(std::min(pool.size(), tasks), [&](std::size_t, std::size_t) {
        setup();
        for (std::size_t t; (t = next.fetch_add(1)) < tasks;) {
            const std::size_t j0 = t / chunks * kBlockRows, r0 = t % chunks * chunk;
            task(j0, std::min(kBlockRows, N - j0), r0, std::min(L, r0 + chunk));
        }
        done();
    });
}

// AVX512-BF16: x packed, for each slice of 256 columns of K, into the panels
// of MR rows one after the other, each [kc/2][MR] pairs.
inline void gemm_avx512(const float* x, std::size_t L, const Bf16Weights& w, float* y, std::size_t ldy,
                        const float* bias, ThreadPool& pool) {
    const std::size_t K = w.cols(), Kp = w.padded_cols(), N = w.rows(), panels = ceil_div(L, MR);
    thread_local Buffer<std::uint32_t> x_storage;
    std::uint32_t* const xp = x_storage.get(panels * MR * Kp / 2);
    auto slice_of = [&](std::size_t k0, std::size_t p) { return xp + k0 / 2 * panels * MR + p * MR * w.slice_cols(k0) / 2; };
    const F32Source xs{x, K};
    pool.parallel_for(panels, [&](std::size_t p0, std::size_t p1) {
        for (std::size_t p = p0; p < p1; ++p)
            for (std::size_t k0 = 0; k0 < Kp; k0 += KC)
                for (std::size_t k = 0; k < w.slice_cols(k0); k += 32)
                    transpose_pairs(xs, p * MR, std::min(MR, L - p * MR), k0 + k, slice_of(k0, p) + k / 2 * MR, MR,
                                    (1u << MR) - 1);
    });
    // a chunk of 16 panels (224 rows, 112 KB per slice) stays in L2 while a block's slice (32 KB) is in L1
    for_each_task(
        pool, N, L, 16 * MR,
        [&](std::size_t j0, std::size_t nb, std::size_t r0, std::size_t r1) {
            for (std::size_t k0 = 0; k0 < Kp; k0 += KC) {
                const std::size_t kc = w.slice_cols(k0);
                const bool first = k0 == 0, last = k0 + kc == Kp;
                for (std::size_t c = 0; c < nb; c += NR) {
                    const std::size_t n = std::min(NR, nb - c);
                    const std::uint16_t* panel = w.slice(j0, k0) + c * kc;
                    for (std::size_t r = r0; r < r1; r += MR)
                        dot_tile(std::min(MR, r1 - r), kc / 2, slice_of(k0, r / MR), panel, first,
                                 last && bias ? bias + j0 + c : nullptr, y + r * ldy + j0 + c, ldy, low_lanes(n),
                                 high_lanes(n));
                }
            }
        },
        [] {}, [] {});
}

// AMX-BF16: x rounded to bf16 in row-major order [⌈L/32⌉·32][Kp], zero
// past K and L.
inline void gemm_amx(const float* x, std::size_t L, const Bf16Weights& w, float* y, std::size_t ldy,
                     const float* bias, ThreadPool& pool) {
    constexpr std::size_t R = amx_detail::kRows;
    const std::size_t K = w.cols(), Kp = w.padded_cols(), N = w.rows(), groups = ceil_div(L, R);
    thread_local Buffer<std::uint16_t> x_storage;
    std::uint16_t* const xa = x_storage.get(groups * R * Kp);
    pool.parallel_for(groups * R, [&](std::size_t i0, std::size_t i1) {
        for (std::size_t i = i0; i < i1; ++i) round_row(i < L ? x + i * K : x, i < L ? K : 0, Kp, xa + i * Kp);
    });
    // a chunk of 8 groups (256 rows) of x per block of weights
    for_each_task(
        pool, N, L, 8 * R,
        [&](std::size_t j0, std::size_t nb, std::size_t r0, std::size_t r1) {
            for (std::size_t c = 0; c < nb; c += NR)
                for (std::size_t r = r0; r < r1; r += R)
                    amx_detail::block(xa + r * Kp, w, j0, c, std::min(R, r1 - r), std::min(NR, nb - c),
                                      bias ? bias + j0 + c : nullptr, y + r * ldy + j0 + c, ldy);
        },
        amx_detail::configure, amx_detail::release);
}

// Float: x rounded to bf16 values, blocks of weight rows unpacked to float
// and multiplied by the float product.
inline void gemm_float(const float* x, std::size_t L, const Bf16Weights& w, float* y, std::size_t ldy,
                       const float* bias, ThreadPool& pool) {
    const std::size_t K = w.cols(), N = w.rows();
    thread_local std::vector<float> xr, wf;
    xr.resize(L * K);
    for (std::size_t i = 0; i < L * K; ++i) xr[i] = bf16_to_float(float_to_bf16(x[i]));
    const std::size_t block = std::max<std::size_t>(1024, (std::size_t(1) << 20) / std::max<std::size_t>(K, 1));
    wf.resize(std::min(block, N) * K);
    float* const wb = wf.data();  // the caller's buffer, also in the pool's threads
    for (std::size_t j0 = 0; j0 < N; j0 += block) {
        const std::size_t nb = std::min(block, N - j0);
        pool.parallel_for(nb, [&](std::size_t r0, std::size_t r1) {
            for (std::size_t r = r0; r < r1; ++r)
                for (std::size_t k = 0; k < K; ++k) wb[r * K + k] = w.at(j0 + r, k);
        });
        gemm<float>(Trans::No, Trans::Yes, L, nb, K, 1.f, xr.data(), K, wb, K, 0.f, y + j0, ldy);
    }
    if (bias)
        for (std::size_t i = 0; i < L; ++i)
            for (std::size_t j = 0; j < N; ++j) y[i * ldy + j] += bias[j];
}

#pragma GCC diagnostic pop

}  // namespace bf16_detail

// y[L, N] = bf16(x)[L, K] · Wᵀ (+ bias[N] on every row when given), x
// [L, K] row-major, y with row stride ldy, through `kernel` (which must be
// available here); work split over `pool` (never from inside its tasks).
inline void bf16_gemm_nt(const float* x, std::size_t L, const Bf16Weights& w, float* y, std::size_t ldy,
                         const float* bias, ThreadPool& pool, Bf16Kernel kernel) {
    if (!bf16_kernel_available(kernel))
        fail("bf16_gemm_nt: the ", bf16_kernel_name(kernel), " kernel is not available on this CPU");
    const std::size_t N = w.rows();
    if (L == 0 || N == 0) return;
    if (w.cols() == 0) {  // no products: y = bias
        for (std::size_t i = 0; i < L; ++i)
            for (std::size_t j = 0; j < N; ++j) y[i * ldy + j] = bias ? bias[j] : 0.f;
        return;
    }
    switch (kernel) {
        case Bf16Kernel::AmxBf16: return bf16_detail::gemm_amx(x, L, w, y, ldy, bias, pool);
        case Bf16Kernel::Avx512Bf16: return bf16_detail::gemm_avx512(x, L, w, y, ldy, bias, pool);
        case Bf16Kernel::Float: return bf16_detail::gemm_float(x, L, w, y, ldy, bias, pool);
    }
}

// The same through the kernel chosen for L rows (bf16_kernel_for).
inline void bf16_gemm_nt(const float* x, std::size_t L, const Bf16Weights& w, float* y, std::size_t ldy,
                         const float* bias = nullptr, ThreadPool& pool = thread_pool()) {
    bf16_gemm_nt(x, L, w, y, ldy, bias, pool, bf16_kernel_for(L));
}

}  // namespace kernels
}  // namespace mplug_owl2
