// PIL's Image.resize(size, Image.BICUBIC) on an RGB image, bit for bit
// (Pillow's libImaging/Resample.c; checked against Pillow 9.4):
// - a separable convolution with the bicubic kernel, a = -0.5: first the
//   horizontal pass, over only the input rows the vertical pass will read,
//   then the vertical pass; a pass whose size does not change is skipped;
// - when shrinking, the kernel's support (2) widens by the scale factor
//   (antialiasing);
// - each output pixel's weights are normalised to sum 1 in double, then
//   rounded to fixed point with 22 fraction bits (32 - 8 - 2), and the sum
//   of weight x 8-bit sample, plus one half, is shifted back and clamped to
//   0..255.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../io/rgb_image.hpp"

namespace mplug_owl2 {
namespace resample_detail {

constexpr int kPrecisionBits = 32 - 8 - 2;

// Pillow rounds every floating-point operation separately; a fused
// multiply-add, which compilers may emit when the target has FMA, would move
// a weight by one unit in the last place and an output byte by one step.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

inline double bicubic_kernel(double x) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// The weights of one pass: output i reads `count[i]` inputs starting at
// `first[i]`, with fixed-point weights weights[i * ksize ...].
struct Taps {
    int ksize = 0;
    std::vector<int> first, count;
    std::vector<std::int32_t> weights;
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the whole input
// range (box = (0, in_size)).
inline Taps precompute_taps(int in_size, int out_size) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    const double support_1 = 2.0;                      // bicubic support at scale 1
    const double scale = double(in_size) / out_size;   // input pixels per output pixel
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = support_1 * filterscale;
    Taps t;
    t.ksize = int(std::ceil(support)) * 2 + 1;
    t.first.resize(out_size);
    t.count.resize(out_size);
    t.weights.assign(std::size_t(out_size) * t.ksize, 0);
    std::vector<double> k(t.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        // 1. Input range: centre ± support, each end rounded by +0.5 and truncation.
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = int(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = int(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        // 2. Kernel at each input pixel's centre, normalised to sum 1.
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            const double w = bicubic_kernel((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        // 3. Fixed point, rounded half away from zero.
        for (int x = 0; x < xmax; ++x) {
            const double w = ww != 0.0 ? k[x] / ww : k[x];
            t.weights[std::size_t(xx) * t.ksize + x] =
                w < 0 ? int(-0.5 + w * (1 << kPrecisionBits)) : int(0.5 + w * (1 << kPrecisionBits));
        }
        t.first[xx] = xmin;
        t.count[xx] = xmax;
    }
    return t;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// Back from fixed point (the sum started at one half): shift and clamp.
inline std::uint8_t clip8(std::int32_t ss) {
    if (ss < 0) return 0;
    const std::int32_t v = ss >> kPrecisionBits;
    return static_cast<std::uint8_t>(v > 255 ? 255 : v);
}

}  // namespace resample_detail

inline RgbImage resize_bicubic(const RgbImage& img, std::size_t width, std::size_t height) {
    using namespace resample_detail;
    constexpr std::size_t kMaxSide = 1u << 24;
    if (img.width == 0 || img.height == 0 || img.pixels.size() != img.width * img.height * 3)
        fail("resize_bicubic: input image of ", img.width, "x", img.height, " with ", img.pixels.size(),
             " bytes is empty or inconsistent");
    if (width == 0 || height == 0 || width > kMaxSide || height > kMaxSide || img.width > kMaxSide ||
        img.height > kMaxSide)
        fail("resize_bicubic: cannot resize ", img.width, "x", img.height, " to ", width, "x", height);
    const int in_w = int(img.width), in_h = int(img.height), out_w = int(width), out_h = int(height);
    const std::int32_t half = 1 << (kPrecisionBits - 1);

    // 1. Vertical weights first: they fix which input rows the horizontal
    //    pass has to produce.
    Taps vert = precompute_taps(in_h, out_h);
    const int row_first = vert.first[0];
    const int row_last = vert.first[out_h - 1] + vert.count[out_h - 1];

    // 2. Horizontal pass over rows [row_first, row_last), when the width changes.
    const bool need_horizontal = out_w != in_w;
    const bool need_vertical = out_h != in_h;
    RgbImage temp;
    const RgbImage* src = &img;
    if (need_horizontal) {
        const Taps horiz = precompute_taps(in_w, out_w);
        for (int& f : vert.first) f -= row_first;
        temp.width = width;
        temp.height = std::size_t(row_last - row_first);
        temp.pixels.assign(temp.width * temp.height * 3, 0);
        for (std::size_t yy = 0; yy < temp.height; ++yy) {
            const std::uint8_t* in = img.row(yy + std::size_t(row_first));
            std::uint8_t* out = temp.row(yy);
            for (int xx = 0; xx < out_w; ++xx) {
                const std::int32_t* k = &horiz.weights[std::size_t(xx) * horiz.ksize];
                const std::uint8_t* p = in + std::size_t(horiz.first[xx]) * 3;
                std::int32_t s0 = half, s1 = half, s2 = half;
                for (int x = 0; x < horiz.count[xx]; ++x) {
                    s0 += p[3 * x + 0] * k[x];
                    s1 += p[3 * x + 1] * k[x];
                    s2 += p[3 * x + 2] * k[x];
                }
                out[3 * xx + 0] = clip8(s0);
                out[3 * xx + 1] = clip8(s1);
                out[3 * xx + 2] = clip8(s2);
            }
        }
        src = &temp;
    }
    if (!need_vertical) return need_horizontal ? temp : img;

    // 3. Vertical pass, from the original or the horizontally resized rows.
    RgbImage out;
    out.width = src->width;
    out.height = height;
    out.pixels.assign(out.width * out.height * 3, 0);
    const std::size_t stride = src->width * 3;
    for (int yy = 0; yy < out_h; ++yy) {
        const std::int32_t* k = &vert.weights[std::size_t(yy) * vert.ksize];
        const std::uint8_t* in = src->row(std::size_t(vert.first[yy]));
        std::uint8_t* o = out.row(std::size_t(yy));
        for (std::size_t i = 0; i < stride; ++i) {
            std::int32_t s = half;
            for (int y = 0; y < vert.count[yy]; ++y) s += in[std::size_t(y) * stride + i] * k[y];
            o[i] = clip8(s);
        }
    }
    return out;
}

}  // namespace mplug_owl2
