// Google Benchmark of the fast kernels at the release model's shapes
// (float32 compute, and the bf16 products), each next to the plain path it replaces where that is a
// library call (OpenBLAS's cblas_sgemm). The kernels are tested against the
// plain paths in tests/test_*_kernels.cpp; this only times them.
//
//   build/examples/bench_kernels                         # every benchmark
//   build/examples/bench_kernels --benchmark_filter=prompt
//   build/examples/bench_kernels --threads 1             # the library's pool and OpenBLAS on 1 thread
//
// Counters: GFLOP/s for products and attention (2·M·N·K per product),
// bytes_per_second for the bandwidth-bound kernels (the weights and cache
// read, the values written).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mplug_owl2/core/activations.hpp"
#include "mplug_owl2/core/half_matrix.hpp"
#include "mplug_owl2/core/parallel.hpp"
#include "mplug_owl2/kernels/activations.hpp"
#include "mplug_owl2/kernels/attention.hpp"
#include "mplug_owl2/kernels/bf16_gemm.hpp"
#include "mplug_owl2/kernels/causal_attention.hpp"
#include "mplug_owl2/kernels/gemv.hpp"
#include "mplug_owl2/kernels/packed_gemm.hpp"
#include "mplug_owl2/kernels/half_gemm.hpp"
#include "mplug_owl2/kernels/prompt_gemm.hpp"
#include "mplug_owl2/kernels/sgemm.hpp"
#include "mplug_owl2/language/kv_cache.hpp"

using namespace mplug_owl2;

