// The decoder's fast paths against the plain ones: the causal attention over
// the per-head key/value cache, the products with the weights for the rows of
// decoding and of a prompt (float and half weights), the cache's layout as it
// grows, and the prefill that runs lm_head on the last position only.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "mplug_owl2/core/gemm.hpp"
#include "mplug_owl2/kernels/causal_attention.hpp"
#include "mplug_owl2/kernels/gemv.hpp"
#include "mplug_owl2/kernels/half_gemm.hpp"
#include "mplug_owl2/kernels/weight_gemm.hpp"
#include "mplug_owl2/language/causal_attention.hpp"
#include "mplug_owl2/language/kv_cache.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

template <class T>
Matrix<T> randn(std::size_t rows, std::size_t cols, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<double> d(0.0, 1.0);
    Matrix<T> m = Matrix<T>::from_shape({rows, cols});
    for (auto& v : m) v = T(d(g));
    return m;
}

template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
    double worst = 0;
    auto j = b.begin();
    for (auto i = a.begin(); i != a.end(); ++i, ++j) worst = std::max(worst, std::abs(double(*i) - double(*j)));
    return worst;
}

// A cache of one layer holding the rows of k and v, appended in two parts
// (the second part growing the cache past its reserved room).
template <class T>
typename KVCache<T>::Layer filled_cache(const Matrix<T>& k, const Matrix<T>& v, std::size_t kv_heads, std::size_t hd,
                                        std::size_t first) {
    KVCache<T> c(1, kv_heads, hd);
    c.reserve(first);
    const std::size_t S = k.shape(0);
    c.layers[0].append(xt::view(k, xt::range(0, first), xt::all()), xt::view(v, xt::range(0, first), xt::all()));
    c.layers[0].append(xt::view(k, xt::range(first, S), xt::all()), xt::view(v, xt::range(first, S), xt::all()));
    return c.layers[0];
}

// The attention written out directly in double from k and v as [S, kv_heads·hd]
// (transformers' layout), with an exact softmax: an independent check of the
// per-head cache and of the query-to-key/value head mapping.
Matrix<double> direct_attention(const Matrix<double>& q, const Matrix<double>& k, const Matrix<double>& v,
                                std::size_t H, std::size_t KVH, std::size_t hd) {
    const std::size_t L = q.shape(0), S = k.shape(0), past = S - L;
    Matrix<double> out = xt::zeros<double>({L, H * hd});
    for (std::size_t h = 0; h < H; ++h) {
        const std::size_t g = h / (H / KVH);
        for (std::size_t i = 0; i < L; ++i) {
            std::vector<double> s(past + i + 1);
            double m = -1e300, sum = 0;
            for (std::size_t j = 0; j < s.size(); ++j) {
                double d = 0;
                for (std::size_t c = 0; c < hd; ++c) d += q(i, h * hd + c) * k(j, g * hd + c);
                s[j] = d / std::sqrt(double(hd));
                m = std::max(m, s[j]);
            }
            for (auto& x : s) sum += (x = std::exp(x - m));
            for (std::size_t j = 0; j < s.size(); ++j)
                for (std::size_t c = 0; c < hd; ++c) out(i, h * hd + c) += s[j] / sum * v(j, g * hd + c);
        }
    }
    return out;
}

}  // namespace

