// Single-precision matrix products on CPUs with AVX-512, tested against
// cblas_sgemm (the plain path). gemm<float> sends large products here:
// OpenBLAS 0.3.21 does not recognise recent Xeons (e.g. family 6 model 207)
// and falls back to its SSE3 "Prescott" kernels, about a tenth of what
// AVX-512 cores do; with OPENBLAS_CORETYPE=Haswell it runs AVX2 kernels,
// about two thirds (docs/performance.md).
//
// The usual blocked scheme (Goto / BLIS):
//   - op(B) is packed once into panels of NR = 32 columns, KC rows deep
//     (PackedB), shared by all threads;
//   - each task takes MC = 224 rows of op(A) (times a range of B's panels),
//     packs them KC deep into panels of MR = 14 rows (224 KB, kept in L2),
//     so that each panel of B, once in L1, serves 16 tiles; it runs the
//     micro-kernel on every MR × NR tile of C: 28 AVX-512 accumulators, one
//     FMA per broadcast element of A and vector of B.
// Packing reads op(A) and op(B) in any transposition, so the micro-kernel
// is one piece of code; tiles at the edges go through a scratch tile.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

#include "../core/parallel.hpp"

namespace mplug_owl2 {
namespace kernels {

// GCC 12 reports false -Wuninitialized / -Wmaybe-uninitialized warnings
// inside its own AVX-512 intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

inline bool cpu_has_avx512f() {
    static const bool has = __builtin_cpu_supports("avx512f");
    return has;
}

// True when `sgemm` is the faster way to C[M,N] += op(A)·op(B): an AVX-512
// CPU and enough rows and columns to fill the 14 × 32 tiles (OpenBLAS keeps
// the matrix-vector cases of decoding).
inline bool sgemm_is_faster(std::size_t M, std::size_t N, std::size_t K) {
    return cpu_has_avx512f() && M >= 16 && N >= 16 && K >= 1;
}

namespace sgemm_detail {

constexpr std::size_t MR = 14;   // rows of a C tile (accumulators: MR × 2 vectors)
constexpr std::size_t NR = 32;   // columns of a C tile (two 16-float vectors)
constexpr std::size_t KC = 256;  // depth of a packed block: an NR panel of B (32 KB) stays in L1
// Rows of A packed at a time: a 224 × 256 block, 224 KB, stays in L2 (1 MB
// on Zen 5, 2 MB on recent Xeons). 16 tiles per panel of B ran 18% faster
// than 4 on the Zen 5 (bench_kernels, alternated).
constexpr std::size_t MC = 16 * MR;

inline std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// A growable 64-byte aligned float buffer.
class Buffer {
public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { std::free(p_); }
    float* get(std::size_t n) {
        if (n > cap_) {
            std::free(p_);
            const std::size_t bytes = ceil_div(n * sizeof(float), 64) * 64;
            p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!p_) throw std::bad_alloc();
            cap_ = n;
        }
        return p_;
    }

private:
    float* p_ = nullptr;
    std::size_t cap_ = 0;
};

// dst[j·ldd + i] = r[i][j] for j < cols: 16 rows of 16 floats transposed
// in registers (r is overwritten), only lanes in `lanes` stored.
__attribute__((target("avx512f"))) inline void transpose16_store(__m512 r[16], std::size_t cols, float* dst,
                                                                  std::size_t ldd, __mmask16 lanes) {
    __m512 t[16];
    // pairs of rows interleaved, then groups of four: u[4g + c] holds, in its
    // 128-bit lane l, column 4l + c of rows 4g .. 4g + 3
    for (std::size_t g = 0; g < 8; ++g) {
        t[2 * g] = _mm512_unpacklo_ps(r[2 * g], r[2 * g + 1]);
        t[2 * g + 1] = _mm512_unpackhi_ps(r[2 * g], r[2 * g + 1]);
    }
    for (std::size_t g = 0; g < 4; ++g) {
        r[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    // then the 128-bit lanes regrouped: column 4l + c gathers lane l of
    // r[c], r[4 + c], r[8 + c], r[12 + c]
    for (std::size_t c = 0; c < 4; ++c) {
        const __m512 even_lo = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), odd_lo = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
        const __m512 even_hi = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        const __m512 odd_hi = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
        t[c] = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
        t[8 + c] = _mm512_shuffle_f32x4(even_lo, even_hi, 0xDD);
        t[4 + c] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xDD);
    }
    for (std::size_t j = 0; j < cols; ++j) _mm512_mask_storeu_ps(dst + j * ldd, lanes, t[j]);
}

// dst[j·ldd + i] = src[i·lds + j] for i < rows, j < cols (both ≤ 16); lanes
// i ≥ rows are stored as 0, only lanes in `lanes` are stored.
__attribute__((target("avx512f"))) inline void transpose16(const float* src, std::size_t lds, std::size_t rows,
                                                            std::size_t cols, float* dst, std::size_t ldd,
                                                            __mmask16 lanes) {
    const __mmask16 in_cols = static_cast<__mmask16>((1u << cols) - 1);
    __m512 r[16];
    for (std::size_t i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(in_cols, src + i * lds) : _mm512_setzero_ps();
    transpose16_store(r, cols, dst, ldd, lanes);
}

// Packs op(A) rows [0, mc) × columns [0, kc) (A points at op(A)(0, 0)) into
// panels of MR rows, each kc deep: dst[panel][k][r], zero rows past mc.
__attribute__((target("avx512f"))) inline void pack_a(bool ta, std::size_t mc, std::size_t kc, const float* A,
                                                       std::size_t lda, float* dst) {
    for (std::size_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
        const std::size_t m = std::min(MR, mc - i0);
        if (!ta) {  // op(A)(i, k) = A[i·lda + k]: transposed 16 columns at a time
            for (std::size_t k = 0; k < kc; k += 16)
                transpose16(A + i0 * lda + k, lda, m, std::min<std::size_t>(16, kc - k), dst + k * MR, MR,
                            (1u << MR) - 1);
        } else {    // op(A)(i, k) = A[k·lda + i]
            for (std::size_t k = 0; k < kc; ++k) {
                std::copy_n(A + k * lda + i0, m, dst + k * MR);
                std::fill(dst + k * MR + m, dst + (k + 1) * MR, 0.f);
            }
        }
    }
}

// The sums of a tile of M ≤ MR rows: acc0/acc1[r] (columns 0..15, 16..31)
// = Σ_k Ap[k][r] · Bp[k][..], Ap [kc][MR], Bp [kc][NR] (64-byte aligned);
// one FMA per broadcast element of A and vector of B. Inlined, so the
// accumulators stay in registers.
template <std::size_t M>
__attribute__((target("avx512f"), always_inline)) inline void accumulate(std::size_t kc, const float* a,
                                                                         const float* b, __m512 (&acc0)[M],
                                                                         __m512 (&acc1)[M]) {
#pragma GCC unroll 14
    for (std::size_t r = 0; r < M; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (std::size_t k = 0; k < kc; ++k, a += MR, b += NR) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
        for (std::size_t r = 0; r < M; ++r) {
            const __m512 ar = _mm512_set1_ps(a[r]);
            acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
        }
    }
}

// A tile of C: C[MR, NR] = alpha · Ap·Bp + beta · C (+ bias[NR] on every row
// when given), Ap [kc][MR], Bp [kc][NR]; C is not read when beta is 0.
__attribute__((target("avx512f"))) inline void micro_kernel(std::size_t kc, const float* a, const float* b,
                                                             float alpha, float beta, float* c, std::size_t ldc,
                                                             const float* bias = nullptr) {
    // C is read and written once the sums are done: fetched meanwhile
#pragma GCC unroll 14
    for (std::size_t r = 0; r < MR; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
    }
    __m512 acc0[MR], acc1[MR];
    accumulate<MR>(kc, a, b, acc0, acc1);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __m512 bias0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 bias1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 14
    for (std::size_t r = 0; r < MR; ++r) {
        float* cr = c + r * ldc;
        __m512 x0 = _mm512_mul_ps(va, acc0[r]), x1 = _mm512_mul_ps(va, acc1[r]);
        if (bias) {
            x0 = _mm512_add_ps(x0, bias0);
            x1 = _mm512_add_ps(x1, bias1);
        }
        if (beta != 0.f) {
            x0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), x0);
            x1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16), x1);
        }
        _mm512_storeu_ps(cr, x0);
        _mm512_storeu_ps(cr + 16, x1);
    }
}

