// AMX-BF16 tiles for the bf16 products of kernels/bf16_gemm.hpp: the CPU
// check, Linux's permission request, and the tile kernel for one 32 × 32
// block of y.
//
// Linux enables the tiles' 8 KB register state only for processes that ask
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), kernel 5.16+); a
// tile instruction without it faults. The request is made once, on first
// use; when the kernel refuses it (older kernel, a seccomp filter, a
// hypervisor that hides the state) the AMX kernel is reported unavailable
// and the products take AVX512-BF16 or float instead.
//
// The kernel keeps four 16 × 16 float tiles of y (tmm0-3: rows 0-15 and
// 16-31 × columns 0-15 and 16-31) for the whole depth K, and for every 32
// columns of K loads two tiles of x (tmm4-5: 16 rows × 32 bf16, straight
// from x rounded to bf16 in row-major order) and two of the weights (tmm6-7:
// 16 column pairs × 16 weight rows, straight from the packed panel
// [kc/2][32][2] with a stride of 128 bytes), then multiplies the four pairs.
#pragma once

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "bf16_weights.hpp"

namespace mplug_owl2 {
namespace kernels {

// CPUID leaf 7: AMX-BF16 (EDX bit 22) and AMX-TILE (EDX bit 24).
inline bool cpu_has_amx_bf16() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (d >> 22 & 1u) && (d >> 24 & 1u);
}

// True once Linux has granted this process the tile state (asked on the
// first call only); false on CPUs without AMX-BF16 or when refused.
inline bool amx_bf16_permitted() {
    static const bool granted = [] {
        if (!cpu_has_amx_bf16() || !cpu_has_avx512_vl()) return false;  // x is rounded with AVX-512
        constexpr long kArchReqXcompPerm = 0x1023;  // asm/prctl.h
        constexpr long kXfeatureXtiledata = 18;     // the tile data's bit in XCR0
        return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    }();
    return granted;
}

namespace amx_detail {

constexpr std::size_t kRows = 32;  // rows of y a block takes (two tiles)

// The tile configuration (palette 1): every tile 16 rows of 64 bytes.
struct alignas(64) TileConfig {
    std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
    std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

// Loads the configuration into this thread's tile state.
__attribute__((target("amx-tile"))) inline void configure() {
    static const TileConfig config;
    _tile_loadconfig(&config);
}

__attribute__((target("amx-tile"))) inline void release() { _tile_release(); }

// y[rows, n] = xa[32 rows, Kp]·(the panel c of the block at weight row j0)ᵀ
// (+ bias[n]); xa is x rounded to bf16, row-major with stride Kp (= the
// weights' padded K, rows past `rows` zero); rows ≤ 32, n ≤ 32. Needs
// configure() on this thread.
__attribute__((target("amx-tile,amx-bf16"))) inline void block(const std::uint16_t* xa, const Bf16Weights& w,
                                                               std::size_t j0, std::size_t c, std::size_t rows,
                                                               std::size_t n, const float* bias, float* y,
                                                               std::size_t ldy) {
    constexpr std::size_t NR = Bf16Weights::NR;
    const std::size_t Kp = w.padded_cols(), x_stride = 2 * Kp;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (std::size_t k0 = 0; k0 < Kp; k0 += Bf16Weights::KC) {
        const std::size_t kc = w.slice_cols(k0);
        const std::uint16_t* panel = w.slice(j0, k0) + c * kc;
        for (std::size_t k = 0; k < kc; k += 32) {
            _tile_loadd(4, xa + k0 + k, x_stride);
            _tile_loadd(5, xa + 16 * Kp + k0 + k, x_stride);
            _tile_loadd(6, panel + k * NR, 2 * NR * 2);  // pairs k/2 .. k/2 + 15, weight rows 0-15
            _tile_loadd(7, panel + k * NR + 32, 2 * NR * 2);  // ... weight rows 16-31
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    alignas(64) float t[kRows * NR];
    _tile_stored(0, t, NR * 4);
    _tile_stored(1, t + 16, NR * 4);
    _tile_stored(2, t + 16 * NR, NR * 4);
    _tile_stored(3, t + 16 * NR + 16, NR * 4);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < n; ++j) y[r * ldy + j] = t[r * NR + j] + (bias ? bias[j] : 0.f);
}

}  // namespace amx_detail

}  // namespace kernels
}  // namespace mplug_owl2
