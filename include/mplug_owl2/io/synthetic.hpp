// Random weights in the published layout, for exercising the full-size
// model without the download (benchmarks, synthetic checkpoints). Values are
// a deterministic function of (seed, tensor name, index), so a tensor can be
// regenerated shard by shard without keeping the model in memory:
//   1-D ".weight" (norm gains)  1 ± 0.2 (uniform)
//   ".bias"                     ± 0.1 (uniform)
//   matrices and parameters     ~ N(0, 1/fan_in), fan_in = product of all but the first dimension
//   rotary_emb.inv_freq         the exact θ^(−2j/d) table
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/half.hpp"
#include "../core/large_pages.hpp"
#include "../core/parallel.hpp"
#include "checkpoint_layout.hpp"
#include "tensor_source.hpp"

namespace mplug_owl2 {

namespace synthetic_detail {

inline std::uint64_t splitmix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

inline std::uint64_t hash_name(const std::string& s, std::uint64_t seed) {
    std::uint64_t h = 1469598103934665603ull ^ seed;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return splitmix(h);
}

// Uniform in [-1, 1) from the 24 high bits of a counter hash.
inline float uniform(std::uint64_t key, std::uint64_t i) {
    return float(splitmix(key + i) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

inline bool ends_with(const std::string& s, const std::string& t) {
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

}  // namespace synthetic_detail

// Fills out[0, numel(shape)) with tensor `name`'s synthetic values.
inline void synthetic_values(const std::string& name, const Shape& shape, std::uint64_t seed, float* out,
                             double rope_theta = 10000.0) {
    using namespace synthetic_detail;
    const std::size_t n = shape_numel(shape);
    const std::uint64_t key = hash_name(name, seed);
    if (ends_with(name, "rotary_emb.inv_freq")) {
        const double d = 2.0 * double(n);
        for (std::size_t j = 0; j < n; ++j) out[j] = float(1.0 / std::pow(rope_theta, 2.0 * double(j) / d));
        return;
    }
    if (ends_with(name, ".bias")) {
        for (std::size_t i = 0; i < n; ++i) out[i] = 0.1f * uniform(key, i);
        return;
    }
    if (shape.size() == 1) {
        for (std::size_t i = 0; i < n; ++i) out[i] = 1.0f + 0.2f * uniform(key, i);
        return;
    }
    std::size_t fan_in = 1;
    for (std::size_t d = 1; d < shape.size(); ++d) fan_in *= shape[d];
    // A sum of four uniforms has variance 4/3: scaled to variance 1/fan_in.
    const float scale = float(std::sqrt(3.0 / (4.0 * double(fan_in))));
    thread_pool().parallel_for(n, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) {
            const std::uint64_t j = 4 * std::uint64_t(i);
            out[i] = scale * (uniform(key, j) + uniform(key, j + 1) + uniform(key, j + 2) + uniform(key, j + 3));
        }
    });
}

// A TensorSource over tensors held in memory.
class MemorySource : public TensorSource {
public:
    void add(const std::string& name, DType dtype, const Shape& shape, std::vector<std::uint8_t> bytes) {
        if (bytes.size() != shape_numel(shape) * dtype_size(dtype))
            fail("memory source: tensor ", name, ": ", bytes.size(), " bytes for shape ", shape_str(shape));
        auto& e = entries_[name];
        e.bytes.assign(bytes.begin(), bytes.end());
        e.info = TensorInfo{dtype, shape, e.bytes.data(), e.bytes.size()};
    }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : entries_) out.push_back(kv.first);
        return out;
    }
    const TensorInfo* find(const std::string& name) const override {
        auto it = entries_.find(name);
        return it == entries_.end() ? nullptr : &it->second.info;
    }
    std::string origin(const std::string&) const override { return "memory"; }

private:
    struct Entry {
        std::vector<std::uint8_t, LargePageAllocator<std::uint8_t>> bytes;  // as a mapped checkpoint's, in 2 MB pages
        TensorInfo info;
    };
    std::map<std::string, Entry> entries_;
};

// Converts float values to the bytes of `dtype` (F32, F16 or BF16).
inline std::vector<std::uint8_t> encode_floats(const std::vector<float>& v, DType dtype) {
    if (dtype == DType::F32) {
        std::vector<std::uint8_t> out(v.size() * 4);
        std::memcpy(out.data(), v.data(), out.size());
        return out;
    }
    if (dtype != DType::F16 && dtype != DType::BF16) fail("synthetic weights: dtype ", dtype_name(dtype), " not supported");
    std::vector<std::uint8_t> out(v.size() * 2);
    for (std::size_t i = 0; i < v.size(); ++i) {
        const std::uint16_t h = dtype == DType::F16 ? float_to_fp16(v[i]) : float_to_bf16(v[i]);
        std::memcpy(out.data() + 2 * i, &h, 2);
    }
    return out;
}

// A whole random model in memory, in the published layout.
inline std::shared_ptr<MemorySource> synthetic_checkpoint(const ModelConfig& c, DType dtype, std::uint64_t seed,
                                                          const LayoutOptions& opt = {}) {
    auto src = std::make_shared<MemorySource>();
    for (const auto& e : checkpoint_layout(c, opt)) {
        std::vector<float> v(shape_numel(e.shape));
        synthetic_values(e.name, e.shape, seed, v.data(), c.text.rope_theta);
        src->add(e.name, dtype, e.shape, encode_floats(v, dtype));
    }
    return src;
}

}  // namespace mplug_owl2