// A tile of m ≤ MR rows and n ≤ NR columns (bias: n values, or none).
inline void tile(std::size_t m, std::size_t n, std::size_t kc, const float* a, const float* b, float alpha,
                 float beta, float* c, std::size_t ldc, const float* bias = nullptr) {
    if (m == MR && n == NR) return micro_kernel(kc, a, b, alpha, beta, c, ldc, bias);
    alignas(64) float t[MR * NR];
    micro_kernel(kc, a, b, 1.f, 0.f, t, NR);
    for (std::size_t r = 0; r < m; ++r)
        for (std::size_t j = 0; j < n; ++j) {
            float& x = c[r * ldc + j];
            float v = alpha * t[r * NR + j];
            if (bias) v += bias[j];
            x = beta == 0.f ? v : v + beta * x;
        }
}

}  // namespace sgemm_detail

// op(B) [K, N] in the micro-kernel's layout: for each block of KC rows, the
// panels of NR columns one after the other, each [kc][NR], zero columns past N.
class PackedB {
public:
    std::size_t rows() const { return K_; }
    std::size_t cols() const { return N_; }
    std::size_t panels() const { return sgemm_detail::ceil_div(N_, sgemm_detail::NR); }

    // Packs op(B) (B [K, N], or [N, K] when trans); the panels are split over
    // `pool` when given.
    void pack(bool trans, std::size_t K, std::size_t N, const float* B, std::size_t ldb, ThreadPool* pool = nullptr) {
        K_ = K;
        N_ = N;
        data_ = buf_.get(K * panels() * sgemm_detail::NR);
        auto run = [&](std::size_t j0, std::size_t j1) {
            for (std::size_t j = j0; j < j1; ++j) pack_panel(trans, j, B, ldb);
        };
        if (pool)
            pool->parallel_for(panels(), run);
        else
            run(0, panels());
    }

