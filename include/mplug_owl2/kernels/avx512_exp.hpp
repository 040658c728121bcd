// e^x on 16 floats at once, for the softmax and the sigmoid-based
// activations of the fast kernels: a few ulp from std::exp, far inside the
// float tolerance, and many times faster than calling it per element.
#pragma once

#include <immintrin.h>

namespace mplug_owl2 {
namespace kernels {

// GCC 12 reports false -Wuninitialized / -Wmaybe-uninitialized warnings
// inside its own AVX-512 intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// e^x = 2^n · e^r with n = round(x / ln 2) and r = x − n·ln 2 (ln 2 in two
// parts, so r is exact), |r| ≤ ln 2 / 2, e^r by its Taylor series to r^6
// (truncation below 1e-7). x is clamped to ±88, where float e^x ends.
__attribute__((target("avx512f"))) inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.f)), _mm512_set1_ps(-88.f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
    __m512 p = _mm512_set1_ps(1.f / 720.f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, n);
}

#pragma GCC diagnostic pop

}  // namespace kernels
}  // namespace mplug_owl2
