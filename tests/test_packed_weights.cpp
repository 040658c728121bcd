// Weights packed once for the fast products (kernels/packed_weights.hpp,
// kernels/packed_gemm.hpp) against the row-major matrix and the plain gemm:
// packing is an exact copy (the AVX-512 transposes equal the scalar copy),
// every product path equals the plain product, and a packed Linear computes
// what the unpacked one does.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "mplug_owl2/core/gemm.hpp"
#include "mplug_owl2/core/linear.hpp"
#include "mplug_owl2/kernels/packed_gemm.hpp"
#include "mplug_owl2/kernels/prompt_gemm.hpp"

using namespace mplug_owl2;
using kernels::PackedWeights;

namespace {

Matrix<float> randn(std::size_t rows, std::size_t cols, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.f, 1.f);
    Matrix<float> m = Matrix<float>::from_shape({rows, cols});
    for (auto& v : m) v = d(g);
    return m;
}

double max_abs_diff(const Matrix<float>& a, const Matrix<float>& b) {
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
    return worst;
}

// Same shape, same values.
template <class A, class B>
bool identical(const A& a, const B& b) {
    return a.shape(0) == b.shape(0) && a.shape(1) == b.shape(1) && std::equal(a.begin(), a.end(), b.begin());
}

struct NK {
    std::size_t N, K;
};

}  // namespace

TEST_CASE("packing keeps every weight in the panel order and unpacks to the same matrix", "[kernels][packed]") {
    ThreadPool pool(3);
    // blocks of 64 rows and panels of 32 cut anywhere, slices of 256 columns cut anywhere
    for (const NK s : {NK{1, 1}, NK{5, 17}, NK{32, 16}, NK{64, 256}, NK{65, 257}, NK{100, 513}, NK{130, 300},
                       NK{200, 40}}) {
        INFO("N " << s.N << " K " << s.K);
        const Matrix<float> w = randn(s.N, s.K, 1);
        const PackedWeights fast = PackedWeights::pack(w.data(), s.N, s.K, pool);
        const PackedWeights plain = PackedWeights::pack(w.data(), s.N, s.K, pool, /*simd=*/false);
        REQUIRE(fast.rows() == s.N);
        REQUIRE(fast.cols() == s.K);
        // every block padded to whole panels of 32 rows
        std::size_t expect_floats = 0;
        for (std::size_t j0 = 0; j0 < s.N; j0 += 64) expect_floats += (std::min<std::size_t>(64, s.N - j0) + 31) / 32 * 32 * s.K;
        REQUIRE(fast.floats() == expect_floats);
        REQUIRE(plain.floats() == expect_floats);
        CHECK(std::equal(fast.slice(0, 0), fast.slice(0, 0) + expect_floats, plain.slice(0, 0)));
        // element (j, k) where the layout says
        for (std::size_t j : {std::size_t(0), s.N / 2, s.N - 1})
            for (std::size_t k : {std::size_t(0), s.K / 3, s.K - 1}) {
                const std::size_t j0 = j / 64 * 64, k0 = k / 256 * 256, kc = std::min<std::size_t>(256, s.K - k0);
                const std::size_t c = (j - j0) / 32 * 32;
                CHECK(fast.slice(j0, k0)[c * kc + (k - k0) * 32 + (j - j0 - c)] == w(j, k));
            }
        // rows past N are zero
        const std::size_t last = (s.N - 1) / 64 * 64, padded = fast.padded_rows(last);
        if (padded > s.N - last) {
            const float* p = fast.slice(last, 0);
            const std::size_t kc = std::min<std::size_t>(256, s.K), c = padded - 32;
            for (std::size_t k = 0; k < kc; ++k)
                for (std::size_t i = s.N - last - c; i < 32; ++i) CHECK(p[c * kc + k * 32 + i] == 0.f);
        }
        Matrix<float> back = Matrix<float>::from_shape({s.N, s.K});
        fast.unpack_rows(0, s.N, back.data());
        CHECK(identical(back, w));
        Matrix<float> part = Matrix<float>::from_shape({std::min<std::size_t>(3, s.N), s.K});
        fast.unpack_rows(s.N - part.shape(0), part.shape(0), part.data());
        CHECK(identical(part, Matrix<float>(xt::view(w, xt::range(s.N - part.shape(0), s.N), xt::all()))));
    }
}

