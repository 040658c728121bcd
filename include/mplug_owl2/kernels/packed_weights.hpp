// A float weight matrix W [N, K] (a Linear's [out, in]) stored once in the
// order the fast products read it, so that a prompt's product streams it as
// it is instead of transposing each block at every use (kernels/
// packed_gemm.hpp; on the Zen 5, 89-row products of the decoder ran 20%
// faster, 24-row ones 70%, docs/performance.md):
//   - blocks of 64 rows (kBlockRows), one after the other;
//   - within a block, slices of 256 columns (KC);
//   - within a slice, panels of 32 rows (NR), each [kc][32]: element
//     (j, k) at panel[k - k0][j - j0], rows past N zero.
// A block is thus one contiguous stretch of memory, read front to back by
// whichever thread takes it. Packing and unpacking are exact copies; the
// plain scalar packing is the reference the AVX-512 one is tested against.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "../core/large_pages.hpp"
#include "../core/parallel.hpp"
#include "prompt_gemm.hpp"
#include "sgemm.hpp"

namespace mplug_owl2 {
namespace kernels {

class PackedWeights {
public:
    static constexpr std::size_t kBlockRows = prompt_detail::kBlockRows;  // 64
    static constexpr std::size_t KC = sgemm_detail::KC;                     // 256
    static constexpr std::size_t NR = sgemm_detail::NR;                     // 32

    PackedWeights() = default;

    bool empty() const { return !data_; }
    std::size_t rows() const { return rows_; }  // N
    std::size_t cols() const { return cols_; }  // K
    std::size_t floats() const { return size_; }

    // Rows of the block starting at row j0 (a multiple of 64), padded to whole panels.
    std::size_t padded_rows(std::size_t j0) const {
        return sgemm_detail::ceil_div(std::min(kBlockRows, rows_ - j0), NR) * NR;
    }
    // The panels of rows [j0, j0 + 64) × columns [k0, k0 + kc): [panels][kc][32].
    const float* slice(std::size_t j0, std::size_t k0) const { return data_.get() + j0 * cols_ + k0 * padded_rows(j0); }

    // W [N, K] row-major, packed; `simd` false takes the plain scalar copy
    // (the reference of the AVX-512 transposes).
    static PackedWeights pack(const float* w, std::size_t N, std::size_t K, ThreadPool& pool = thread_pool(),
                              bool simd = true) {
        PackedWeights p(N, K);
        const bool fast = simd && cpu_has_avx512f();
        const std::size_t blocks = sgemm_detail::ceil_div(N, kBlockRows);
        pool.parallel_for(blocks, [&](std::size_t b0, std::size_t b1) {
            for (std::size_t b = b0; b < b1; ++b) {
                const std::size_t j0 = b * kBlockRows, nb = std::min(kBlockRows, N - j0);
                for (std::size_t k0 = 0; k0 < K; k0 += KC) {
                    const std::size_t kc = std::min(KC, K - k0);
                    float* dst = p.data_.get() + j0 * K + k0 * p.padded_rows(j0);
                    for (std::size_t c = 0; c < nb; c += NR) {
                        const std::size_t n = std::min(NR, nb - c);
                        if (fast)
                            prompt_detail::pack_weights(w, K, j0 + c, n, k0, kc, dst + c * kc);
                        else
                            pack_panel_plain(w, K, j0 + c, n, k0, kc, dst + c * kc);
                    }
                }
            }
        });
        return p;
    }

    // Rows [j0, j0 + n) back in row-major order: out [n, K].
    void unpack_rows(std::size_t j0, std::size_t n, float* out) const {
        for (std::size_t j = j0; j < j0 + n; ++j) {
            const std::size_t b0 = j / kBlockRows * kBlockRows, c = (j - b0) / NR * NR, i = j - b0 - c;
            for (std::size_t k0 = 0; k0 < cols_; k0 += KC) {
                const std::size_t kc = std::min(KC, cols_ - k0);
                const float* panel = slice(b0, k0) + c * kc;
                for (std::size_t k = 0; k < kc; ++k) out[(j - j0) * cols_ + k0 + k] = panel[k * NR + i];
            }
        }
    }

private:
    PackedWeights(std::size_t N, std::size_t K) : rows_(N), cols_(K) {
        for (std::size_t j0 = 0; j0 < N; j0 += kBlockRows) size_ += padded_rows(j0) * K;
        const std::size_t bytes = std::max<std::size_t>(sgemm_detail::ceil_div(size_ * sizeof(float), 64) * 64, 64);
        float* raw = static_cast<float*>(allocate_large(bytes));  // 2 MB pages where offered
        data_ = std::shared_ptr<float>(raw, std::free);  // shared: a copied Linear shares its (immutable) weights
    }

    // One panel: rows [j0, j0 + n) × columns [k0, k0 + kc) of w -> dst [kc][32], zeros past n.
    static void pack_panel_plain(const float* w, std::size_t K, std::size_t j0, std::size_t n, std::size_t k0,
                                 std::size_t kc, float* dst) {
        for (std::size_t k = 0; k < kc; ++k)
            for (std::size_t i = 0; i < NR; ++i) dst[k * NR + i] = i < n ? w[(j0 + i) * K + k0 + k] : 0.f;
    }

    std::size_t rows_ = 0, cols_ = 0, size_ = 0;
    std::shared_ptr<float> data_;
};

}  // namespace kernels
}  // namespace mplug_owl2
