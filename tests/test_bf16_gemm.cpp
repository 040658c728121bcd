// The bf16 products (kernels/bf16_gemm.hpp) against a plain loop over the
// same bf16-rounded operands, and their weight packing against the plain
// scalar packing.
//
// The loop adds, per element of y, over the pairs of columns of K in order,
// the odd column's product and then the even one's to one float sum, the
// bias last: vdpbf16ps's order, so the AVX512-BF16 kernel must match it bit
// for bit. AMX and the float path add the same products in other orders.
// Every product of two bf16 values is exact in float, so both sides are
// float sums of the same K exact terms p_k, each partial sum rounded once:
// each is within K·u·Σ|p_k| of the exact sum (u = 2^-24 for rounding to
// nearest; 2^-23 is allowed for the kernel, whose hardware may round
// otherwise), and the bias adds one rounding of the result on each side.
// Their difference is within K·(2^-23 + 2^-24)·Σ|p_k| + 2^-22·|y|.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mplug_owl2/kernels/bf16_gemm.hpp"

using namespace mplug_owl2;
using kernels::Bf16Kernel;

namespace {

std::vector<float> randn(std::size_t n, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.f, 1.f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

// Every 7th value moved to halfway between two bf16 values (its low 16 bits
// 0x8000), where rounding to nearest even decides.
std::vector<float> with_ties(std::vector<float> v) {
    for (std::size_t i = 0; i < v.size(); i += 7) v[i] = bits_to_float((float_to_bits(v[i]) & 0xffff0000u) | 0x8000u);
    return v;
}

float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

// W [N, K] in one storage dtype, and the bf16 values the product must use.
struct Weights {
    std::vector<float> f32;  // the float values (or the ones the halves were made from)
    HalfMatrix half;         // when stored in fp16 or bf16
    std::vector<float> bf16; // each element as the product sees it
    kernels::Bf16Weights pack(bool simd = true) const {
        return half.empty() ? kernels::Bf16Weights::pack(f32.data(), bf16.size() / cols, cols, thread_pool(), simd)
                            : kernels::Bf16Weights::pack(half, thread_pool(), simd);
    }
    std::size_t cols;
};

// Values where conversions go wrong: NaN, signed zeros, infinity, a float
// that rounds past bf16's largest value, fp16 and float subnormals, a value
// past fp16's range.
const float kSpecials[] = {std::numeric_limits<float>::quiet_NaN(), 0.f, -0.f,
                           -std::numeric_limits<float>::infinity(), 3.4e38f, 1e-6f, -3e-5f, 1e-41f, 7e4f};

// dtype: "f32", "bf16" or "fp16"; `specials`: kSpecials spread over W.
Weights make_weights(const std::string& dtype, std::size_t N, std::size_t K, unsigned seed, bool specials = false) {
    Weights w;
    w.cols = K;
    w.f32 = with_ties(randn(N * K, seed));
    if (specials)
        for (std::size_t i = 0; i < N * K; i += 5) w.f32[i] = kSpecials[i / 5 % (sizeof kSpecials / sizeof(float))];
    w.bf16.resize(N * K);
    if (dtype == "f32") {
        for (std::size_t i = 0; i < N * K; ++i) w.bf16[i] = round_bf16(w.f32[i]);
        return w;
    }
    w.half = HalfMatrix::from_float(w.f32.data(), N, K, dtype == "bf16" ? DType::BF16 : DType::F16);
    for (std::size_t i = 0; i < N * K; ++i) {
        std::uint16_t h;
        std::memcpy(&h, w.half.data + 2 * i, 2);
        w.bf16[i] = dtype == "bf16" ? bf16_to_float(h) : round_bf16(fp16_to_float(h));
    }
    return w;
}

// The plain loop in vdpbf16ps's order (see the top of the file), y [L, N]
// row stride N; `bound` gets each element's allowed difference for kernels
// that sum in another order.
std::vector<float> paired_loop(const std::vector<float>& x, std::size_t L, const Weights& w, std::size_t N,
                               const float* bias, std::vector<float>& bound) {
    const std::size_t K = w.cols;
    std::vector<float> y(L * N);
    bound.assign(L * N, 0.f);
    for (std::size_t i = 0; i < L; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            float s = 0.f;
            double magnitude = 0;
            for (std::size_t k = 0; k < K; k += 2) {
                const float even = round_bf16(x[i * K + k]) * w.bf16[j * K + k];
                const float odd = k + 1 < K ? round_bf16(x[i * K + k + 1]) * w.bf16[j * K + k + 1] : 0.f;
                s += odd;
                s += even;
                magnitude += std::fabs(double(even)) + std::fabs(double(odd));
            }
            if (bias) s += bias[j];
            y[i * N + j] = s;
            bound[i * N + j] = float(double(K) * (0x1p-23 + 0x1p-24) * magnitude + 0x1p-22 * std::fabs(double(s)));
        }
    return y;
}

struct Dims {
    std::size_t L, N, K;
};

// Odd shapes: rows 1 to 600 (several chunks of rows), columns not whole
// panels or blocks, K odd, below one tile's depth, past one slice.
const Dims kShapes[] = {{1, 1, 1},     {1, 33, 7},    {3, 17, 31},   {8, 64, 33},    {9, 65, 32},
                         {14, 32, 256}, {15, 100, 257}, {29, 130, 513}, {600, 70, 301}, {1, 130, 1000}};

// Runs `kernel` over every shape, dtype and bias on `pool`; `exact`: bit
// for bit, otherwise within the bound. y has a row stride past N, whose
// margin must stay untouched.
void check_kernel(Bf16Kernel kernel, bool exact, ThreadPool& pool = thread_pool()) {
    for (const Dims& s : kShapes)
        for (const char* dtype : {"f32", "bf16", "fp16"})
            for (bool with_bias : {false, true}) {
                CAPTURE(s.L, s.N, s.K, dtype, with_bias);
                const std::vector<float> x = with_ties(randn(s.L * s.K, 11));
                const Weights w = make_weights(dtype, s.N, s.K, 12);
                const std::vector<float> bias = randn(s.N, 13);
                const float* b = with_bias ? bias.data() : nullptr;
                std::vector<float> bound;
                const std::vector<float> ref = paired_loop(x, s.L, w, s.N, b, bound);
                const kernels::Bf16Weights packed = w.pack();
                const std::size_t ldy = s.N + 3;
                std::vector<float> y(s.L * ldy, -7.f);
                kernels::bf16_gemm_nt(x.data(), s.L, packed, y.data(), ldy, b, pool, kernel);
                std::size_t mismatches = 0, margin_changed = 0;
                for (std::size_t i = 0; i < s.L; ++i) {
                    for (std::size_t j = 0; j < s.N; ++j) {
                        const float got = y[i * ldy + j], want = ref[i * s.N + j];
                        const bool ok = exact ? float_to_bits(got) == float_to_bits(want)
                                              : std::fabs(got - want) <= bound[i * s.N + j];
                        if (!ok && mismatches++ == 0) UNSCOPED_INFO("first mismatch at " << i << "," << j << ": " << got << " vs " << want);
                    }
                    for (std::size_t j = s.N; j < ldy; ++j) margin_changed += y[i * ldy + j] != -7.f;
                }
                REQUIRE(mismatches == 0);
                REQUIRE(margin_changed == 0);
            }
}

}  // namespace

TEST_CASE("bf16 weight packing: the AVX-512 packing equals the plain one for every source dtype", "[kernels][bf16]") {
    for (const char* dtype : {"f32", "bf16", "fp16"})
        for (const Dims& s : {Dims{0, 1, 1}, Dims{0, 33, 7}, Dims{0, 65, 257}, Dims{0, 130, 513}, Dims{0, 3, 2}}) {
            CAPTURE(dtype, s.N, s.K);
            const Weights w = make_weights(dtype, s.N, s.K, 5, true);
            const kernels::Bf16Weights simd = w.pack(true), plain = w.pack(false);
            REQUIRE(simd.rows() == s.N);
            REQUIRE(simd.cols() == s.K);
            REQUIRE(simd.padded_cols() % 32 == 0);
            REQUIRE(simd.size() == plain.size());
            REQUIRE(std::memcmp(simd.data(), plain.data(), 2 * simd.size()) == 0);
            std::size_t wrong = 0;
            for (std::size_t j = 0; j < s.N; ++j)
                for (std::size_t k = 0; k < s.K; ++k)
                    wrong += float_to_bits(plain.at(j, k)) != float_to_bits(w.bf16[j * s.K + k]);
            REQUIRE(wrong == 0);
            REQUIRE(std::isnan(plain.at(0, 0)));
        }
}

TEST_CASE("bf16_gemm_nt with vdpbf16ps equals the paired loop bit for bit", "[kernels][bf16]") {
    if (!kernels::cpu_has_avx512_bf16()) {
        WARN("skipped: this CPU has no AVX512-BF16; checking that the products fall back to float");
        REQUIRE(kernels::bf16_kernel_for(1) == Bf16Kernel::Float);
        return;
    }
    check_kernel(Bf16Kernel::Avx512Bf16, true);
    ThreadPool one(1), three(3);  // fewer and more threads than tasks of some shapes
    check_kernel(Bf16Kernel::Avx512Bf16, true, one);
    check_kernel(Bf16Kernel::Avx512Bf16, true, three);
}

TEST_CASE("bf16_gemm_nt on the float path is within the bound of float summation", "[kernels][bf16]") {
    check_kernel(Bf16Kernel::Float, false);
}

TEST_CASE("bf16_gemm_nt with AMX tiles is within the bound of float summation", "[kernels][bf16]") {
    if (!kernels::bf16_kernel_available(Bf16Kernel::AmxBf16)) {
        WARN("skipped: " << (kernels::cpu_has_amx_bf16() ? "Linux refused the AMX tile state"
                                                         : "this CPU has no AMX-BF16")
                         << "; checking that the products fall back to "
                         << kernels::bf16_kernel_name(kernels::bf16_kernel_for(600)));
        REQUIRE(kernels::bf16_kernel_for(600) ==
                (kernels::cpu_has_avx512_bf16() ? Bf16Kernel::Avx512Bf16 : Bf16Kernel::Float));
        return;
    }
    REQUIRE(kernels::bf16_kernel_for(600) == Bf16Kernel::AmxBf16);
    check_kernel(Bf16Kernel::AmxBf16, false);
}

TEST_CASE("bf16_gemm_nt refuses a kernel this CPU lacks and dispatches to one it has", "[kernels][bf16]") {
    const Weights w = make_weights("f32", 4, 8, 1);
    const kernels::Bf16Weights packed = w.pack();
    const std::vector<float> x = randn(2 * 8, 2);
    std::vector<float> y(2 * 4);
    for (Bf16Kernel k : {Bf16Kernel::AmxBf16, Bf16Kernel::Avx512Bf16}) {
        if (kernels::bf16_kernel_available(k)) continue;
        REQUIRE_THROWS_WITH(kernels::bf16_gemm_nt(x.data(), 2, packed, y.data(), 4, nullptr, thread_pool(), k),
                            Catch::Contains(kernels::bf16_kernel_name(k)) && Catch::Contains("not available"));
    }
    for (std::size_t L : {1, 8, 9, 600}) REQUIRE(kernels::bf16_kernel_available(kernels::bf16_kernel_for(L)));
    REQUIRE(kernels::bf16_kernel_for(1) != Bf16Kernel::AmxBf16);  // a tile's 16 rows for one: AVX-512 or float
}