TEMPLATE_TEST_CASE("the fast causal attention equals the plain path for every shape regime", "[kernels][attention]",
                   float, double) {
    using T = TestType;
    ThreadPool pool(3);
    struct Heads {
        std::size_t H, KVH, hd;
    };
    // L < 16 takes the per-query path, L >= 16 the sgemm path; hd 20 is no
    // multiple of 16; H > KVH is grouped-query attention.
    for (const Heads hs : {Heads{4, 4, 8}, Heads{4, 2, 20}, Heads{2, 1, 128}})
        for (const auto& pl : std::vector<std::pair<std::size_t, std::size_t>>{
                 {0, 1}, {0, 5}, {3, 1}, {7, 4}, {0, 20}, {5, 17}, {40, 1}, {9, 33}}) {
            const std::size_t past = pl.first, L = pl.second, S = past + L;
            INFO("heads " << hs.H << "/" << hs.KVH << " hd " << hs.hd << " past " << past << " L " << L);
            const auto q = randn<T>(L, hs.H * hs.hd, 1), k = randn<T>(S, hs.KVH * hs.hd, 2);
            const auto v = randn<T>(S, hs.KVH * hs.hd, 3);
            const auto cache = filled_cache<T>(k, v, hs.KVH, hs.hd, std::max<std::size_t>(past, 1));
            Matrix<T> plain = Matrix<T>::from_shape({L, hs.H * hs.hd}), fast = plain;
            causal_attention<T>(q, hs.H, cache, plain);
            kernels::causal_attention<T>(q, hs.H, cache, fast, pool);
            if (sizeof(T) == 8) {
                CHECK(max_abs_diff(fast, plain) == 0.0);  // double takes the plain path
            } else {
                // the same float32 softmax; the products summed in another order
                CHECK(max_abs_diff(fast, plain) <= 2e-5);
            }
            // and both are the attention itself (the softmax rounds to float32)
            const Matrix<double> qd = q, kd = k, vd = v;
            CHECK(parity::relative_error(plain, direct_attention(qd, kd, vd, hs.H, hs.KVH, hs.hd)) <= 1e-5);
        }
}

TEST_CASE("the few-rows product equals the plain product for float and half weights", "[kernels][gemv]") {
    ThreadPool pool(3);
    for (std::size_t L = 1; L <= kernels::kGemvMaxRows; ++L)
        for (std::size_t K : {16, 37, 100, 256})
            for (std::size_t N : {1, 5, 29, 67})
                for (float beta : {0.f, 1.f}) {
                    INFO("L " << L << " K " << K << " N " << N << " beta " << beta);
                    const auto x = randn<float>(L, K, 4), wf = randn<float>(N, K, 5), y0 = randn<float>(L, N, 6);
                    // float weights, through Linear's dispatch
                    Matrix<float> expect = y0, y = y0;
                    gemm<float>(Trans::No, Trans::Yes, L, N, K, 1.f, x.data(), K, wf.data(), K, beta, expect.data(), N);
                    kernels::gemm_nt<float>(x.data(), L, wf.data(), N, K, beta, y.data(), N, pool);
                    CHECK(max_abs_diff(y, expect) <= 1e-4);
                    // half weights: against the product with the converted matrix
                    for (DType dt : {DType::F16, DType::BF16}) {
                        const HalfMatrix wh = HalfMatrix::from_float(wf.data(), N, K, dt);
                        Matrix<float> wc = Matrix<float>::from_shape({N, K});
                        convert_elements<float>(dt, wh.data, N * K, wc.data());
                        Matrix<float> eh = y0, yh = y0;
                        gemm<float>(Trans::No, Trans::Yes, L, N, K, 1.f, x.data(), K, wc.data(), K, beta, eh.data(), N);
                        kernels::gemm_half_nt<float>(x.data(), L, wh, beta, yh.data(), N, pool);
                        CHECK(max_abs_diff(yh, eh) <= 1e-4);
                        if (kernels::gemv_applies(L)) {
                            Matrix<float> yd = y0;
                            kernels::gemv_nt(x.data(), L, wh, beta, yd.data(), N, pool);
                            CHECK(max_abs_diff(yd, eh) <= 1e-4);
                        }
                    }
                }
    CHECK(!kernels::gemv_applies(0));
    CHECK(!kernels::gemv_applies(kernels::kGemvMaxRows + 1));
}

