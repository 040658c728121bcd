// The half-precision weight kernels against the plain path (convert the
// whole matrix to the compute type, then one BLAS GEMM), and the thread pool.
#include <catch2/catch.hpp>

#include <atomic>
#include <random>

#include "mplug_owl2/core/linear.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "mplug_owl2/kernels/half_gemm.hpp"

using namespace mplug_owl2;

namespace {

std::vector<float> randn(std::size_t n, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.f, 1.f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

// The plain path: y = x · W(as T)ᵀ + beta · y.
template <class T>
std::vector<T> plain(const std::vector<T>& x, std::size_t L, const HalfMatrix& w, T beta, std::vector<T> y) {
    std::vector<T> wt(w.rows * w.cols);
    convert_elements<T>(w.dtype, w.data, wt.size(), wt.data());
    gemm<T>(Trans::No, Trans::Yes, L, w.rows, w.cols, T(1), x.data(), w.cols, wt.data(), w.cols, beta, y.data(), w.rows);
    return y;
}

}  // namespace

TEMPLATE_TEST_CASE("gemm_half_nt equals the plain path for every shape regime", "[kernels]", float, double) {
    using T = TestType;
    for (DType dt : {DType::F16, DType::BF16})
        for (std::size_t L : {1, 3, 8, 9, 40})
            for (std::size_t K : {16, 37, 100})
                for (T beta : {T(0), T(1)}) {
                    const std::size_t N = 29;
                    const auto wf = randn(N * K, 1);
                    const HalfMatrix w = HalfMatrix::from_float(wf.data(), N, K, dt);
                    const auto xf = randn(L * K, 2), yf = randn(L * N, 3);
                    std::vector<T> x(xf.begin(), xf.end()), y0(yf.begin(), yf.end());
                    const auto expect = plain<T>(x, L, w, beta, y0);
                    std::vector<T> y = y0;
                    kernels::gemm_half_nt<T>(x.data(), L, w, beta, y.data(), N);
                    INFO("dtype " << dtype_name(dt) << " L " << L << " K " << K << " beta " << beta);
                    double worst = 0;
                    for (std::size_t i = 0; i < y.size(); ++i)
                        worst = std::max(worst, std::abs(double(y[i]) - double(expect[i])));
                    // Same products, summed in another order: float rounding only.
                    CHECK(worst < (sizeof(T) == 8 ? 1e-12 : 1e-4));
                }
}

TEST_CASE("halves_to_float converts exactly like the scalar conversion", "[kernels]") {
    std::vector<std::uint16_t> h(1000);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::uint16_t>(i * 65.537);
    for (DType dt : {DType::F16, DType::BF16}) {
        std::vector<float> fast(h.size()), slow(h.size());
        kernels::halves_to_float(dt, reinterpret_cast<const std::uint8_t*>(h.data()), h.size(), fast.data());
        convert_elements<float>(dt, reinterpret_cast<const std::uint8_t*>(h.data()), h.size(), slow.data());
        for (std::size_t i = 0; i < h.size(); ++i) {
            if (std::isnan(slow[i])) {
                CHECK(std::isnan(fast[i]));
                continue;
            }
            REQUIRE(fast[i] == slow[i]);
        }
    }
}

TEST_CASE("a Linear loaded in half mode keeps bf16 weights and matches the float Linear", "[kernels]") {
    const std::size_t in = 40, out = 24;
    const auto wf = randn(in * out, 4);
    std::vector<std::uint16_t> wb(wf.size());
    std::vector<float> wr(wf.size());  // the bf16-rounded weights as float
    for (std::size_t i = 0; i < wf.size(); ++i) {
        wb[i] = float_to_bf16(wf[i]);
        wr[i] = bf16_to_float(wb[i]);
    }
    const float b[24] = {0.5f};
    SafetensorsWriter sw;
    sw.add("fc.weight", DType::BF16, {out, in}, wb.data());
    sw.add("fc.bias", {out}, b);
    const std::string path = std::string(MPLUG_OWL2_TEST_TMP) + "/half_linear.safetensors";
    sw.write(path);
    auto file = std::make_shared<SafetensorsFile>(path);

    WeightLoader half_loader(*file);
    half_loader.keep_half_precision(file);
    Linear<float> half;
    half.load(half_loader, "fc", in, out, true);
    CHECK(half.weight.size() == 0);
    CHECK(half.weight_half.dtype == DType::BF16);
    CHECK(half.in_features() == in);

    WeightLoader full_loader(*file);
    Linear<float> full;
    full.load(full_loader, "fc", in, out, true);
    REQUIRE(full.weight.size() == in * out);
    for (std::size_t i = 0; i < wr.size(); ++i) REQUIRE(full.weight.data()[i] == wr[i]);

    Hooks<float> hooks;
    for (std::size_t L : {1, 12}) {
        const auto xf = randn(L * in, 5);
        Matrix<float> x = xt::adapt(xf, std::vector<std::size_t>{L, in});
        const auto a = half.forward(x, hooks), e = full.forward(x, hooks);
        for (std::size_t i = 0; i < a.size(); ++i) CHECK(std::abs(a.data()[i] - e.data()[i]) < 1e-4);
    }
    file.reset();  // the Linear keeps the mapping alive
    Matrix<float> x = xt::ones<float>({std::size_t(1), in});
    CHECK(std::isfinite(half.forward(x, hooks)(0, 0)));
}

TEST_CASE("the thread pool covers every index once and rethrows errors", "[kernels]") {
    ThreadPool pool(3);
    CHECK(pool.size() == 3);
    for (std::size_t n : {1, 2, 5, 1000}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) hits[i]++;
        });
        for (auto& h : hits) REQUIRE(h.load() == 1);
    }
    CHECK_THROWS_WITH(pool.parallel_for(10, [](std::size_t b, std::size_t) {
                          if (b > 0) throw Error("chunk failed");
                      }),
                      "chunk failed");
    std::atomic<int> total{0};
    pool.parallel_for(7, [&](std::size_t b, std::size_t e) { total += int(e - b); });
    CHECK(total == 7);  // still usable after an error
}
