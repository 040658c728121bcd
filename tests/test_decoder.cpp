// The language decoder alone (embed_tokens, layers with the modality-adaptive
// module, norm, lm_head, key/value cache): fed the reference's spliced
// decoder input, it must reproduce every decoder activation of the official
// code, the prompt logits and the greedy decoding steps; then the
// configurations the reference set does not cover, against fixtures of a
// float64 re-derivation (tests/fixtures/make_decoder_variants.py) that is
// itself checked against the official activations.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "mplug_owl2/language/llama_model.hpp"
#include "mplug_owl2/model/prepare_inputs.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kTiny = parity::tiny_dir();
const std::string kVariants = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/decoder_variants";

template <class T>
struct Decoder {
    LlamaModel<T> model;
    Linear<T> lm_head;

    Decoder(const TensorSource& src, const TextConfig& c) {
        WeightLoader w(src);
        model.load(w, c);
        const std::string head = c.tie_word_embeddings ? "model.embed_tokens" : "lm_head";
        lm_head.load(w, head, static_cast<std::size_t>(c.hidden_size), static_cast<std::size_t>(c.vocab_size), false);
        lm_head.name = "lm_head";
    }

    Matrix<T> logits(const Matrix<T>& embeds, const ModalityIndicators& ind, KVCache<T>& cache,
                     const Hooks<T>& hooks) const {
        return lm_head.forward(model.forward(embeds, ind, cache, hooks), hooks);
    }
};

template <class T>
std::int64_t argmax_last(const Matrix<T>& logits) {
    const std::size_t r = logits.shape(0) - 1;
    std::size_t best = 0;
    for (std::size_t j = 1; j < logits.shape(1); ++j)
        if (logits(r, j) > logits(r, best)) best = j;
    return static_cast<std::int64_t>(best);
}

// Greedy decoding as the reference ran it: n steps, each feeding the previous
// argmax (a text position) through the cache; returns the fed ids and the
// step logits [n, V].
template <class T>
std::pair<std::vector<std::int64_t>, Matrix<T>> greedy(const Decoder<T>& d, const Matrix<T>& prompt_logits,
                                                        KVCache<T>& cache, std::size_t n) {
    Hooks<T> none;
    std::vector<std::int64_t> ids;
    Matrix<T> steps = Matrix<T>::from_shape({n, prompt_logits.shape(1)});
    std::int64_t next = argmax_last(prompt_logits);
    for (std::size_t i = 0; i < n; ++i) {
        ids.push_back(next);
        const Matrix<T> l = d.logits(d.model.embed_tokens.forward({next}, none), {0}, cache, none);
        xt::view(steps, i, xt::all()) = xt::view(l, 0, xt::all());
        next = argmax_last(l);
    }
    return {ids, steps};
}

template <class T>
Matrix<T> to_matrix(const xt::xarray<double>& a) {
    Matrix<T> m = Matrix<T>::from_shape({a.shape(0), a.size() / a.shape(0)});
    std::copy(a.begin(), a.end(), m.begin());
    return m;
}

ModalityIndicators to_indicators(const xt::xarray<double>& a) {
    return ModalityIndicators(a.begin(), a.end());
}

bool is_decoder_activation(const std::string& n) {
    return n == "model" || n == "lm_head" || n == "logits" || n == "model.norm" || n == "model.embed_tokens" ||
           n.rfind("model.layers.", 0) == 0;
}

}  // namespace

TEMPLATE_TEST_CASE("decoder reproduces every official activation and greedy step of each tiny case", "[decoder]",
                   float, double) {
    using T = TestType;
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    Decoder<T> d(weights, cfg.text);
    for (const auto& c : parity::tiny_cases()) {
        const std::string name = c["name"];
        SECTION(name) {
            parity::Case ref(name);
            if (!c["ablate"].is_null()) d.model.mam.policy = mam_policy_from_name(c["ablate"]["policy"]);
            const std::string input = ref.has("decoder.inputs_embeds") ? "decoder.inputs_embeds" : "model.embed_tokens";
            const Matrix<T> embeds = to_matrix<T>(ref.get(input));
            const ModalityIndicators ind = to_indicators(ref.get("decoder.modality_indicators"));

            Hooks<T> hooks;
            Recorder<T> rec(hooks);
            KVCache<T> cache = d.model.new_cache();
            Matrix<T> logits = d.logits(embeds, ind, cache, hooks);
            hooks.report("logits", logits);
            CHECK(cache.length == embeds.shape(0));

            std::size_t compared = 0;
            for (const auto& n : ref.names()) {
                if (!is_decoder_activation(n) || n == "model.embed_tokens") continue;
                REQUIRE(rec.contains(n));
                ref.check(n, rec.at(n).values, parity::tolerance<T>());
                ++compared;
            }
            CHECK(compared == 2 * 12 + 4);  // 12 per layer; model, model.norm, lm_head, logits

            const auto expected_ids = c["generated_ids"].get<std::vector<std::int64_t>>();
            const auto run = greedy(d, logits, cache, expected_ids.size());
            ref.check("generate.step_logits", run.second, parity::tolerance<T>());
            parity::check_greedy_ids<T>(run.first, expected_ids, ref.get("logits"), ref.get("generate.step_logits"));
            CHECK(cache.length == embeds.shape(0) + expected_ids.size());
        }
    }
}