TEST_CASE("the product of a prompt's rows with the weights equals the plain product", "[kernels][gemm]") {
    ThreadPool pool(3);
    struct Shape3 {
        std::size_t L, N, K;
    };
    // 3 rows: the few-rows kernel; 9..512 rows: the prompt product (every
    // row count of the last 14-row panel, weight blocks of 64 rows cut
    // anywhere, slices of 256 columns cut anywhere); 600 and 1025: the
    // AVX-512 sgemm
    for (const Shape3 s : {Shape3{3, 67, 37}, Shape3{9, 67, 37}, Shape3{1025, 70, 40}, Shape3{600, 64, 1},
                           Shape3{16, 16, 37}, Shape3{40, 67, 256}, Shape3{89, 300, 100},
                           Shape3{600, 40, 64}, Shape3{20, 1100, 1100}, Shape3{23, 33, 513}, Shape3{512, 64, 16},
                           Shape3{65, 130, 300}, Shape3{24, 48, 17}, Shape3{10, 17, 1}, Shape3{11, 95, 270},
                           Shape3{12, 31, 260}, Shape3{13, 16, 64}, Shape3{14, 100, 40}, Shape3{15, 90, 90},
                           Shape3{17, 40, 40}, Shape3{18, 40, 40}, Shape3{19, 40, 40}, Shape3{21, 40, 40},
                           Shape3{22, 40, 40}, Shape3{26, 40, 40}})
        for (float beta : {0.f, 1.f}) {
            INFO("L " << s.L << " N " << s.N << " K " << s.K << " beta " << beta);
            const auto x = randn<float>(s.L, s.K, 10), wf = randn<float>(s.N, s.K, 11), y0 = randn<float>(s.L, s.N, 12);
            Matrix<float> expect = y0, y = y0;
            gemm<float>(Trans::No, Trans::Yes, s.L, s.N, s.K, 1.f, x.data(), s.K, wf.data(), s.K, beta, expect.data(),
                        s.N);
            kernels::gemm_nt<float>(x.data(), s.L, wf.data(), s.N, s.K, beta, y.data(), s.N, pool);
            // sums of K products of unit normals, in another order
            const double tol = 1e-6 * std::sqrt(double(s.K)) * 10;
            CHECK(max_abs_diff(y, expect) <= tol);
            // with a bias (a Linear's): y = x·Wᵀ + bias + beta·y
            const auto bias = randn<float>(1, s.N, 13);
            Matrix<float> expect_b = expect, yb = y0;
            for (std::size_t l = 0; l < s.L; ++l)
                for (std::size_t j = 0; j < s.N; ++j) expect_b(l, j) += bias(0, j);
            kernels::gemm_nt<float>(x.data(), s.L, wf.data(), s.N, s.K, beta, yb.data(), s.N, pool, bias.data());
            CHECK(max_abs_diff(yb, expect_b) <= tol);
            for (DType dt : {DType::F16, DType::BF16}) {
                const HalfMatrix wh = HalfMatrix::from_float(wf.data(), s.N, s.K, dt);
                Matrix<float> wc = Matrix<float>::from_shape({s.N, s.K});
                convert_elements<float>(dt, wh.data, s.N * s.K, wc.data());
                Matrix<float> eh = y0, yh = y0;
                gemm<float>(Trans::No, Trans::Yes, s.L, s.N, s.K, 1.f, x.data(), s.K, wc.data(), s.K, beta, eh.data(),
                            s.N);
                kernels::gemm_half_nt<float>(x.data(), s.L, wh, beta, yh.data(), s.N, pool);
                CHECK(max_abs_diff(yh, eh) <= tol);
                Matrix<float> yhb = y0;
                kernels::gemm_half_nt<float>(x.data(), s.L, wh, beta, yhb.data(), s.N, pool, bias.data());
                for (std::size_t l = 0; l < s.L; ++l)
                    for (std::size_t j = 0; j < s.N; ++j) eh(l, j) += bias(0, j);
                CHECK(max_abs_diff(yhb, eh) <= tol);
            }
        }
    if (kernels::cpu_has_avx512()) {
        CHECK(kernels::prompt_gemm_applies(89, 4096, 4096));
        CHECK(kernels::prompt_gemm_applies(9, 4096, 4096));
        CHECK(!kernels::prompt_gemm_applies(8, 4096, 4096));
        CHECK(!kernels::prompt_gemm_applies(1025, 4096, 1024));
    }
}

