// Core pieces: GEMM against a naive loop, half-precision conversions, the
// layers (Linear, LayerNorm, RMSNorm, activations) against their formulas,
// the hooks and the recorder.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "mplug_owl2/core/activations.hpp"
#include "mplug_owl2/core/gemm.hpp"
#include "mplug_owl2/core/half.hpp"
#include "mplug_owl2/core/large_pages.hpp"
#include "mplug_owl2/core/layer_norm.hpp"
#include "mplug_owl2/core/linear.hpp"
#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/core/rms_norm.hpp"

using namespace mplug_owl2;

template <class T>
Matrix<T> random_matrix(std::size_t r, std::size_t c, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<double> n(0.0, 1.0);
    Matrix<T> m = Matrix<T>::from_shape({r, c});
    for (auto& v : m) v = T(n(g));
    return m;
}

TEMPLATE_TEST_CASE("gemm equals a naive loop for every transpose", "[gemm]", float, double) {
    using T = TestType;
    const std::size_t M = 7, N = 5, K = 9;
    for (Trans ta : {Trans::No, Trans::Yes})
        for (Trans tb : {Trans::No, Trans::Yes}) {
            auto A = ta == Trans::No ? random_matrix<T>(M, K, 1) : random_matrix<T>(K, M, 1);
            auto B = tb == Trans::No ? random_matrix<T>(K, N, 2) : random_matrix<T>(N, K, 2);
            Matrix<T> C = random_matrix<T>(M, N, 3);
            Matrix<T> expect = C;
            const T alpha = T(0.75), beta = T(-0.5);
            for (std::size_t i = 0; i < M; ++i)
                for (std::size_t j = 0; j < N; ++j) {
                    double s = 0;
                    for (std::size_t k = 0; k < K; ++k) {
                        const double a = ta == Trans::No ? A(i, k) : A(k, i);
                        const double b = tb == Trans::No ? B(k, j) : B(j, k);
                        s += a * b;
                    }
                    expect(i, j) = T(alpha * s + beta * double(expect(i, j)));
                }
            gemm<T>(ta, tb, M, N, K, alpha, A.data(), A.shape(1), B.data(), B.shape(1), beta, C.data(), N);
            const double tol = sizeof(T) == 8 ? 1e-12 : 1e-5;
            for (std::size_t i = 0; i < C.size(); ++i) CHECK(std::abs(double(C.data()[i] - expect.data()[i])) < tol);
        }
}

TEMPLATE_TEST_CASE("matmul_nt is x times W transposed and matmul checks shapes", "[gemm]", float, double) {
    using T = TestType;
    auto x = random_matrix<T>(4, 6, 4);
    auto w = random_matrix<T>(3, 6, 5);
    auto y = matmul_nt(x, w);
    REQUIRE(y.shape(0) == 4);
    REQUIRE(y.shape(1) == 3);
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            double s = 0;
            for (std::size_t k = 0; k < 6; ++k) s += double(x(i, k)) * double(w(j, k));
            CHECK(std::abs(double(y(i, j)) - s) < 1e-5);
        }
    CHECK_THROWS_AS(matmul_nt(x, random_matrix<T>(3, 5, 6)), Error);
    CHECK_THROWS_AS(matmul(x, x), Error);
}