namespace {

nlohmann::json variants() {
    std::ifstream in(kVariants + "/variants.json");
    REQUIRE(in.good());
    nlohmann::json j;
    in >> j;
    return j["variants"];
}

MamRouting routing_from_json(const nlohmann::json& j) {
    MamRouting r;
    if (j.is_null()) return r;
    r.policy = mam_policy_from_name(j["policy"]);
    if (j.contains("parts"))
        for (const auto& p : j["parts"]) r.parts.insert(mam_part_from_name(p));
    if (j.contains("layers"))
        for (const auto& l : j["layers"]) r.layers.insert(l.get<std::size_t>());
    return r;
}

}  // namespace

TEMPLATE_TEST_CASE("decoder matches the re-derivation on configurations beyond the reference set", "[decoder][variants]",
                   float, double) {
    using T = TestType;
    for (const auto& v : variants()) {
        const std::string name = v["name"];
        SECTION(name) {
            const ModelConfig cfg = parse_config(v["config"].dump(), name);
            SafetensorsFile weights(kVariants + "/" + v["weights"].get<std::string>());
            Decoder<T> d(weights, cfg.text);
            d.model.mam = routing_from_json(v["mam"]);
            parity::Case ref(name, kVariants);

            // the splice: image features in, decoder input and routes out
            std::vector<Matrix<T>> features;
            if (ref.has("image_features")) {
                const auto f = ref.get("image_features");
                for (std::size_t n = 0; n < f.shape(0); ++n) {
                    const xt::xarray<double> one = xt::view(f, n, xt::all(), xt::all());
                    features.push_back(to_matrix<T>(one));
                }
            }
            REQUIRE(features.size() == v["images"].get<std::size_t>());
            Hooks<T> hooks;
            Recorder<T> rec(hooks);
            const auto in = prepare_inputs_for_multimodal<T>(v["input_ids"].get<std::vector<std::int64_t>>(), features,
                                                             d.model.embed_tokens, hooks);
            CHECK(in.modality_indicators == to_indicators(ref.get("decoder.modality_indicators")));

            KVCache<T> cache = d.model.new_cache();
            Matrix<T> logits = d.logits(in.inputs_embeds, in.modality_indicators, cache, hooks);
            hooks.report("logits", logits);
            std::size_t compared = 0;
            for (const auto& n : ref.names()) {
                if (n == "decoder.modality_indicators" || n == "image_features" || n == "generate.step_logits") continue;
                REQUIRE(rec.contains(n));
                ref.check(n, rec.at(n).values, parity::tolerance<T>());
                ++compared;
            }
            CHECK(compared == 3 + 3 * d.model.layers.size());

            const auto expected_ids = v["generated_ids"].get<std::vector<std::int64_t>>();
            const auto run = greedy(d, logits, cache, expected_ids.size());
            ref.check("generate.step_logits", run.second, parity::tolerance<T>());
            parity::check_greedy_ids<T>(run.first, expected_ids, ref.get("logits"), ref.get("generate.step_logits"));
        }
    }
}

