// The bf16 bound for `mplug-owl2 bench`: the GFLOP/s of a product of the
// vision MLP's shape ([1025, 1024] · [4096, 1024]ᵀ) with bf16 operands and
// float sums (kernels/bf16_gemm.hpp), weights packed once, through the
// kernel bf16_gemm_nt takes for that many rows. It is measured as the
// float bound (SgemmRate in command_bench.hpp): several products back to
// back, timed together, per wall-clock second and per CPU-second, so that
// stages run in bf16 can be given as a fraction of it, with the kernel's
// name printed beside the figure.
#pragma once

#include <chrono>
#include <cstddef>
#include <random>
#include <vector>

#include "mplug_owl2/kernels/bf16_gemm.hpp"

namespace cli {
namespace bench_detail {

class Bf16GemmRate {
public:
    Bf16GemmRate(std::size_t M, std::size_t N, std::size_t K) : M_(M), N_(N), K_(K), x_(M * K), c_(M * N) {
        std::mt19937 rng(3);
        std::normal_distribution<float> normal(0.f, 1.f);
        std::vector<float> w(N * K);
        for (auto& v : x_) v = normal(rng);
        for (auto& v : w) v = normal(rng);
        w_ = mplug_owl2::kernels::Bf16Weights::pack(w.data(), N, K);
    }

    // The kernel the products run on ("amx-bf16", "avx512-bf16", "float").
    const char* kernel() const {
        return mplug_owl2::kernels::bf16_kernel_name(mplug_owl2::kernels::bf16_kernel_for(M_));
    }

    // `times` products back to back (about as long as the stages they
    // bound), timed with the bench's Stamp (Stamp::now(): .wall, .cpu) and
    // returned as its Rate {GFLOP per wall-clock second, per CPU-second}.
    template <class Rate, class Stamp>
    Rate measure(int times = 4) {
        const Stamp t0 = Stamp::now();
        for (int i = 0; i < times; ++i) mplug_owl2::kernels::bf16_gemm_nt(x_.data(), M_, w_, c_.data(), N_);
        const Stamp t1 = Stamp::now();
        const double gflop = times * 2.0 * double(M_) * double(N_) * double(K_) * 1e-9;
        return {gflop / std::chrono::duration<double>(t1.wall - t0.wall).count(), gflop / (t1.cpu - t0.cpu)};
    }

private:
    std::size_t M_, N_, K_;
    std::vector<float> x_, c_;
    mplug_owl2::kernels::Bf16Weights w_;
};

}  // namespace bench_detail
}  // namespace cli
