// Choosing the next token from a row of logits, as Hugging Face's generate
// does: greedy (argmax, first index on ties), or sampling after the logits
// warpers in HF's order, temperature, then top-k, then top-p:
//   - temperature: logits / t;
//   - top-k: every logit below the k-th largest is removed (ties with it stay);
//   - top-p: sorted ascending, the tokens whose cumulative probability is at
//     most 1 − p are removed, the most likely token always stays;
// then one draw from softmax of what is left. The draw uses a seeded
// std::mt19937_64, not torch's generator: the same seed gives the same ids
// here on every run, not the ids torch.multinomial would draw.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "../core/error.hpp"

namespace mplug_owl2 {

struct SamplingConfig {
    bool do_sample = false;    // false: greedy
    double temperature = 1.0;  // > 0
    std::size_t top_k = 0;     // 0: off
    double top_p = 1.0;        // in [0, 1]; 1: off
    std::uint64_t seed = 0;

    void check() const {
        if (!(temperature > 0) || !std::isfinite(temperature))
            fail("sampling temperature ", temperature, ": expected a positive number");
        if (!(top_p >= 0 && top_p <= 1)) fail("sampling top_p ", top_p, ": expected a number in [0, 1]");
    }
};

class Sampler {
public:
    explicit Sampler(const SamplingConfig& c) : config_(c), rng_(c.seed) { c.check(); }

    // The probabilities the draw uses: softmax of the warped logits.
    template <class T>
    std::vector<double> probabilities(const T* logits, std::size_t V) const {
        constexpr double removed = -std::numeric_limits<double>::infinity();
        std::vector<double> s(logits, logits + V);
        // 1. temperature
        if (config_.temperature != 1.0)
            for (auto& v : s) v /= config_.temperature;
        // 2. top-k: below the k-th largest goes
        if (config_.top_k > 0 && config_.top_k < V) {
            std::vector<double> sorted = s;
            std::nth_element(sorted.begin(), sorted.begin() + (config_.top_k - 1), sorted.end(), std::greater<double>());
            const double kth = sorted[config_.top_k - 1];
            for (auto& v : s)
                if (v < kth) v = removed;
        }
        // 3. top-p: ascending order, cumulative probability <= 1 − p goes, the last token stays
        if (config_.top_p < 1.0) {
            std::vector<std::size_t> order(V);
            std::iota(order.begin(), order.end(), std::size_t(0));
            std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s[a] < s[b]; });
            std::vector<double> sorted(V);
            for (std::size_t i = 0; i < V; ++i) sorted[i] = s[order[i]];
            const std::vector<double> p = softmax(sorted);
            double cum = 0;
            for (std::size_t i = 0; i + 1 < V; ++i) {
                cum += p[i];
                if (cum <= 1.0 - config_.top_p) s[order[i]] = removed;
            }
        }
        return softmax(s);
    }

    template <class T>
    std::int64_t pick(const T* logits, std::size_t V) {
        if (V == 0) fail("sampling: empty logits row");
        if (!config_.do_sample) return static_cast<std::int64_t>(std::max_element(logits, logits + V) - logits);
        const std::vector<double> p = probabilities(logits, V);
        const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
        double cum = 0;
        std::size_t last = 0;
        for (std::size_t j = 0; j < V; ++j) {
            if (p[j] == 0) continue;
            last = j;
            cum += p[j];
            if (u < cum) return static_cast<std::int64_t>(j);
        }
        return static_cast<std::int64_t>(last);  // u beyond the rounded total
    }

private:
    static std::vector<double> softmax(const std::vector<double>& x) {
        const double m = *std::max_element(x.begin(), x.end());
        std::vector<double> p(x.size());
        double sum = 0;
        for (std::size_t i = 0; i < x.size(); ++i) sum += (p[i] = std::isinf(x[i]) && x[i] < 0 ? 0.0 : std::exp(x[i] - m));
        for (auto& v : p) v /= sum;
        return p;
    }

    SamplingConfig config_;
    std::mt19937_64 rng_;
};

}  // namespace mplug_owl2