TEST_CASE("the multiway wrapper routes every position through the copy its policy picks", "[decoder][mam]") {
    // copy 0 doubles its input, copy 1 triples it and adds 1: the output shows the route of each row
    Multiway<Linear<double>> m;
    m.name = "model.layers.1.self_attn.k_proj";
    m.part = MamPart::KProj;
    m.layer = 1;
    m.multiway[0].weight = xt::eye<double>(2) * 2.0;
    m.multiway[1].weight = xt::eye<double>(2) * 3.0;
    m.multiway[1].bias = {1.0, 1.0};
    m.multiway[0].name = m.name + ".multiway.0";
    m.multiway[1].name = m.name + ".multiway.1";
    const Matrix<double> x = {{1, 10}, {2, 20}, {3, 30}, {4, 40}};
    const ModalityIndicators ind = {0, 1, 1, 0};

    auto routes = [&](const MamRouting& r) {
        Hooks<double> hooks;
        std::vector<int> seen;
        hooks.add([&](const std::string& name, Matrix<double>& v, const Shape& shape) {
            if (name != m.name) return;  // each copy also reports its own rows (tests/test_hooks_model.cpp)
            CHECK(shape == Shape{4, 2});
            for (std::size_t i = 0; i < 4; ++i) seen.push_back(v(i, 0) == 2 * x(i, 0) ? 0 : 1);
        });
        const Matrix<double> y = m.forward(x, ind, r, hooks);
        for (std::size_t i = 0; i < 4; ++i)
            for (std::size_t j = 0; j < 2; ++j)
                CHECK(y(i, j) == (seen[i] == 0 ? 2 * x(i, j) : 3 * x(i, j) + 1));
        return seen;
    };
    MamRouting r;
    CHECK(routes(r) == std::vector<int>{0, 1, 1, 0});
    r.policy = MamPolicy::Text;
    CHECK(routes(r) == std::vector<int>{0, 0, 0, 0});
    r.policy = MamPolicy::Visual;
    CHECK(routes(r) == std::vector<int>{1, 1, 1, 1});
    r.policy = MamPolicy::Swap;
    CHECK(routes(r) == std::vector<int>{1, 0, 0, 1});
    r.parts = {MamPart::KProj, MamPart::VProj};
    CHECK(routes(r) == std::vector<int>{1, 0, 0, 1});
    r.parts = {MamPart::InputLayernorm};  // another part: official routing here
    CHECK(routes(r) == std::vector<int>{0, 1, 1, 0});
    r.parts = {};
    r.layers = {0};  // another layer: official routing here
    CHECK(routes(r) == std::vector<int>{0, 1, 1, 0});
    r.layers = {0, 1};
    CHECK(routes(r) == std::vector<int>{1, 0, 0, 1});

    Hooks<double> none;
    CHECK_THROWS_WITH(m.forward(x, {0, 1, 2, 0}, MamRouting{}, none),
                      Catch::Contains("k_proj") && Catch::Contains("indicator 2 at position 2"));
    CHECK_THROWS_WITH(m.forward(x, {0, 1}, MamRouting{}, none), Catch::Contains("2 modality indicators for 4 positions"));
    CHECK(mam_part_from_name("post_attention_layernorm") == MamPart::PostAttentionLayernorm);
    CHECK(mam_policy_from_name("swap") == MamPolicy::Swap);
    CHECK_THROWS_WITH(mam_policy_from_name("random"), Catch::Contains("official, text, visual or swap"));
}

TEMPLATE_TEST_CASE("a prompt continued through the cache gives the logits of one forward pass", "[decoder][cache]",
                   float, double) {
    using T = TestType;
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    Decoder<T> d(weights, cfg.text);
    parity::Case ref("image_then_text");
    const Matrix<T> embeds = to_matrix<T>(ref.get("decoder.inputs_embeds"));
    const ModalityIndicators ind = to_indicators(ref.get("decoder.modality_indicators"));
    const std::size_t L = embeds.shape(0), split = 9;
    Hooks<T> none;

    KVCache<T> whole = d.model.new_cache();
    const Matrix<T> once = d.logits(embeds, ind, whole, none);

    // the first rows, then the rest as one chunk, then again one row at a time
    KVCache<T> chunked = d.model.new_cache();
    d.logits(xt::view(embeds, xt::range(0, split), xt::all()), ModalityIndicators(ind.begin(), ind.begin() + split),
             chunked, none);
    const Matrix<T> rest = d.logits(xt::view(embeds, xt::range(split, L), xt::all()),
                                    ModalityIndicators(ind.begin() + split, ind.end()), chunked, none);
    CHECK(chunked.length == L);
    KVCache<T> stepped = d.model.new_cache();
    d.logits(xt::view(embeds, xt::range(0, split), xt::all()), ModalityIndicators(ind.begin(), ind.begin() + split),
             stepped, none);
    Matrix<T> rows = Matrix<T>::from_shape({L - split, once.shape(1)});
    for (std::size_t i = split; i < L; ++i)
        xt::view(rows, i - split, xt::all()) =
            xt::view(d.logits(xt::view(embeds, xt::range(i, i + 1), xt::all()), {ind[i]}, stepped, none), 0, xt::all());

    // equal up to rounding: the attention softmax rounds to float32 whatever
    // T is, and in float every product does, summed in a shape-dependent order
    const double tol = sizeof(T) == 8 ? 1e-6 : 1e-5;
    const Matrix<T> expect = xt::view(once, xt::range(split, L), xt::all());
    INFO("chunk " << parity::relative_error(rest, expect) << ", steps " << parity::relative_error(rows, expect));
    CHECK(parity::relative_error(rest, expect) <= tol);
    CHECK(parity::relative_error(rows, expect) <= tol);
}

