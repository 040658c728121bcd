// A weight matrix W [N, K] (a Linear's [out, in]) rounded to bf16 and stored
// once in the order the bf16 products read it (kernels/bf16_gemm.hpp), from
// float32, bf16 or fp16 storage:
//   - blocks of 64 rows (kBlockRows), one after the other;
//   - within a block, slices of 256 columns (KC);
//   - within a slice, panels of 32 rows (NR), each [kc/2][32][2]: the pair
//     of columns (k, k + 1) of a row side by side, as vdpbf16ps multiplies
//     them and as an AMX tile of B holds them (16 pairs × 16 rows per tile
//     row of 64 bytes, read with a stride of 128 bytes);
//   - K padded with zeros to a multiple of 32 (an AMX tile's depth), rows
//     past N zero.
// Values: f32 rounded to nearest even (torch's .bfloat16()), bf16 copied,
// fp16 widened exactly and then rounded the same way. The plain scalar
// packing is the reference the AVX-512 one is tested against.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "../core/half.hpp"
#include "../core/half_matrix.hpp"
#include "../core/large_pages.hpp"
#include "../core/parallel.hpp"
#include "gemv.hpp"
#include "sgemm.hpp"

namespace mplug_owl2 {
namespace kernels {

// AVX-512 F, BW and VL: the 16-bit loads and conversions of the packing.
inline bool cpu_has_avx512_vl() {
    static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512vl");
    return has;
}

namespace bf16_detail {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

constexpr std::size_t kBlockRows = 64;  // weight rows a task takes
constexpr std::size_t KC = 256;         // columns of a slice: a 32-row panel is 16 KB
constexpr std::size_t NR = 32;          // weight rows of a panel (columns of y)
constexpr std::size_t kDepthAlign = 32; // K padded to this (one AMX tile of A is 32 bf16 deep)

using sgemm_detail::ceil_div;

inline std::size_t padded_depth(std::size_t K) { return ceil_div(K, kDepthAlign) * kDepthAlign; }

// 16 floats rounded to bf16 as core/half.hpp's float_to_bf16 does (nearest
// even; NaN kept quiet), in the 16 lanes of the result.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m256i round_to_bf16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

// Two halves of 16 bf16 each -> 32 bf16 (lo first).
__attribute__((target("avx512f"))) inline __m512i join(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// The lanes of the first n ≤ 32 of 32 values held in two 16-lane vectors.
inline __mmask16 low_lanes(std::size_t n) { return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1); }
inline __mmask16 high_lanes(std::size_t n) {
    return static_cast<__mmask16>(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0);
}

// n ≤ 32 floats from p rounded to bf16, zeros past n: 16 column pairs.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512i load32_bf16(const float* p, std::size_t n) {
    return join(round_to_bf16(_mm512_maskz_loadu_ps(low_lanes(n), p)),
                round_to_bf16(_mm512_maskz_loadu_ps(high_lanes(n), p + 16)));
}

// The same from n ≤ 32 stored halves (fp16 widened exactly, then rounded; bf16 as stored).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512i load32_bf16(DType dt, const std::uint8_t* p,
                                                                                 std::size_t n) {
    const __mmask32 m = static_cast<__mmask32>(n >= 32 ? 0xFFFFFFFFu : (1u << n) - 1);
    const __m512i h = _mm512_maskz_loadu_epi16(m, p);
    if (dt == DType::BF16) return h;
    return join(round_to_bf16(_mm512_cvtph_ps(_mm512_castsi512_si256(h))),
                round_to_bf16(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1))));
}

// The storage formats of W (and float32 for activations): element (j, k)
// as bf16 (the plain path), and n ≤ 32 elements of row j from column k as
// 16 bf16 pairs, zeros past n (AVX-512).
struct F32Source {
    const float* w;
    std::size_t K;
    std::uint16_t value(std::size_t j, std::size_t k) const { return float_to_bf16(w[j * K + k]); }
    __attribute__((target("avx512f,avx512bw,avx512vl"))) __m512i load32(std::size_t j, std::size_t k,
                                                                        std::size_t n) const {
        return load32_bf16(w + j * K + k, n);
    }
};

struct HalfSource {
    DType dtype;
    const std::uint8_t* w;  // little-endian halves, any alignment
    std::size_t K;
    std::uint16_t value(std::size_t j, std::size_t k) const {
        std::uint16_t h;
        std::memcpy(&h, w + 2 * (j * K + k), 2);
        return dtype == DType::BF16 ? h : float_to_bf16(fp16_to_float(h));
    }
    __attribute__((target("avx512f,avx512bw,avx512vl"))) __m512i load32(std::size_t j, std::size_t k,
                                                                        std::size_t n) const {
        return load32_bf16(dtype, w + 2 * (j * K + k), n);
    }
};

// Rows [i0, i0 + rows) (rows ≤ 16) × columns [k0, k0 + 32) of a source as
// 16 bf16 pairs per row, transposed so that pair p of row i lands at
// dst[p·ldd + i] for the lanes i in `lanes` (rows past `rows` zero, columns
// past the source's K zero).
template <class Source>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void transpose_pairs(const Source& s, std::size_t i0,
                                                                                  std::size_t rows, std::size_t k0,
                                                                                  std::uint32_t* dst, std::size_t ldd,
                                                                                  __mmask16 lanes) {
    const std::size_t n = k0 < s.K ? std::min<std::size_t>(32, s.K - k0) : 0;
    __m512 r[16];
    for (std::size_t i = 0; i < 16; ++i)
        r[i] = i < rows && n > 0 ? _mm512_castsi512_ps(s.load32(i0 + i, k0, n)) : _mm512_setzero_ps();
    sgemm_detail::transpose16_store(r, 16, reinterpret_cast<float*>(dst), ldd, lanes);
}

