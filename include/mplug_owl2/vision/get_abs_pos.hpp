// get_abs_pos of visual_encoder.py: without a CLS token the vision encoder
// keeps a 16×16 table of position embeddings ([256, D]) and resizes it to the
// g×g patch grid with F.interpolate(mode="bicubic", align_corners=False) —
// always in float32 (`abs_pos.float()`), then cast back, so a float64 run
// carries float32 rounding here. Matching that run to 1e-9 therefore needs
// torch's own float arithmetic, reproduced below as the CPU kernel of torch
// 1.13 computes it (cpu_upsample_generic with HelperInterpCubic, the AVX2
// build, whose compiler fuses some multiply-adds). Per output index o of a
// dimension resized from `in` to `out`:
//   - scale = float(in) / float(out);
//   - real = scale · (o + 0.5) − 0.5, exact (in double);
//   - i = ⌊float(real)⌋, t = float(real − i) (no clamping: t may be a hair
//     below 0 when real rounds up to an integer);
//   - taps i−1 .. i+2, clamped to [0, in−1], weights (Keys' cubic, A = −0.75)
//     c2(t+1), c1(t), c1(1−t), c2(2−t) with 1−t rounded to float first;
//   - c1(x) = ((A+2)x − (A+3))·x·x + 1 and c2(x) = ((Ax − 5A)x + 8A)·x − 4A,
//     the inner multiply-adds fused, the last product and sum not;
//   - a 4-tap sum w0·v0 + w1·v1 + w2·v2 + w3·v3 as fma(v3, w3, fma(v2, w2,
//     fma(v0, w0, v1·w1))), first along x for each of the 4 rows, then along y.
// tests/fixtures/make_bicubic.py checks this against torch.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/tensor.hpp"

namespace mplug_owl2 {

namespace bicubic_detail {

// a·b rounded to float by itself. Written through double (exact for float
// operands) so that no compiler fuses it with the following add: the kernel
// rounds these products.
inline float mul(float a, float b) { return static_cast<float>(double(a) * double(b)); }

// ((A+2)x − (A+3))·x·x + 1 with A = −0.75
inline float c1(float x) {
    const float u = std::fma(1.25f, x, -2.25f);
    return mul(mul(u, x), x) + 1.0f;
}

// ((Ax − 5A)x + 8A)·x − 4A with A = −0.75
inline float c2(float x) {
    const float u = std::fma(-0.75f, x, 3.75f);
    const float v = std::fma(u, x, -6.0f);
    return mul(v, x) + 3.0f;
}

// w0·v0 + w1·v1 + w2·v2 + w3·v3 in the kernel's order.
inline float sum4(const std::array<float, 4>& v, const std::array<float, 4>& w) {
    return std::fma(v[3], w[3], std::fma(v[2], w[2], std::fma(v[0], w[0], mul(v[1], w[1]))));
}

// The four source indices and weights of one output index.
struct Taps {
    std::array<std::size_t, 4> index;
    std::array<float, 4> weight;
};

inline std::vector<Taps> taps(std::size_t in, std::size_t out) {
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    std::vector<Taps> result(out);
    for (std::size_t o = 0; o < out; ++o) {
        const double real = double(scale) * (double(o) + 0.5) - 0.5;
        const long i = static_cast<long>(std::floor(static_cast<float>(real)));
        const float t = static_cast<float>(real - double(i));
        const float t1 = static_cast<float>(1.0 - double(t));
        Taps& tp = result[o];
        tp.weight = {c2(static_cast<float>(double(t) + 1.0)), c1(t), c1(t1), c2(static_cast<float>(double(t1) + 1.0))};
        for (long j = 0; j < 4; ++j)
            tp.index[j] = static_cast<std::size_t>(std::min(std::max(i - 1 + j, 0L), static_cast<long>(in) - 1));
    }
    return result;
}

}  // namespace bicubic_detail

// F.interpolate(x, size=(out, out), mode="bicubic", align_corners=False) on
// a float32 grid: src [in·in, C] (row y·in + x, one column per channel) ->
// [out·out, C].
inline Matrix<float> upsample_bicubic2d(const Matrix<float>& src, std::size_t in, std::size_t out) {
    if (src.shape(0) != in * in)
        fail("upsample_bicubic2d: expected ", in * in, " rows for a ", in, "x", in, " grid, found ", src.shape(0));
    const std::size_t C = src.shape(1);
    const auto taps = bicubic_detail::taps(in, out);
    Matrix<float> dst = Matrix<float>::from_shape({out * out, C});
    for (std::size_t oy = 0; oy < out; ++oy)
        for (std::size_t ox = 0; ox < out; ++ox)
            for (std::size_t c = 0; c < C; ++c) {
                const auto& ty = taps[oy];
                const auto& tx = taps[ox];
                std::array<float, 4> rows;  // each source row interpolated along x
                for (std::size_t a = 0; a < 4; ++a) {
                    const std::size_t r = ty.index[a] * in;
                    rows[a] = bicubic_detail::sum4(
                        {src(r + tx.index[0], c), src(r + tx.index[1], c), src(r + tx.index[2], c),
                         src(r + tx.index[3], c)},
                        tx.weight);
                }
                dst(oy * out + ox, c) = bicubic_detail::sum4(rows, ty.weight);  // then along y
            }
    return dst;
}

// abs_pos [L, C] (a square grid, L = s²) for `tgt_len` = t² positions:
// unchanged when s == t, else resized in float32 to [t², C].
template <class T>
Matrix<T> get_abs_pos(const Matrix<T>& abs_pos, std::size_t tgt_len) {
    // 1. the grid sides, truncated as int(math.sqrt(n))
    const auto src_size = static_cast<std::size_t>(std::sqrt(double(abs_pos.shape(0))));
    const auto tgt_size = static_cast<std::size_t>(std::sqrt(double(tgt_len)));
    if (src_size == tgt_size) return abs_pos;
    if (src_size * src_size != abs_pos.shape(0))
        fail("get_abs_pos: the position table has ", abs_pos.shape(0), " rows, not a square grid");
    // 2. bicubic resize on float32, then back to T
    const Matrix<float> f = xt::cast<float>(abs_pos);
    return xt::cast<T>(upsample_bicubic2d(f, src_size, tgt_size));
}

}  // namespace mplug_owl2
