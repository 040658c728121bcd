// The fast kernels of the vision encoder and the abstractor against the plain
// path: the AVX-512 sgemm against cblas_sgemm, all heads of attention at once
// against the per-head loop, the pooled activations against
// core/activations.hpp, and a whole vision encoder in float against the same
// weights in double. Also the thread pool called from inside its own tasks.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "mplug_owl2/core/activations.hpp"
#include "mplug_owl2/core/gemm.hpp"
#include "mplug_owl2/io/synthetic.hpp"
#include "mplug_owl2/kernels/activations.hpp"
#include "mplug_owl2/kernels/attention.hpp"
#include "mplug_owl2/kernels/sgemm.hpp"
#include "mplug_owl2/vision/vision_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

std::vector<float> randn(std::size_t n, unsigned seed, float sd = 1.f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

// The plain path of a float product: OpenBLAS.
void cblas(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
           std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blasint(M), blasint(N),
                blasint(K), alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}

// The M × N values of a matrix with rows ldc apart.
std::vector<float> region(const std::vector<float>& C, std::size_t M, std::size_t N, std::size_t ldc) {
    std::vector<float> out;
    for (std::size_t i = 0; i < M; ++i) out.insert(out.end(), C.begin() + i * ldc, C.begin() + i * ldc + N);
    return out;
}

}  // namespace

TEST_CASE("sgemm equals cblas_sgemm for every transpose and ragged shape", "[kernels][sgemm]") {
    if (!kernels::cpu_has_avx512f()) {
        // Without AVX-512 the library keeps OpenBLAS for every product.
        CHECK_FALSE(kernels::sgemm_is_faster(1024, 1024, 1024));
        return;
    }
    struct Case {
        std::size_t M, N, K;
    };
    // Tiles (14 × 32), packed depth (256) and row blocks (224) all cut
    // somewhere inside these shapes.
    const Case cases[] = {{16, 16, 1}, {37, 45, 300}, {130, 70, 600}, {57, 129, 17}, {14, 32, 256}, {250, 40, 270}};
    const float ab[][2] = {{1.f, 0.f}, {0.5f, 1.f}, {-2.f, 0.25f}};
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (const Case& c : cases)
        for (bool ta : {false, true})
            for (bool tb : {false, true})
                for (const auto& coef : ab)
                    for (bool pooled : {false, true}) {
                        const float alpha = coef[0], beta = coef[1];
                        // leading dimensions wider than the matrices
                        const std::size_t lda = (ta ? c.M : c.K) + 3, ldb = (tb ? c.K : c.N) + 5, ldc = c.N + 7;
                        const auto A = randn((ta ? c.K : c.M) * lda, 1), B = randn((tb ? c.N : c.K) * ldb, 2);
                        std::vector<float> C = randn(c.M * ldc, 3);
                        if (beta == 0.f) std::fill(C.begin(), C.end(), nan);  // must not be read
                        const std::vector<float> before = C;
                        std::vector<float> expect = C;
                        cblas(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, expect.data(), ldc);
                        kernels::sgemm(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(),
                                       ldc, pooled ? &thread_pool() : nullptr);
                        INFO("M " << c.M << " N " << c.N << " K " << c.K << " ta " << ta << " tb " << tb << " alpha "
                                  << alpha << " beta " << beta << " pooled " << pooled);
                        // Same products summed in another order: float rounding only.
                        CHECK(parity::relative_error(region(C, c.M, c.N, ldc), region(expect, c.M, c.N, ldc)) <= 1e-5);
                        // The columns between N and ldc are left alone.
                        std::size_t padding_changed = 0;
                        for (std::size_t i = 0; i < c.M; ++i)
                            for (std::size_t j = c.N; j < ldc; ++j) {
                                const float now = C[i * ldc + j], was = before[i * ldc + j];
                                padding_changed += !(now == was || (std::isnan(now) && std::isnan(was)));
                            }
                        CHECK(padding_changed == 0);
                    }
}

TEST_CASE("gemm of float takes the AVX-512 sgemm for large products only", "[kernels][sgemm]") {
    CHECK(kernels::sgemm_is_faster(1025, 4096, 1024) == kernels::cpu_has_avx512f());
    CHECK_FALSE(kernels::sgemm_is_faster(1, 4096, 4096));  // a decoding step stays with OpenBLAS
    CHECK_FALSE(kernels::sgemm_is_faster(4096, 8, 4096));
}