TEST_CASE("rotary tables follow rope_theta and the linear and dynamic rope_scaling formulas", "[decoder][rope]") {
    TextConfig c;
    c.hidden_size = 64;
    c.num_attention_heads = 4;  // hd 16
    c.max_position_embeddings = 32;
    c.rope_theta = 500.0;
    RotaryEmbedding plain;
    plain.configure(c);
    Matrix<double> cos, sin;
    plain.tables<double>(5, 3, 8, cos, sin);
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t j = 0; j < 8; ++j) {
            const double angle = double(5 + r) / std::pow(500.0, double(2 * j) / 16.0);
            CHECK(cos(r, j) == Approx(std::cos(angle)).epsilon(1e-14));
            CHECK(cos(r, j + 8) == cos(r, j));
            CHECK(sin(r, j + 8) == Approx(std::sin(angle)).epsilon(1e-14));
        }
    CHECK(max_positions(c) == 32);

    // linear: position p rotates as p / factor
    c.rope_scaling = RopeScaling{"linear", 4.0};
    RotaryEmbedding linear;
    linear.configure(c);
    Matrix<double> lcos, lsin, pcos, psin;
    linear.tables<double>(8, 1, 9, lcos, lsin);
    plain.tables<double>(2, 1, 3, pcos, psin);
    CHECK(parity::relative_error(lcos, pcos) < 1e-15);
    CHECK(parity::relative_error(lsin, psin) < 1e-15);
    CHECK(max_positions(c) == 128);

    // dynamic: the base grows once a call sees more than max_position_embeddings keys
    c.rope_scaling = RopeScaling{"dynamic", 2.0};
    RotaryEmbedding dynamic;
    dynamic.configure(c);
    CHECK(dynamic.base_for(32) == 500.0);
    CHECK(dynamic.base_for(40) == Approx(500.0 * std::pow(2.0 * 40 / 32 - 1.0, 16.0 / 14.0)).epsilon(1e-15));
    Matrix<double> dcos, dsin;
    dynamic.tables<double>(3, 1, 40, dcos, dsin);
    const double base = dynamic.base_for(40);
    CHECK(dsin(0, 1) == Approx(std::sin(3.0 / std::pow(base, 2.0 / 16.0))).epsilon(1e-14));
    CHECK(max_positions(c) == std::numeric_limits<std::size_t>::max());
}

TEST_CASE("a hook that changes an activation changes what follows", "[decoder][hooks]") {
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    Decoder<double> d(weights, cfg.text);
    parity::Case ref("image_then_text");
    const Matrix<double> embeds = to_matrix<double>(ref.get("decoder.inputs_embeds"));
    const ModalityIndicators ind = to_indicators(ref.get("decoder.modality_indicators"));
    Hooks<double> hooks;
    // values zeroed after the multiway v_proj: the attention output is then o_proj(0) = 0 (no biases)
    hooks.add([](const std::string& name, Matrix<double>& v, const Shape&) {
        if (name == "model.layers.0.self_attn.v_proj") v.fill(0.0);
    });
    Recorder<double> rec(hooks);
    KVCache<double> cache = d.model.new_cache();
    d.logits(embeds, ind, cache, hooks);
    for (double x : rec.at("model.layers.0.self_attn.v_proj").values) CHECK(x == 0.0);
    for (double x : rec.at("model.layers.0.self_attn").values) CHECK(x == 0.0);
    // and the zeroed values went into the cache
    for (double x : cache.layers[0].values) CHECK(x == 0.0);
    CHECK(parity::relative_error(rec.at("lm_head").values, ref.get("lm_head")) > 1e-3);
}