TEST_CASE("the key/value cache keeps each head's rows contiguous as it grows", "[kernels][cache]") {
    const std::size_t heads = 3, hd = 4, width = heads * hd;
    KVCache<double> cache(2, heads, hd);
    auto& layer = cache.layers[1];
    const auto k = randn<double>(11, width, 7), v = randn<double>(11, width, 8);
    // one row, then two, then eight: from no room, through doubling, past it
    std::size_t at = 0;
    for (std::size_t n : {1, 2, 8}) {
        layer.append(xt::view(k, xt::range(at, at + n), xt::all()), xt::view(v, xt::range(at, at + n), xt::all()));
        at += n;
        REQUIRE(layer.length() == at);
        CHECK(layer.capacity >= at);
        for (std::size_t g = 0; g < heads; ++g)
            for (std::size_t i = 0; i < at; ++i)
                for (std::size_t c = 0; c < hd; ++c) {
                    CHECK(layer.keys_of(g)[i * hd + c] == k(i, g * hd + c));
                    CHECK(layer.values_of(g)[i * hd + c] == v(i, g * hd + c));
                }
    }
    // reserving moves the rows, keeps them
    cache.reserve(50);
    CHECK(layer.capacity == 50);
    CHECK(cache.layers[0].capacity == 50);
    for (std::size_t g = 0; g < heads; ++g) CHECK(layer.keys_of(g)[10 * hd + 3] == k(10, g * hd + 3));
    cache.clear();
    CHECK(layer.length() == 0);
    CHECK_THROWS_WITH(layer.append(randn<double>(1, width + 1, 9), randn<double>(1, width + 1, 9)),
                      Catch::Contains("expected 12 columns"));
}

TEMPLATE_TEST_CASE("the prefill for generation gives the last row of the full logits", "[kernels][model]", float,
                   double) {
    using T = TestType;
    const auto model = load_model<T>(parity::tiny_dir());
    parity::Case ref("image_then_text");
    PreparedInputs<T> in;
    const auto e = ref.get("decoder.inputs_embeds");
    in.inputs_embeds = Matrix<T>::from_shape({e.shape(0), e.size() / e.shape(0)});
    std::copy(e.begin(), e.end(), in.inputs_embeds.begin());
    const auto ind = ref.get("decoder.modality_indicators");
    in.modality_indicators.assign(ind.begin(), ind.end());
    const std::size_t L = in.inputs_embeds.shape(0);

    Hooks<T> hooks;
    Shape reported;
    hooks.add([&](const std::string& name, Matrix<T>&, const Shape& shape) {
        if (name == "logits") reported = shape;
    });
    KVCache<T> full_cache = model.new_cache(), last_cache = model.new_cache();
    const Matrix<T> full = model.forward(in, full_cache, hooks);
    CHECK(reported == Shape{L, full.shape(1)});
    const Matrix<T> last = model.prefill(in, last_cache, hooks);
    CHECK(reported == Shape{1, full.shape(1)});
    REQUIRE(last.shape(0) == 1);
    const Matrix<T> expect = xt::view(full, xt::range(L - 1, L), xt::all());
    // one row against many: the same sums, in float possibly in another order
    CHECK(parity::relative_error(last, expect) <= (sizeof(T) == 8 ? 1e-12 : 1e-5));
    CHECK(last_cache.length == full_cache.length);
    CHECK(max_abs_diff(last_cache.layers[0].keys, full_cache.layers[0].keys) == 0.0);
}

TEST_CASE("a thread pool resized after it ran takes the next job only", "[kernels][pool]") {
    // bench --threads resizes the process-wide pool, which may have run jobs
    ThreadPool pool(2);
    for (std::size_t threads : {3, 1, 4, 2}) {
        std::vector<int> hits(100, 0);
        pool.parallel_for(hits.size(), [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) ++hits[i];
        });
        CHECK(std::count(hits.begin(), hits.end(), 1) == 100);
        pool.resize(threads);
        CHECK(pool.size() == threads);
    }
}
