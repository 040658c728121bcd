// Attention probabilities on request (Hooks::request_attention_probs):
//   model.layers.i.self_attn.probs                                   [heads, L, S]
//   model.visual_abstractor.encoder.layers.i.crossattention.attention.probs  [N, heads, Q, Q + vision positions]
// Off by default. Each row is a distribution over the keys; the decoder's
// is causal (0 after the query's own position) and equals the softmax
// recomputed here from the recorded q_proj/k_proj outputs with RoPE by its
// formula (to the float32 rounding of the official softmax); the
// abstractor's equals softmax(q_h·k_hᵀ/√hd) of the recorded query/key
// outputs. A decoding step's row equals the last row of one pass over the
// longer prompt. A hook that changes the probabilities changes the output
// accordingly. `trace --attention` writes them.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cmath>

#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kTiny = parity::tiny_dir();
const std::string kCli = MPLUG_OWL2_CLI;
const std::string kTmp = MPLUG_OWL2_TEST_TMP;

const MplugOwl2LlamaForCausalLM<double>& tiny() {
    static const MplugOwl2LlamaForCausalLM<double> m = load_model<double>(kTiny);
    return m;
}

xt::xtensor<double, 4> pixels_of(const std::string& case_name) {
    return parity::Case(case_name).pixel_values<double>(parity::tiny_case(case_name)["images"].size());
}

// The prompt's forward pass of a tiny case with the probabilities recorded.
struct Recorded {
    Hooks<double> hooks;
    Recorder<double> rec{hooks};
    ModalityIndicators indicators;
    Matrix<double> logits;
    explicit Recorded(const std::string& case_name, const std::vector<std::int64_t>& extra = {}) {
        hooks.request_attention_probs();
        const auto& m = tiny();
        auto ids = parity::tiny_case(case_name)["input_ids"].get<std::vector<std::int64_t>>();
        ids.insert(ids.end(), extra.begin(), extra.end());
        KVCache<double> cache = m.new_cache();
        const auto in = m.prepare_inputs(ids, m.encode_images(pixels_of(case_name), hooks), hooks);
        indicators = in.modality_indicators;
        logits = m.forward(in, cache, hooks);
    }
};

// x [L, H·hd] rotated at positions 0 .. L−1: x·cos + rotate_half(x)·sin per head,
// angle p·θ^(−2j/hd) for dimension j and j + hd/2.
std::vector<double> rope(const std::vector<double>& x, std::size_t L, std::size_t H, std::size_t hd, double theta) {
    std::vector<double> out(x.size());
    for (std::size_t p = 0; p < L; ++p)
        for (std::size_t h = 0; h < H; ++h)
            for (std::size_t j = 0; j < hd / 2; ++j) {
                const double a = double(p) * std::pow(theta, -2.0 * double(j) / double(hd));
                const double x1 = x[p * H * hd + h * hd + j], x2 = x[p * H * hd + h * hd + j + hd / 2];
                out[p * H * hd + h * hd + j] = x1 * std::cos(a) - x2 * std::sin(a);
                out[p * H * hd + h * hd + j + hd / 2] = x2 * std::cos(a) + x1 * std::sin(a);
            }
    return out;
}

}  // namespace