namespace {

std::vector<float> random_values(std::size_t n, unsigned seed) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

Matrix<float> random_matrix(std::size_t rows, std::size_t cols, unsigned seed) {
    const auto v = random_values(rows * cols, seed);
    Matrix<float> m = Matrix<float>::from_shape({rows, cols});
    std::copy(v.begin(), v.end(), m.begin());
    return m;
}

void gflops(benchmark::State& state, double flop_per_iteration) {
    state.counters["GFLOP/s"] =
        benchmark::Counter(flop_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- products with a weight matrix: y[M, N] = x[M, K] · Wᵀ ----------------------------------

// Args: M, N, K. OpenBLAS's cblas_sgemm, the plain path of gemm<float>.
void BM_sgemm_openblas(benchmark::State& state) {
    const std::size_t M = state.range(0), N = state.range(1), K = state.range(2);
    const auto x = random_values(M * K, 1), w = random_values(N * K, 2);
    std::vector<float> y(M * N);
    for (auto _ : state) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.f, x.data(), int(K), w.data(),
                    int(K), 0.f, y.data(), int(N));
        benchmark::DoNotOptimize(y.data());
    }
    gflops(state, 2.0 * M * N * K);
}

// The AVX-512 sgemm of kernels/sgemm.hpp on the library's pool.
void BM_sgemm_avx512(benchmark::State& state) {
    if (!kernels::cpu_has_avx512f()) return state.SkipWithError("no AVX-512 on this CPU");
    const std::size_t M = state.range(0), N = state.range(1), K = state.range(2);
    const auto x = random_values(M * K, 1), w = random_values(N * K, 2);
    std::vector<float> y(M * N);
    for (auto _ : state) {
        kernels::sgemm(false, true, M, N, K, 1.f, x.data(), K, w.data(), K, 0.f, y.data(), N, &thread_pool());
        benchmark::DoNotOptimize(y.data());
    }
    gflops(state, 2.0 * M * N * K);
}

// x [L, K], W [N, K] and y [L, N] of a product with a Linear's weights, from
// the Args L, N, K and the weights' storage (0 f32, 1 bf16, 2 fp16).
struct Product {
    std::size_t L, N, K;
    int kind;
    std::vector<float> x, w, y;
    HalfMatrix wh;  // W in half precision when kind is 1 or 2
    explicit Product(const benchmark::State& state)
        : L(state.range(0)), N(state.range(1)), K(state.range(2)), kind(int(state.range(3))),
          x(random_values(L * K, 1)), w(random_values(N * K, 2)), y(L * N),
          wh(kind == 0 ? HalfMatrix() : HalfMatrix::from_float(w.data(), N, K, kind == 1 ? DType::BF16 : DType::F16)) {}
    const char* label() const { return kind == 0 ? "f32 weights" : kind == 1 ? "bf16 weights" : "fp16 weights"; }
};

// The prompt product of kernels/prompt_gemm.hpp; Args: L, N, K, weights (0 f32, 1 bf16, 2 fp16).
void BM_prompt_gemm(benchmark::State& state) {
    if (!kernels::prompt_gemm_applies(state.range(0), state.range(1), state.range(2)))
        return state.SkipWithError("the prompt product does not apply here");
    Product p(state);
    for (auto _ : state) {
        if (p.kind == 0)
            kernels::prompt_gemm_nt(p.x.data(), p.L, p.w.data(), p.N, p.K, 0.f, p.y.data(), p.N);
        else
            kernels::prompt_gemm_half_nt(p.x.data(), p.L, p.wh, 0.f, p.y.data(), p.N);
        benchmark::DoNotOptimize(p.y.data());
    }
    gflops(state, 2.0 * p.L * p.N * p.K);
    state.SetLabel(p.label());
}

// Decoding: the few-rows product of kernels/gemv.hpp, weights streamed once;
// Args: L, N, K, weights (0 f32, 1 bf16, 2 fp16).
void BM_gemv(benchmark::State& state) {
    if (!kernels::gemv_applies(state.range(0))) return state.SkipWithError("the few-rows kernel does not apply here");
    Product p(state);
    for (auto _ : state) {
        if (p.kind == 0)
            kernels::gemv_nt(p.x.data(), p.L, p.w.data(), p.N, p.K, 0.f, p.y.data(), p.N, thread_pool());
        else
            kernels::gemv_nt(p.x.data(), p.L, p.wh, 0.f, p.y.data(), p.N, thread_pool());
        benchmark::DoNotOptimize(p.y.data());
    }
    const double weight_bytes = double(p.N) * p.K * (p.kind == 0 ? 4 : 2);
    state.SetBytesProcessed(std::int64_t(state.iterations() * weight_bytes));
    state.SetLabel(p.label());
}

// Weights packed once (kernels/packed_weights.hpp), as the decoder's float
// projections are after pack_decoder_weights: the prompt product reading the
// packed slices for 9+ rows, the packed few-rows kernel for up to 8; Args:
// L, N, K. Counters: GFLOP/s and the weights' bytes per second.
void BM_packed_gemm(benchmark::State& state) {
    Product p(state);
    const kernels::PackedWeights packed = kernels::PackedWeights::pack(p.w.data(), p.N, p.K);
    for (auto _ : state) {
        kernels::packed_gemm_nt(p.x.data(), p.L, packed, 0.f, p.y.data(), p.N);
        benchmark::DoNotOptimize(p.y.data());
    }
    gflops(state, 2.0 * p.L * p.N * p.K);
    state.SetBytesProcessed(std::int64_t(state.iterations() * double(p.N) * p.K * 4));
    state.SetLabel("f32 weights, packed");
}

// The bf16 products of kernels/bf16_gemm.hpp (x rounded to bf16, float
// sums), weights packed once from their storage, through the kernel chosen
// for L rows (AMX-BF16, AVX512-BF16 or float: the label names it); Args: L,
// N, K, weights (0 f32, 1 bf16, 2 fp16), kernel (0 the chosen one, 1 float).
// Counters: GFLOP/s and the packed weights' bytes per second.
void BM_bf16_gemm(benchmark::State& state) {
    Product p(state);
    const kernels::Bf16Weights packed =
        p.kind == 0 ? kernels::Bf16Weights::pack(p.w.data(), p.N, p.K) : kernels::Bf16Weights::pack(p.wh);
    const kernels::Bf16Kernel kernel = state.range(4) == 1 ? kernels::Bf16Kernel::Float : kernels::bf16_kernel_for(p.L);
    for (auto _ : state) {
        kernels::bf16_gemm_nt(p.x.data(), p.L, packed, p.y.data(), p.N, nullptr, thread_pool(), kernel);
        benchmark::DoNotOptimize(p.y.data());
    }
    gflops(state, 2.0 * p.L * p.N * p.K);
    state.SetBytesProcessed(std::int64_t(state.iterations() * double(packed.size()) * 2));
    state.SetLabel(std::string(kernels::bf16_kernel_name(kernel)) + ", " + p.label());
}

// ---- attention ------------------------------------------------------------------------------

// The vision encoder's attention (kernels/attention.hpp): Args: tokens, heads, head_dim.
void BM_vision_attention(benchmark::State& state) {
    const std::size_t L = state.range(0), H = state.range(1), hd = state.range(2), D = H * hd;
    const Matrix<float> qkv = random_matrix(L, 3 * D, 3);
    Matrix<float> out = Matrix<float>::from_shape({L, D});
    const float scale = 1.f / std::sqrt(float(hd));
    for (auto _ : state) {
        kernels::multi_head_attention<float>(H, L, L, hd, scale, {qkv.data(), 3 * D, hd}, {qkv.data() + D, 3 * D, hd},
                                             {qkv.data() + 2 * D, 3 * D, hd}, {out.data(), D, hd});
        benchmark::DoNotOptimize(out.data());
    }
    gflops(state, 4.0 * H * L * L * hd);
}

// The decoder's causal attention over the key/value cache
// (kernels/causal_attention.hpp): Args: queries, cached positions before them, heads, head_dim.
void BM_causal_attention(benchmark::State& state) {
    const std::size_t L = state.range(0), past = state.range(1), H = state.range(2), hd = state.range(3);
    const std::size_t S = past + L, D = H * hd;
    KVCache<float> cache(1, H, hd);
    cache.layers[0].append(random_matrix(S, D, 4), random_matrix(S, D, 5));
    const Matrix<float> q = random_matrix(L, D, 6);
    Matrix<float> out = Matrix<float>::from_shape({L, D});
    for (auto _ : state) {
        kernels::causal_attention<float>(q, H, cache.layers[0], out);
        benchmark::DoNotOptimize(out.data());
    }
    double visible = 0;  // key positions each query sees
    for (std::size_t i = 0; i < L; ++i) visible += double(past + i + 1);
    gflops(state, 4.0 * H * hd * visible);
}

// ---- elementwise ----------------------------------------------------------------------------

// quick_gelu (vision MLP) and SiLU (decoder MLP) in place: Args: rows, cols, activation (0 quick_gelu, 1 silu).
void BM_activation(benchmark::State& state) {
    Matrix<float> x = random_matrix(state.range(0), state.range(1), 7);
    const Matrix<float> x0 = x;
    const Activation a = state.range(2) == 0 ? Activation::QuickGELU : Activation::SiLU;
    for (auto _ : state) {
        state.PauseTiming();
        std::copy(x0.begin(), x0.end(), x.begin());
        state.ResumeTiming();
        kernels::activate_inplace(a, x);
        benchmark::DoNotOptimize(x.data());
    }
    state.SetBytesProcessed(std::int64_t(state.iterations() * x.size() * sizeof(float) * 2));
    state.SetLabel(state.range(2) == 0 ? "quick_gelu" : "silu");
}

// fp16/bf16 to float (kernels/half_gemm.hpp): Args: elements, dtype (1 bf16, 2 fp16).
void BM_halves_to_float(benchmark::State& state) {
    const std::size_t n = state.range(0);
    const auto v = random_values(n, 8);
    const HalfMatrix h = HalfMatrix::from_float(v.data(), 1, n, state.range(1) == 1 ? DType::BF16 : DType::F16);
    std::vector<float> out(n);
    for (auto _ : state) {
        kernels::halves_to_float(h.dtype, h.data, n, out.data());
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(std::int64_t(state.iterations() * n * 6));
}

}  // namespace

// The vision MLP's product (the bench command's reference), the decoder's
// projections for a prompt of 89 positions (65 visual + 24 text in the
// multiway K/V), its MLP, and lm_head for one row; the same with the weights
// packed.
BENCHMARK(BM_sgemm_openblas)->Args({1025, 4096, 1024})->Args({89, 4096, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sgemm_avx512)->Args({1025, 4096, 1024})->Args({1025, 1024, 4096})->Args({89, 4096, 4096})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prompt_gemm)
    ->Args({89, 4096, 4096, 0})->Args({65, 4096, 4096, 0})->Args({24, 4096, 4096, 0})
    ->Args({89, 11008, 4096, 0})->Args({89, 4096, 11008, 0})
    ->Args({89, 4096, 4096, 1})->Args({89, 4096, 4096, 2})->Args({89, 11008, 4096, 1})
    ->Args({512, 4096, 4096, 0})->Args({512, 11008, 4096, 1})->Args({512, 4096, 11008, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
// The same products with bf16 operands: the vision MLP (1025 rows), the
// decoder's prompts of 89 and 512 positions, decoding; f32 and fp16 storage;
// the float path for comparison.
BENCHMARK(BM_bf16_gemm)
    ->Args({1025, 4096, 1024, 0, 0})->Args({1025, 1024, 4096, 0, 0})
    ->Args({89, 4096, 4096, 1, 0})->Args({24, 4096, 4096, 1, 0})->Args({89, 11008, 4096, 1, 0})
    ->Args({512, 4096, 4096, 1, 0})->Args({512, 11008, 4096, 1, 0})->Args({512, 4096, 11008, 1, 0})
    ->Args({512, 4096, 4096, 2, 0})->Args({1, 4096, 4096, 1, 0})->Args({1, 11008, 4096, 1, 0})
    ->Args({1, 32000, 4096, 2, 0})->Args({4, 4096, 4096, 1, 0})
    ->Args({1025, 4096, 1024, 0, 1})->Args({512, 4096, 4096, 1, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_packed_gemm)
    ->Args({89, 4096, 4096, 0})->Args({65, 4096, 4096, 0})->Args({24, 4096, 4096, 0})
    ->Args({89, 11008, 4096, 0})->Args({89, 4096, 11008, 0})->Args({1, 4096, 4096, 0})->Args({1, 32000, 4096, 0})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemv)
    ->Args({1, 4096, 4096, 0})->Args({1, 4096, 4096, 1})->Args({1, 4096, 4096, 2})
    ->Args({1, 11008, 4096, 1})->Args({1, 32000, 4096, 2})->Args({4, 4096, 4096, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_attention)->Args({1025, 16, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_causal_attention)->Args({89, 0, 32, 128})->Args({1, 89, 32, 128})->Args({1, 1000, 32, 128})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_activation)->Args({1025, 4096, 0})->Args({89, 11008, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_halves_to_float)->Args({1 << 24, 1})->Args({1 << 24, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

// --threads N (before Google Benchmark's own flags): the library's pool and
// OpenBLAS on N threads (default 2, the reference machine's cores).
int main(int argc, char** argv) {
    int threads = 2;
    std::vector<char*> rest = {argv[0]};
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = std::atoi(argv[++i]);
            if (threads < 1) {
                std::fprintf(stderr, "error: --threads %s: expected 1 or more\n", argv[i]);
                return 1;
            }
        } else {
            rest.push_back(argv[i]);
        }
    }
    openblas_set_num_threads(threads);
    thread_pool().resize(std::size_t(threads));
    int n = int(rest.size());
    benchmark::Initialize(&n, rest.data());
    if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;
    benchmark::AddCustomContext("openblas_core", openblas_get_corename());
    benchmark::AddCustomContext("threads", std::to_string(threads));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