// The plain path's pair of row j at columns (k, k + 1) (k even), zero past K.
template <class Source>
std::uint32_t pair_at(const Source& s, std::size_t j, std::size_t k) {
    const std::uint32_t lo = k < s.K ? s.value(j, k) : 0, hi = k + 1 < s.K ? s.value(j, k + 1) : 0;
    return lo | hi << 16;
}

#pragma GCC diagnostic pop

}  // namespace bf16_detail

class Bf16Weights {
public:
    static constexpr std::size_t kBlockRows = bf16_detail::kBlockRows;  // 64
    static constexpr std::size_t KC = bf16_detail::KC;                  // 256
    static constexpr std::size_t NR = bf16_detail::NR;                  // 32

    Bf16Weights() = default;

    bool empty() const { return !data_; }
    std::size_t rows() const { return rows_; }             // N
    std::size_t cols() const { return cols_; }             // K
    std::size_t padded_cols() const { return padded_; }    // K rounded up to 32
    std::size_t size() const { return size_; }             // bf16 values stored
    const std::uint16_t* data() const { return data_.get(); }

    // Rows of the block starting at row j0 (a multiple of 64), padded to whole panels.
    std::size_t padded_rows(std::size_t j0) const {
        return bf16_detail::ceil_div(std::min(kBlockRows, rows_ - j0), NR) * NR;
    }
    // Columns of the slice starting at k0 (a multiple of 256): a multiple of 32.
    std::size_t slice_cols(std::size_t k0) const { return std::min(KC, padded_ - k0); }
    // The panels of rows [j0, j0 + 64) × columns [k0, k0 + 256): [panels][kc/2][32][2].
    const std::uint16_t* slice(std::size_t j0, std::size_t k0) const {
        return data_.get() + j0 * padded_ + k0 * padded_rows(j0);
    }

    // Element (j, k) as a float (exact: it is a bf16 value).
    float at(std::size_t j, std::size_t k) const {
        const std::size_t b0 = j / kBlockRows * kBlockRows, c = (j - b0) / NR * NR, k0 = k / KC * KC;
        const std::uint16_t* panel = slice(b0, k0) + c * slice_cols(k0);
        return bf16_to_float(panel[(k - k0) / 2 * 2 * NR + (j - b0 - c) * 2 + k % 2]);
    }

    // W float32 [N, K] row-major, rounded and packed; `simd` false takes the
    // plain scalar packing (the reference of the AVX-512 one).
    static Bf16Weights pack(const float* w, std::size_t N, std::size_t K, ThreadPool& pool = thread_pool(),
                            bool simd = true) {
        return pack_from(bf16_detail::F32Source{w, K}, N, pool, simd);
    }

    // W stored in fp16 or bf16, the same.
    static Bf16Weights pack(const HalfMatrix& w, ThreadPool& pool = thread_pool(), bool simd = true) {
        return pack_from(bf16_detail::HalfSource{w.dtype, w.data, w.cols}, w.rows, pool, simd);
    }

private:
    Bf16Weights(std::size_t N, std::size_t K) : rows_(N), cols_(K), padded_(bf16_detail::padded_depth(K)) {
        for (std::size_t j0 = 0; j0 < N; j0 += kBlockRows) size_ += padded_rows(j0) * padded_;
        const std::size_t bytes = std::max<std::size_t>(bf16_detail::ceil_div(size_ * 2, 64) * 64, 64);
        auto* raw = static_cast<std::uint16_t*>(allocate_large(bytes));  // 2 MB pages where offered
        data_ = std::shared_ptr<std::uint16_t>(raw, std::free);  // shared: copies share the (immutable) weights
    }

    template <class Source>
    static Bf16Weights pack_from(const Source& src, std::size_t N, ThreadPool& pool, bool simd) {
        const std::size_t K = src.K;
        Bf16Weights p(N, K);
        const bool fast = simd && cpu_has_avx512_vl();
        pool.parallel_for(bf16_detail::ceil_div(N, kBlockRows), [&](std::size_t b0, std::size_t b1) {
            for (std::size_t b = b0; b < b1; ++b) {
                const std::size_t j0 = b * kBlockRows, nb = std::min(kBlockRows, N - j0);
                for (std::size_t k0 = 0; k0 < p.padded_; k0 += KC) {
                    const std::size_t kc = p.slice_cols(k0);
                    auto* slice = reinterpret_cast<std::uint32_t*>(const_cast<std::uint16_t*>(p.slice(j0, k0)));
                    for (std::size_t c = 0; c < p.padded_rows(j0); c += NR) {
                        std::uint32_t* panel = slice + c * kc / 2;  // [kc/2][32] pairs
                        const std::size_t n = c < nb ? std::min(NR, nb - c) : 0;
                        if (fast) {
                            for (std::size_t h = 0; h < NR; h += 16)
                                for (std::size_t k = 0; k < kc; k += 32)
                                    bf16_detail::transpose_pairs(src, j0 + c + h, n > h ? std::min<std::size_t>(16, n - h) : 0,
                                                                 k0 + k, panel + k / 2 * NR + h, NR, 0xFFFF);
                        } else {
                            for (std::size_t k = 0; k < kc; k += 2)
                                for (std::size_t i = 0; i < NR; ++i)
                                    panel[k / 2 * NR + i] = i < n ? bf16_detail::pair_at(src, j0 + c + i, k0 + k) : 0;
                        }
                    }
                }
            }
        });
        return p;
    }

    std::size_t rows_ = 0, cols_ = 0, padded_ = 0, size_ = 0;
    std::shared_ptr<std::uint16_t> data_;
};

}  // namespace kernels
}  // namespace mplug_owl2