TEST_CASE("fp16 conversion is exact both ways", "[half]") {
    // Every fp16 bit pattern survives fp16 -> float -> fp16 (NaNs stay NaN).
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        const float f = fp16_to_float(static_cast<std::uint16_t>(h));
        if (std::isnan(f)) {
            CHECK(std::isnan(fp16_to_float(float_to_fp16(f))));
            continue;
        }
        REQUIRE(float_to_fp16(f) == h);
    }
    CHECK(fp16_to_float(0x3c00) == 1.0f);
    CHECK(fp16_to_float(0xc000) == -2.0f);
    CHECK(fp16_to_float(0x0001) == std::ldexp(1.0f, -24));
    CHECK(fp16_to_float(0x7bff) == 65504.0f);
    // Round to nearest even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
    CHECK(float_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
    CHECK(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
    CHECK(float_to_fp16(70000.0f) == 0x7c00);
    CHECK(float_to_fp16(std::ldexp(1.0f, -26)) == 0);
}

TEST_CASE("bf16 conversion is exact both ways and rounds to nearest even", "[half]") {
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        const float f = bf16_to_float(static_cast<std::uint16_t>(h));
        if (std::isnan(f)) continue;
        REQUIRE(float_to_bf16(f) == h);
    }
    CHECK(bf16_to_float(0x3f80) == 1.0f);
    CHECK(float_to_bf16(bits_to_float(0x3f808000u)) == 0x3f80);  // tie -> even
    CHECK(float_to_bf16(bits_to_float(0x3f818000u)) == 0x3f82);  // tie -> even (up)
    CHECK(float_to_bf16(bits_to_float(0x3f808001u)) == 0x3f81);
}

TEMPLATE_TEST_CASE("Linear adds the bias to x·Wᵀ and reports under its name", "[layers]", float, double) {
    using T = TestType;
    Linear<T> lin;
    lin.name = "m.fc";
    lin.weight = random_matrix<T>(3, 4, 7);
    lin.bias = Vector<T>({T(0.5), T(-1), T(2)});
    auto x = random_matrix<T>(2, 4, 8);
    Hooks<T> hooks;
    std::string seen;
    hooks.add([&](const std::string& n, Matrix<T>&, const Shape& s) {
        seen = n;
        CHECK(s == Shape{2, 3});
    });
    auto y = lin.forward(x, hooks);
    CHECK(seen == "m.fc");
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            double s = double(lin.bias(j));
            for (std::size_t k = 0; k < 4; ++k) s += double(x(i, k)) * double(lin.weight(j, k));
            CHECK(std::abs(double(y(i, j)) - s) < 1e-5);
        }
    CHECK_THROWS_WITH(lin.forward(random_matrix<T>(2, 5, 1), hooks), Catch::Contains("m.fc input"));
}

TEST_CASE("LayerNorm and RMSNorm follow their formulas", "[layers]") {
    Matrix<double> x = {{1.0, 2.0, 4.0, -1.0}, {0.5, 0.5, 0.5, 0.5}};
    Hooks<double> hooks;
    LayerNorm<double> ln;
    ln.weight = Vector<double>({1.0, 2.0, 0.5, 1.0});
    ln.bias = Vector<double>({0.0, 0.1, 0.0, -0.1});
    ln.eps = 1e-5;
    auto y = ln.forward(x, hooks);
    const double mean = 1.5, var = (0.25 + 0.25 + 6.25 + 6.25) / 4;
    CHECK(y(0, 2) == Approx((4.0 - mean) / std::sqrt(var + 1e-5) * 0.5).epsilon(1e-14));
    CHECK(y(1, 1) == Approx(0.1).margin(1e-14));  // zero variance: only the bias remains
    RMSNorm<double> rms;
    rms.weight = Vector<double>({1.0, 2.0, 0.5, 1.0});
    rms.eps = 1e-6;
    auto z = rms.forward(x, hooks);
    const double ms = (1 + 4 + 16 + 1) / 4.0;
    CHECK(z(0, 1) == Approx(2.0 * 2.0 / std::sqrt(ms + 1e-6)).epsilon(1e-14));
}

TEST_CASE("activations match their definitions", "[layers]") {
    CHECK(activate(Activation::QuickGELU, 1.0) == Approx(1.0 / (1.0 + std::exp(-1.702))).epsilon(1e-15));
    CHECK(activate(Activation::SiLU, 2.0) == Approx(2.0 / (1.0 + std::exp(-2.0))).epsilon(1e-15));
    CHECK(activate(Activation::GELU, 1.0) == Approx(0.8413447460685429).epsilon(1e-14));
    CHECK(activate(Activation::GELUTanh, 1.0) == Approx(0.8411919906082768).epsilon(1e-14));
    CHECK(activate(Activation::ReLU, -3.0) == 0.0);
    CHECK(activation_from_name("swish") == Activation::SiLU);
    CHECK_THROWS_WITH(activation_from_name("tanhshrink"), Catch::Contains("tanhshrink"));
}