TEST_CASE("the thread pool runs a parallel_for nested in its own tasks on the calling thread", "[kernels][pool]") {
    ThreadPool pool(2);
    std::vector<std::atomic<int>> hits(200);
    pool.parallel_for(4, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i)
            pool.parallel_for(50, [&](std::size_t b2, std::size_t e2) {
                for (std::size_t j = b2; j < e2; ++j) ++hits[i * 50 + j];
            });
    });
    std::size_t once = 0;
    for (const auto& h : hits) once += h.load() == 1;
    CHECK(once == hits.size());

    // sgemm given the pool inside the pool's tasks: the same numbers as alone
    if (!kernels::cpu_has_avx512f()) return;
    const std::size_t M = 70, N = 90, K = 300;
    const auto A = randn(M * K, 4), B = randn(N * K, 5);
    std::vector<float> alone(M * N), nested0(M * N), nested1(M * N);
    kernels::sgemm(false, true, M, N, K, 1.f, A.data(), K, B.data(), K, 0.f, alone.data(), N, &pool);
    pool.parallel_for(2, [&](std::size_t b, std::size_t) {
        float* C = b == 0 ? nested0.data() : nested1.data();
        kernels::sgemm(false, true, M, N, K, 1.f, A.data(), K, B.data(), K, 0.f, C, N, &pool);
    });
    CHECK(nested0 == alone);
    CHECK(nested1 == alone);
}

TEST_CASE("multi_head_attention kernel equals the per-head plain path", "[kernels][attention]") {
    struct Case {
        const char* what;
        std::size_t heads, Lq, Lk, hd;
        bool fused_qkv;  // the vision layout: [q, k, v] side by side per head
        float sd;        // spread of the inputs: large values give peaked softmaxes
    };
    const Case cases[] = {
        {"vision layout, several query blocks", 3, 150, 150, 64, true, 1.f},
        {"abstractor layout, ragged sizes", 4, 20, 157, 24, false, 1.f},
        {"peaked scores", 2, 33, 50, 16, false, 4.f},
        {"release head shape", 2, 1025, 1025, 64, true, 1.f},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        const std::size_t D = c.heads * c.hd, ld_in = c.fused_qkv ? 3 * D : D, step = c.fused_qkv ? 3 * c.hd : c.hd;
        const std::size_t k_off = c.fused_qkv ? c.hd : 0, v_off = c.fused_qkv ? 2 * c.hd : 0;
        // q rows and k/v rows in separate matrices (one matrix when fused)
        const auto qf = randn(c.Lq * ld_in, 6, c.sd);
        const auto kvf = c.fused_qkv ? qf : randn(c.Lk * ld_in, 7, c.sd);
        const auto kf = c.fused_qkv ? qf : kvf;
        const auto vf = c.fused_qkv ? qf : randn(c.Lk * ld_in, 8, c.sd);
        const float scale = 1.f / std::sqrt(float(c.hd));

        // plain path in double on the same values: the reference
        const std::vector<double> qd(qf.begin(), qf.end()), kd(kf.begin(), kf.end()), vd(vf.begin(), vf.end());
        std::vector<double> expect(c.Lq * D);
        multi_head_attention<double>(c.heads, c.Lq, c.Lk, c.hd, double(scale), {qd.data(), ld_in, step},
                                     {kd.data() + k_off, ld_in, step}, {vd.data() + v_off, ld_in, step},
                                     {expect.data(), D, c.hd});

        std::vector<float> fast(c.Lq * D), plain(c.Lq * D);
        kernels::multi_head_attention<float>(c.heads, c.Lq, c.Lk, c.hd, scale, {qf.data(), ld_in, step},
                                             {kf.data() + k_off, ld_in, step}, {vf.data() + v_off, ld_in, step},
                                             {fast.data(), D, c.hd});
        multi_head_attention<float>(c.heads, c.Lq, c.Lk, c.hd, scale, {qf.data(), ld_in, step},
                                    {kf.data() + k_off, ld_in, step}, {vf.data() + v_off, ld_in, step},
                                    {plain.data(), D, c.hd});
        const double fast_err = parity::relative_error(fast, expect), plain_err = parity::relative_error(plain, expect);
        INFO("kernel " << fast_err << ", plain float " << plain_err);
        CHECK(fast_err <= 1e-5);
        CHECK(plain_err <= 1e-5);

        // in double the kernel is the plain path itself
        std::vector<double> kernel_double(c.Lq * D);
        kernels::multi_head_attention<double>(c.heads, c.Lq, c.Lk, c.hd, double(scale), {qd.data(), ld_in, step},
                                              {kd.data() + k_off, ld_in, step}, {vd.data() + v_off, ld_in, step},
                                              {kernel_double.data(), D, c.hd});
        CHECK(kernel_double == expect);
    }
}