TEST_CASE("the decoder's attention probabilities are causal distributions equal to softmax of the rotated q and k",
          "[attention]") {
    const std::size_t H = 4, hd = 16;
    for (const char* c : {"image_then_text", "two_images", "text_only"}) {
        SECTION(c) {
            const Recorded r(c);
            const std::size_t L = r.indicators.size();
            for (std::size_t layer = 0; layer < 2; ++layer) {
                const std::string at = "model.layers." + std::to_string(layer) + ".self_attn";
                INFO(at);
                const auto& P = r.rec.at(at + ".probs");
                REQUIRE(P.shape == Shape{H, L, L});
                const auto q = rope(r.rec.at(at + ".q_proj").values, L, H, hd, 10000.0);
                const auto k = rope(r.rec.at(at + ".k_proj").values, L, H, hd, 10000.0);
                double worst = 0;
                for (std::size_t h = 0; h < H; ++h)
                    for (std::size_t i = 0; i < L; ++i) {
                        const double* p = &P.values[(h * L + i) * L];
                        double sum = 0;
                        for (std::size_t j = 0; j < L; ++j) sum += p[j];
                        CHECK(std::abs(sum - 1.0) <= 1e-6);  // float32 probabilities
                        for (std::size_t j = i + 1; j < L; ++j) CHECK(p[j] == 0.0);
                        // softmax over keys 0..i of q_i·k_j / √hd, in double
                        std::vector<double> s(i + 1);
                        double m = -INFINITY, z = 0;
                        for (std::size_t j = 0; j <= i; ++j) {
                            double dot = 0;
                            for (std::size_t d = 0; d < hd; ++d)
                                dot += q[i * H * hd + h * hd + d] * k[j * H * hd + h * hd + d];
                            s[j] = dot / std::sqrt(double(hd));
                            m = std::max(m, s[j]);
                        }
                        for (double& x : s) z += x = std::exp(x - m);
                        for (std::size_t j = 0; j <= i; ++j) worst = std::max(worst, std::abs(p[j] - s[j] / z));
                    }
                CHECK(worst <= 1e-6);
                CHECK(worst > 0);  // the float32 rounding of the official softmax shows
            }
        }
    }
}

TEST_CASE("a decoding step's attention row is the last row of one pass over the longer prompt", "[attention]") {
    const Recorded longer("image_then_text", {217});
    const std::size_t L = longer.indicators.size();

    Hooks<double> hooks;
    hooks.request_attention_probs();
    std::vector<double> step_row;
    Shape step_shape;
    int seen = 0;
    hooks.add([&](const std::string& name, Matrix<double>& p, const Shape& shape) {
        if (name == "model.layers.1.self_attn.probs" && ++seen == 2) {  // the second report: the decoding step
            step_row.assign(p.begin(), p.end());
            step_shape = shape;
        }
    });
    const auto& m = tiny();
    const auto ids = parity::tiny_case("image_then_text")["input_ids"].get<std::vector<std::int64_t>>();
    KVCache<double> cache = m.new_cache();
    m.forward(m.prepare_inputs(ids, m.encode_images(pixels_of("image_then_text"), hooks), hooks), cache, hooks);
    m.decode_step(217, cache, hooks);
    REQUIRE(step_shape == Shape{4, 1, L});
    const auto& P = longer.rec.at("model.layers.1.self_attn.probs").values;
    double worst = 0;
    for (std::size_t h = 0; h < 4; ++h)
        for (std::size_t j = 0; j < L; ++j)
            worst = std::max(worst, std::abs(step_row[h * L + j] - P[(h * L + L - 1) * L + j]));
    CHECK(worst <= 1e-6);
}

TEST_CASE("the abstractor's probabilities are each image's softmax of the recorded queries and keys",
          "[attention]") {
    const std::size_t H = 4, hd = 16, Q = 8, K = 8 + 17;
    const Recorded r("two_images");
    for (std::size_t layer = 0; layer < 2; ++layer) {
        const std::string at =
            "model.visual_abstractor.encoder.layers." + std::to_string(layer) + ".crossattention.attention";
        INFO(at);
        const auto& P = r.rec.at(at + ".probs");
        REQUIRE(P.shape == Shape{2, H, Q, K});
        const auto& q = r.rec.at(at + ".query").values;  // [N, Q, H·hd]
        const auto& k = r.rec.at(at + ".key").values;    // [N, K, H·hd]
        double worst = 0;
        for (std::size_t n = 0; n < 2; ++n)
            for (std::size_t h = 0; h < H; ++h)
                for (std::size_t i = 0; i < Q; ++i) {
                    const double* p = &P.values[((n * H + h) * Q + i) * K];
                    std::vector<double> s(K);
                    double m = -INFINITY, z = 0, sum = 0;
                    for (std::size_t j = 0; j < K; ++j) {
                        double dot = 0;
                        for (std::size_t d = 0; d < hd; ++d)
                            dot += q[(n * Q + i) * H * hd + h * hd + d] * k[(n * K + j) * H * hd + h * hd + d];
                        s[j] = dot / std::sqrt(double(hd));
                        m = std::max(m, s[j]);
                    }
                    for (double& x : s) z += x = std::exp(x - m);
                    for (std::size_t j = 0; j < K; ++j) {
                        worst = std::max(worst, std::abs(p[j] - s[j] / z));
                        sum += p[j];
                    }
                    CHECK(std::abs(sum - 1.0) <= 1e-12);
                }
        CHECK(worst <= 1e-12);
    }
}