TEST_CASE("the product with packed weights equals the plain product for every number of rows", "[kernels][packed]") {
    ThreadPool pool(3);
    // 1..8 rows: the few-rows kernel; 9..512: the prompt product; 513 and
    // 600: the prompt product 512 rows at a time
    const std::size_t rows[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15, 24, 65, 89, 513, 600};
    for (const NK s : {NK{67, 37}, NK{64, 256}, NK{130, 300}, NK{33, 513}, NK{16, 1}, NK{100, 16}})
        for (std::size_t L : rows) {
            const Matrix<float> x = randn(L, s.K, 2), w = randn(s.N, s.K, 3), bias = randn(1, s.N, 4);
            const PackedWeights p = PackedWeights::pack(w.data(), s.N, s.K, pool);
            const std::size_t ldy = s.N + 3;  // y inside a wider matrix
            const Matrix<float> y0 = randn(L, ldy, 5);
            const double tol = 1e-5 * std::sqrt(double(s.K)) * 10;  // sums of K unit-normal products, other order
            for (float beta : {0.f, 1.f, 0.5f})
                for (bool with_bias : {false, true}) {
                    INFO("L " << L << " N " << s.N << " K " << s.K << " beta " << beta << " bias " << with_bias);
                    const float* b = with_bias ? bias.data() : nullptr;
                    Matrix<float> expect = y0;
                    gemm<float>(Trans::No, Trans::Yes, L, s.N, s.K, 1.f, x.data(), s.K, w.data(), s.K, beta,
                                expect.data(), ldy);
                    if (b)
                        for (std::size_t l = 0; l < L; ++l)
                            for (std::size_t j = 0; j < s.N; ++j) expect(l, j) += bias(0, j);
                    Matrix<float> y = y0;
                    kernels::packed_gemm_nt(x.data(), L, p, beta, y.data(), ldy, pool, b);
                    CHECK(max_abs_diff(y, expect) <= tol);
                    for (std::size_t l = 0; l < L; ++l)  // the columns past N untouched
                        for (std::size_t j = s.N; j < ldy; ++j) CHECK(y(l, j) == y0(l, j));
                    // the plain path of CPUs without AVX-512
                    Matrix<float> yp = y0;
                    kernels::packed_detail::gemm_unpacked(x.data(), L, p, beta, yp.data(), ldy, pool, b);
                    CHECK(max_abs_diff(yp, expect) <= tol);
                    // the prompt product reads the packed slices in the order it packs them itself
                    if (L <= kernels::kPromptMaxRows && kernels::prompt_gemm_applies(L, s.N, s.K)) {
                        Matrix<float> yr = y0;
                        kernels::prompt_gemm_nt(x.data(), L, w.data(), s.N, s.K, beta, yr.data(), ldy, pool, b);
                        CHECK(identical(yr, y));
                    }
                }
        }
}

TEST_CASE("a product with no columns to sum sets y to beta times y plus the bias", "[kernels][packed]") {
    const Matrix<float> w = Matrix<float>::from_shape({5, 0}), x = Matrix<float>::from_shape({3, 0});
    const PackedWeights p = PackedWeights::pack(w.data(), 5, 0);
    const Matrix<float> bias = randn(1, 5, 6), y0 = randn(3, 5, 7);
    Matrix<float> y = y0;
    kernels::packed_gemm_nt(x.data(), 3, p, 0.5f, y.data(), 5, thread_pool(), bias.data());
    for (std::size_t l = 0; l < 3; ++l)
        for (std::size_t j = 0; j < 5; ++j) CHECK(y(l, j) == 0.5f * y0(l, j) + bias(0, j));
}

TEST_CASE("a packed Linear computes what it did before packing", "[kernels][packed][linear]") {
    Linear<float> lin;
    lin.name = "model.layers.0.mlp.up_proj";
    lin.weight = randn(70, 45, 8);
    lin.bias = xt::flatten(randn(1, 70, 9));
    const Matrix<float> original = lin.weight;
    for (std::size_t L : {1, 4, 30}) {
        const Matrix<float> x = randn(L, 45, 10);
        Linear<float> packed = lin;
        REQUIRE(packed.pack());
        CHECK_FALSE(packed.pack());  // once
        CHECK(packed.packed());
        CHECK(packed.weight.size() == 0);
        CHECK(packed.in_features() == 45);
        CHECK(packed.out_features() == 70);
        CHECK(identical(packed.dense_weight(), original));
        Hooks<float> hooks;
        CHECK(max_abs_diff(packed.forward(x, hooks), lin.forward(x, hooks)) <= 1e-5);
    }
    // half-precision and double weights stay as they are
    Linear<float> half;
    half.weight_half = HalfMatrix::from_float(original.data(), 70, 45, DType::BF16);
    CHECK_FALSE(half.pack());
    CHECK(half.dense_weight().shape(0) == 70);
    Linear<double> d;
    d.weight = xt::cast<double>(original);
    CHECK_FALSE(d.pack());
    CHECK(identical(d.dense_weight(), d.weight));
}