    // Panel j of the block starting at row k0 ([kc][NR]).
    const float* panel(std::size_t k0, std::size_t j) const {
        const std::size_t kc = std::min(sgemm_detail::KC, K_ - k0);
        return data_ + k0 * panels() * sgemm_detail::NR + j * kc * sgemm_detail::NR;
    }

private:
    __attribute__((target("avx512f"))) void pack_panel(bool trans, std::size_t j, const float* B, std::size_t ldb) {
        using namespace sgemm_detail;
        const std::size_t j0 = j * NR, n = std::min(NR, N_ - j0);
        for (std::size_t k0 = 0; k0 < K_; k0 += KC) {
            const std::size_t kc = std::min(KC, K_ - k0);
            float* dst = const_cast<float*>(panel(k0, j));
            if (!trans) {  // op(B)(k, j) = B[k·ldb + j]
                for (std::size_t k = 0; k < kc; ++k) {
                    std::copy_n(B + (k0 + k) * ldb + j0, n, dst + k * NR);
                    std::fill(dst + k * NR + n, dst + (k + 1) * NR, 0.f);
                }
            } else {       // op(B)(k, j) = B[j·ldb + k]: transposed 16 × 16 at a time
                for (std::size_t c = 0; c < NR; c += 16)
                    for (std::size_t k = 0; k < kc; k += 16)
                        transpose16(B + (j0 + c) * ldb + k0 + k, ldb, n > c ? std::min<std::size_t>(16, n - c) : 0,
                                    std::min<std::size_t>(16, kc - k), dst + k * NR + c, NR, 0xFFFF);
            }
        }
    }