TEST_CASE("probabilities changed by a hook are the ones the values are weighed with", "[attention]") {
    // uniform attention in the abstractor's first layer: each query's context is the mean of its image's values
    const std::size_t Q = 8, K = 25, D = 64;
    const std::string at = "model.visual_abstractor.encoder.layers.0.crossattention.attention";
    Hooks<double> hooks;
    hooks.request_attention_probs();
    hooks.add([&](const std::string& name, Matrix<double>& p, const Shape&) {
        if (name == at + ".probs") p.fill(1.0 / double(K));
    });
    Recorder<double> rec(hooks);
    tiny().encode_images(pixels_of("two_images"), hooks);
    const auto& v = rec.at(at + ".value").values;  // [N, K, D]
    const auto& out = rec.at(at).values;           // [N, Q, D]
    std::vector<double> expected(out.size());
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t i = 0; i < Q; ++i)
            for (std::size_t d = 0; d < D; ++d) {
                double mean = 0;
                for (std::size_t j = 0; j < K; ++j) mean += v[(n * K + j) * D + d];
                expected[(n * Q + i) * D + d] = mean / double(K);
            }
    CHECK(parity::relative_error(out, expected) <= 1e-12);
}

TEST_CASE("attention probabilities are off unless asked for", "[attention]") {
    Hooks<double> hooks;
    Recorder<double> rec(hooks);
    CHECK(!hooks.attention_probs());
    const auto& m = tiny();
    KVCache<double> cache = m.new_cache();
    const auto ids = parity::tiny_case("image_then_text")["input_ids"].get<std::vector<std::int64_t>>();
    m.forward(m.prepare_inputs(ids, m.encode_images(pixels_of("image_then_text"), hooks), hooks), cache, hooks);
    for (const auto& kv : rec.records()) CHECK(kv.first.find(".probs") == std::string::npos);
    // asked for without a hook installed: nothing to report to
    Hooks<double> none;
    none.request_attention_probs();
    CHECK(!none.attention_probs());
}

TEST_CASE("trace --attention writes the probabilities under their names", "[attention][cli]") {
    REQUIRE(!kCli.empty());
    const std::string out = kTmp + "/trace_attention.safetensors", plain = kTmp + "/trace_no_attention.safetensors";
    const std::string base = "'" + kCli + "' trace --model '" + kTiny + "' --input-ids=1,-200,5,17,42,99,7 --image '" +
                             kTiny + "/synthetic_97x61.png' --dtype double";
    REQUIRE(WEXITSTATUS(std::system((base + " --attention --out '" + out + "'").c_str())) == 0);
    REQUIRE(WEXITSTATUS(std::system((base + " --out '" + plain + "'").c_str())) == 0);
    const Recorded r("image_then_text");
    const SafetensorsFile f(out), g(plain);
    for (const std::string name : {"model.layers.0.self_attn.probs", "model.layers.1.self_attn.probs",
                                   "model.visual_abstractor.encoder.layers.0.crossattention.attention.probs",
                                   "model.visual_abstractor.encoder.layers.1.crossattention.attention.probs"}) {
        INFO(name);
        REQUIRE(f.find(name) != nullptr);
        CHECK(f.find(name)->dtype == DType::F64);
        CHECK(f.find(name)->shape == r.rec.at(name).shape);
        CHECK(parity::relative_error(read_tensor<double>(f, name), r.rec.at(name).values) <= 1e-12);
        CHECK(g.find(name) == nullptr);
    }
    // the rest of the file is what trace writes without the flag
    CHECK(parity::relative_error(read_tensor<double>(f, "logits"), read_tensor<double>(g, "logits")) == 0.0);
}