TEMPLATE_TEST_CASE("activate_inplace kernel equals the plain activations", "[kernels][activations]", float, double) {
    using T = TestType;
    // normal values, a sweep through the range where e^x over- and
    // underflows, and a length that leaves partial vectors and chunks
    auto values = randn(3007, 9, 3.f);
    for (std::size_t i = 0; i < 400; ++i) values[i] = -100.f + 0.5f * float(i);
    Matrix<T> x = Matrix<T>::from_shape({31, 97});
    std::copy(values.begin(), values.end(), x.begin());
    for (Activation a :
         {Activation::SiLU, Activation::QuickGELU, Activation::GELU, Activation::GELUTanh, Activation::ReLU}) {
        Matrix<T> plain = x, fast = x;
        activate_inplace(a, plain);
        kernels::activate_inplace(a, fast);
        const bool vectorised =
            std::is_same<T, float>::value && kernels::cpu_has_avx512f() && (a == Activation::SiLU || a == Activation::QuickGELU);
        INFO("activation " << int(a));
        if (!vectorised) {
            const bool same = fast == plain;  // the plain function applied per element
            CHECK(same);
            continue;
        }
        // e^x to a few ulp: each value within a few float roundings
        double worst = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double p = plain.data()[i], f = fast.data()[i];
            worst = std::max(worst, std::abs(f - p) / std::max(std::abs(p), 1e-30));
        }
        CHECK(worst <= 1e-6);
    }
}

TEST_CASE("a vision encoder in float with the kernels follows the same weights in double", "[kernels][vision]") {
    // A narrow encoder whose shapes still cut the kernels' blocks: 257 tokens
    // (three query blocks), an MLP deeper than one packed block, 2 heads.
    ModelConfig cfg;
    cfg.vision.hidden_size = 128;
    cfg.vision.intermediate_size = 512;
    cfg.vision.num_attention_heads = 2;
    cfg.vision.num_hidden_layers = 2;
    cfg.vision.image_size = 224;
    cfg.text.num_hidden_layers = 0;
    cfg.text.vocab_size = 8;
    cfg.text.hidden_size = 64;
    cfg.text.intermediate_size = 64;
    cfg.text.num_attention_heads = 1;
    cfg.text.num_key_value_heads = 1;
    cfg.abstractor.hidden_size = cfg.abstractor.encoder_hidden_size = 128;
    cfg.abstractor.num_hidden_layers = 1;
    cfg.abstractor.num_attention_heads = 2;
    cfg.abstractor.intermediate_size = 256;
    cfg.abstractor.num_learnable_queries = 8;
    cfg.abstractor.grid_size = 16;
    const auto source = synthetic_checkpoint(cfg, DType::F32, 3);
    WeightLoader wf(*source), wd(*source);
    VisionModel<float> vf;
    VisionModel<double> vd;
    vf.load(wf, cfg.vision);
    vd.load(wd, cfg.vision);

    const auto px = randn(3 * 224 * 224, 10);
    xt::xtensor<float, 4> pf = xt::xtensor<float, 4>::from_shape({1, 3, 224, 224});
    std::copy(px.begin(), px.end(), pf.begin());
    const xt::xtensor<double, 4> pd = xt::cast<double>(pf);
    const Matrix<float> out_f = vf.forward(pf, Hooks<float>());
    const Matrix<double> out_d = vd.forward(pd, Hooks<double>());
    REQUIRE(out_f.shape(0) == 257);
    CHECK(parity::relative_error(out_f, out_d) <= parity::tolerance<float>());
}