    std::size_t K_ = 0, N_ = 0;
    sgemm_detail::Buffer buf_;
    float* data_ = nullptr;
};

// C[M, columns of panels [p0, p1)] = alpha · op(A)·op(B) + beta · C (+ bias[N]
// on every row when given) on the calling thread; A is [M, K] (or [K, M]
// when ta), B packed.
inline void gemm_packed(bool ta, std::size_t M, float alpha, const float* A, std::size_t lda, const PackedB& b,
                        std::size_t p0, std::size_t p1, float beta, float* C, std::size_t ldc,
                        const float* bias = nullptr) {
    using namespace sgemm_detail;
    const std::size_t K = b.rows(), N = b.cols();
    if (K == 0) {  // no products: C = beta · C (+ bias)
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = p0 * NR; j < std::min(N, p1 * NR); ++j) {
                float& x = C[i * ldc + j];
                x = (beta == 0.f ? 0.f : beta * x) + (bias ? bias[j] : 0.f);
            }
        return;
    }
    thread_local Buffer a_buf;
    float* ap = a_buf.get(MC * KC);
    for (std::size_t i0 = 0; i0 < M; i0 += MC) {
        const std::size_t mc = std::min(MC, M - i0);
        for (std::size_t k0 = 0; k0 < K; k0 += KC) {
            const std::size_t kc = std::min(KC, K - k0);
            pack_a(ta, mc, kc, ta ? A + k0 * lda + i0 : A + i0 * lda + k0, lda, ap);
            const float beta_k = k0 == 0 ? beta : 1.f;  // later blocks add to the first
            for (std::size_t j = p0; j < p1; ++j) {
                const float* bp = b.panel(k0, j);
                const std::size_t n = std::min(NR, N - j * NR);
                const float* bias_k = bias && k0 == 0 ? bias + j * NR : nullptr;  // added once
                for (std::size_t r = 0; r < mc; r += MR)
                    tile(std::min(MR, mc - r), n, kc, ap + r * kc, bp, alpha, beta_k,
                         C + (i0 + r) * ldc + j * NR, ldc, bias_k);
            }
        }
    }
}

// C[M, N] = alpha · op(A)·op(B) + beta · C, row-major, as cblas_sgemm, plus
// bias[N] on every row when given (a Linear's bias, added as the tiles are
// stored); work split over `pool` when given (never call it with the pool
// from inside the pool's own tasks). Needs cpu_has_avx512f().
inline void sgemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                  std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc,
                  ThreadPool* pool = nullptr, const float* bias = nullptr) {
    using namespace sgemm_detail;
    if (M == 0 || N == 0) return;
    thread_local PackedB packed_here;
    PackedB& packed = packed_here;  // the caller's, also in the pool's threads
    packed.pack(tb, K, N, B, ldb, pool);

    // Tasks: blocks of MC rows × ranges of panels, enough of them for every
    // thread to stay busy when another process takes a core for a while.
    const std::size_t threads = pool ? pool->size() : 1, panels = packed.panels();
    const std::size_t row_blocks = ceil_div(M, MC);
    const std::size_t col_ranges = std::min(panels, ceil_div(4 * threads, row_blocks));
    const std::size_t tasks = row_blocks * col_ranges;
    std::atomic<std::size_t> next{0};
    auto run = [&](std::size_t, std::size_t) {
        for (std::size_t t; (t = next.fetch_add(1)) < tasks;) {
            const std::size_t i0 = (t / col_ranges) * MC, c = t % col_ranges;
            gemm_packed(ta, std::min(MC, M - i0), alpha, ta ? A + i0 : A + i0 * lda, lda, packed,
                        panels * c / col_ranges, panels * (c + 1) / col_ranges, beta, C + i0 * ldc, ldc, bias);
        }
    };
    if (pool && threads > 1 && tasks > 1)
        pool->parallel_for(threads, run);
    else
        run(0, 1);
}

#pragma GCC diagnostic pop

}  // namespace kernels
}  // namespace mplug_owl2
