// The AVX-512 LayerNorm and RMSNorm of float rows (kernels/norms.hpp)
// against the plain loops, for row widths that cut the kernels' 64- and
// 16-value steps anywhere, and rows far from zero mean.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "mplug_owl2/core/layer_norm.hpp"
#include "mplug_owl2/core/rms_norm.hpp"

using namespace mplug_owl2;

namespace {

Matrix<float> randn(std::size_t rows, std::size_t cols, unsigned seed, float mean, float sd) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(mean, sd);
    Matrix<float> m = Matrix<float>::from_shape({rows, cols});
    for (auto& v : m) v = d(g);
    return m;
}

Vector<float> randv(std::size_t n, unsigned seed, float mean) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(mean, 0.2f);
    Vector<float> v = Vector<float>::from_shape({n});
    for (auto& x : v) x = d(g);
    return v;
}

double max_abs_diff(const Matrix<float>& a, const Matrix<float>& b) {
    REQUIRE(a.shape() == b.shape());
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
    return worst;
}

}  // namespace

TEST_CASE("the fast LayerNorm and RMSNorm equal the plain loops", "[kernels][norms]") {
    for (std::size_t D : {1, 15, 16, 17, 63, 64, 65, 100, 1024, 4096})
        for (std::size_t L : {1, 3, 130})
            for (float mean : {0.f, 50.f}) {
                INFO("D " << D << " L " << L << " mean " << mean);
                const Matrix<float> x = randn(L, D, 1, mean, 2.f);
                LayerNorm<float> ln;
                ln.name = "ln";
                ln.weight = randv(D, 2, 1.f);
                ln.bias = randv(D, 3, 0.f);
                ln.eps = 1e-6;
                const Matrix<float> fast = ln.apply(x), plain = ln.apply_plain(x);
                // normalised values of order 1, sums of D floats in another order; a row of
                // one value normalises to 0 either way
                CHECK(max_abs_diff(fast, plain) <= 2e-5 * std::sqrt(double(D)) * (1 + mean / 2));
                RMSNorm<float> rms;
                rms.name = "rms";
                rms.weight = randv(D, 4, 1.f);
                rms.eps = 1e-5;
                CHECK(max_abs_diff(rms.apply(x), rms.apply_plain(x)) <= 1e-5 * std::sqrt(double(D)));
            }
    if (kernels::norms_apply()) {  // the float path takes the kernel: its own sums, not the plain chain
        const Matrix<float> x = randn(4, 4096, 5, 0.f, 1.f);
        RMSNorm<float> rms;
        rms.weight = randv(4096, 6, 1.f);
        const Matrix<float> fast = rms.apply(x);
        Matrix<float> direct = Matrix<float>::from_shape({4, 4096});
        kernels::rms_norm_rows(x.data(), 4, 4096, rms.weight.data(), float(rms.eps), direct.data());
        CHECK(max_abs_diff(fast, direct) == 0.0);
    }
    // widths are checked on both paths
    LayerNorm<float> ln;
    ln.name = "model.vision_model.post_layernorm";
    ln.weight = randv(8, 7, 1.f);
    ln.bias = randv(8, 8, 0.f);
    CHECK_THROWS_WITH(ln.apply(randn(2, 9, 9, 0.f, 1.f)), Catch::Contains("model.vision_model.post_layernorm input"));
}