TEST_CASE("hooks run in order and can modify in place or be removed", "[hooks]") {
    Hooks<double> hooks;
    CHECK_FALSE(hooks.active());
    Matrix<double> x = {{1.0, 2.0}, {3.0, 4.0}};
    std::vector<int> order;
    double seen_by_second = 0;
    int a = hooks.add([&](const std::string&, Matrix<double>& v, const Shape&) {
        order.push_back(1);
        v(0, 0) = 10.0;
    });
    hooks.add([&](const std::string&, Matrix<double>& v, const Shape&) {
        order.push_back(2);
        seen_by_second = v(0, 0);
    });
    hooks.report("m", x);
    CHECK(order == std::vector<int>{1, 2});
    CHECK(seen_by_second == 10.0);  // the second hook sees the first one's change
    CHECK(x(0, 0) == 10.0);
    hooks.remove(a);
    x(0, 0) = 1.0;
    hooks.report("m", x);
    CHECK(x(0, 0) == 1.0);
    CHECK(seen_by_second == 1.0);
    CHECK_THROWS_WITH(hooks.report("m", x, {3, 2}), Catch::Contains("hook report m"));
}

TEST_CASE("the recorder keeps the first report of each name and writes safetensors", "[recorder]") {
    Hooks<float> hooks;
    Matrix<float> x = {{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
    const std::string path = std::string(MPLUG_OWL2_TEST_TMP) + "/recorder.safetensors";
    {
        Recorder<float> rec(hooks);
        hooks.report("a.b", x, {1, 2, 3});
        Matrix<float> later = x * 2.f;
        hooks.report("a.b", later);
        rec.pause();
        hooks.report("c", x);
        rec.resume();
        CHECK(rec.contains("a.b"));
        CHECK_FALSE(rec.contains("c"));
        CHECK(rec.at("a.b").values[5] == 6.f);
        rec.save(path);
    }
    CHECK_FALSE(hooks.active());  // the recorder removed its hook
    SafetensorsFile f(path);
    const TensorInfo* t = f.find("a.b");
    REQUIRE(t);
    CHECK(t->dtype == DType::F32);
    CHECK(t->shape == Shape{1, 2, 3});
    auto back = read_tensor<float>(f, "a.b");
    CHECK(back(0, 1, 2) == 6.f);
}

TEST_CASE("large buffers are 2 MB aligned, small ones 64-byte aligned, all usable", "[core][memory]") {
    auto address = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
    for (std::size_t bytes : {std::size_t(0), std::size_t(1), std::size_t(4096), kLargePageBytes - 1}) {
        void* p = allocate_large(bytes);
        CHECK(address(p) % 64 == 0);
        std::memset(p, 0x5a, bytes);
        std::free(p);
    }
    for (std::size_t bytes : {kLargePageBytes, 3 * kLargePageBytes + 17}) {
        auto* p = static_cast<unsigned char*>(allocate_large(bytes));
        CHECK(address(p) % kLargePageBytes == 0);
        std::memset(p, 0x5a, bytes);
        CHECK(p[bytes - 1] == 0x5a);
        std::free(p);
    }
    // as a vector's allocator: the elements as written, the storage aligned as above
    std::vector<std::uint8_t, LargePageAllocator<std::uint8_t>> v(kLargePageBytes + 3);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(i * 7);
    CHECK(address(v.data()) % kLargePageBytes == 0);
    CHECK(v[kLargePageBytes + 2] == static_cast<std::uint8_t>((kLargePageBytes + 2) * 7));
    CHECK_THROWS_AS(LargePageAllocator<double>().allocate(std::size_t(-1) / 4), std::bad_alloc);
}
