// The whole model (MPLUGOwl2LlamaForCausalLM): from the reference's pixel
// values and prompt ids to every activation the official code recorded, the
// spliced decoder input, the logits and the greedy steps through the
// key/value cache; then generation (stopping, sampling), loading (missing,
// mis-shaped, unused and tied tensors) and the prompt errors.
#include <catch2/catch.hpp>

#include <list>
#include <map>
#include <set>

#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kTiny = parity::tiny_dir();

// The checkpoint with some tensors hidden and some added (name -> [n] zeros).
class EditedSource : public TensorSource {
public:
    EditedSource(const TensorSource& base, std::set<std::string> hidden, std::vector<std::string> added = {})
        : base_(base), hidden_(std::move(hidden)) {
        for (const auto& n : added) {
            zeros_.emplace_back(16, 0);
            TensorInfo t;
            t.dtype = DType::F32;
            t.shape = {4};
            t.data = zeros_.back().data();
            t.nbytes = 16;
            added_[n] = t;
        }
    }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& n : base_.names())
            if (!hidden_.count(n)) out.push_back(n);
        for (const auto& kv : added_) out.push_back(kv.first);
        return out;
    }
    const TensorInfo* find(const std::string& name) const override {
        if (hidden_.count(name)) return nullptr;
        auto it = added_.find(name);
        return it != added_.end() ? &it->second : base_.find(name);
    }
    std::string origin(const std::string& name) const override { return base_.origin(name); }

private:
    const TensorSource& base_;
    std::set<std::string> hidden_;
    std::list<std::vector<std::uint8_t>> zeros_;
    std::map<std::string, TensorInfo> added_;
};

template <class T>
const MplugOwl2LlamaForCausalLM<T>& tiny_model() {
    static const MplugOwl2LlamaForCausalLM<T> m = load_model<T>(kTiny);
    return m;
}

std::vector<std::int64_t> ids_of(const nlohmann::json& c) { return c["input_ids"].get<std::vector<std::int64_t>>(); }

}  // namespace

namespace {

// Every tiny case from its pixel values: every recorded activation, the
// decoding steps' logits and the greedy ids against the reference.
template <class T>
void check_every_case(MplugOwl2LlamaForCausalLM<T> model) {
    for (const auto& c : parity::tiny_cases()) {
        const std::string name = c["name"];
        SECTION(name) {
            parity::Case ref(name);
            MamRouting routing;
            if (!c["ablate"].is_null()) routing.policy = mam_policy_from_name(c["ablate"]["policy"]);
            model.set_mam_routing(routing);
            const auto pixels = ref.pixel_values<T>(c["images"].size());

            Hooks<T> hooks;
            Recorder<T> rec(hooks);
            KVCache<T> cache = model.new_cache();
            const auto in = model.prepare_inputs(ids_of(c), model.encode_images(pixels, hooks), hooks);
            const Matrix<T> logits = model.forward(in, cache, hooks);
            rec.pause();

            const auto expected_ids = c["generated_ids"].get<std::vector<std::int64_t>>();
            GenerationConfig g;
            g.max_new_tokens = expected_ids.size();
            g.stop_at_eos = false;
            const Generation<T> gen = model.generate(logits, cache, g, hooks);
            CHECK(gen.stop == StopReason::Budget);

            for (const std::string a : c["activations"]) {
                if (a == "decoder.modality_indicators") {
                    const auto r = ref.get(a);
                    CHECK(in.modality_indicators == ModalityIndicators(r.begin(), r.end()));
                } else if (a == "generate.step_logits") {
                    ref.check(a, gen.step_logits, parity::tolerance<T>());
                } else {
                    REQUIRE(rec.contains(a));
                    CHECK(rec.at(a).shape == ref.shape(a));
                    ref.check(a, rec.at(a).values, parity::tolerance<T>());
                }
            }
            parity::check_greedy_ids<T>(gen.ids, expected_ids, ref.get("logits"), ref.get("generate.step_logits"));
        }
    }
}

}  // namespace

TEMPLATE_TEST_CASE("the whole model reproduces every activation of every tiny case from its pixel values", "[model]",
                   float, double) {
    using T = TestType;
    CHECK(tiny_model<T>().unused_tensors.empty());
    check_every_case(tiny_model<T>());
}

TEST_CASE("with the decoder's weights packed the float model still reproduces every tiny case", "[model][packed]") {
    MplugOwl2LlamaForCausalLM<float> model = tiny_model<float>();
    const std::size_t layers = model.model.layers.size();
    REQUIRE(model.pack_decoder_weights() == 9 * layers + 1);  // q, k ×2, v ×2, o, gate, up, down per layer; lm_head
    CHECK(model.pack_decoder_weights() == 0);                // packed once
    CHECK(model.lm_head.packed());
    CHECK(model.model.layers[0].self_attn.k_proj.multiway[1].packed());
    CHECK(model.model.layers[0].self_attn.q_proj.weight.size() == 0);  // the row-major copy is freed
    // the packed matrices hold the checkpoint's values exactly
    const auto& original = tiny_model<float>().model.layers[layers - 1].mlp.down_proj;
    const Matrix<float> unpacked = model.model.layers[layers - 1].mlp.down_proj.dense_weight();
    CHECK(unpacked.shape() == original.weight.shape());
    CHECK(std::equal(unpacked.begin(), unpacked.end(), original.weight.begin()));
    check_every_case(model);
    // double models keep their weights as they are
    MplugOwl2LlamaForCausalLM<double> d = tiny_model<double>();
    CHECK(d.pack_decoder_weights() == 0);
    CHECK_FALSE(d.lm_head.packed());
}

TEST_CASE("generation stops at any end-of-sequence id or the position limit, after feeding what it chose",
          "[model][generate]") {
    using T = double;
    const auto c = parity::tiny_case("image_then_text");
    parity::Case ref("image_then_text");
    const auto greedy = c["generated_ids"].get<std::vector<std::int64_t>>();  // 217 167 281 132 265 220
    const auto steps = ref.get("generate.step_logits");
    const ModelConfig config = load_config(kTiny + "/config.json");
    const SafetensorsFile weights(kTiny + "/model.safetensors");
    Hooks<T> hooks;
    const auto pixels = ref.pixel_values<T>(1);
    const std::size_t L = ref.shape("logits")[0];

    auto run = [&](const GenerationConfig& g, const ModelConfig& cfg = load_config(kTiny + "/config.json")) {
        const auto model = load_model<T>(weights, cfg);
        KVCache<T> cache = model.new_cache();
        const auto in = model.prepare_inputs(ids_of(c), model.encode_images(pixels, hooks), hooks);
        const Matrix<T> logits = model.forward(in, cache, hooks);
        auto gen = model.generate(logits, cache, g, hooks);
        CHECK(cache.length == L + gen.step_logits.shape(0));
        return gen;
    };
    auto rows_match = [&](const Matrix<T>& ours) {
        for (std::size_t i = 0; i < ours.shape(0); ++i)
            for (std::size_t j = 0; j < ours.shape(1); ++j) REQUIRE(std::abs(ours(i, j) - steps(i, j)) < 1e-9);
    };

    SECTION("an id of the eos list ends generation and is not fed") {
        GenerationConfig g;
        g.max_new_tokens = 6;
        g.eos_token_ids = {999, greedy[2]};
        const auto gen = run(g);
        CHECK(gen.stop == StopReason::Eos);
        CHECK(gen.ids == std::vector<std::int64_t>(greedy.begin(), greedy.begin() + 3));
        CHECK(gen.step_logits.shape(0) == 2);
        rows_match(gen.step_logits);
    }
    SECTION("without stopping the eos id is fed like any other") {
        GenerationConfig g;
        g.max_new_tokens = 6;
        g.eos_token_ids = {greedy[2]};
        g.stop_at_eos = false;
        const auto gen = run(g);
        CHECK(gen.stop == StopReason::Budget);
        CHECK(gen.ids == greedy);
        rows_match(gen.step_logits);
    }
    SECTION("the config's eos_token_id is the default list") {
        GenerationConfig g;
        g.max_new_tokens = 6;
        ModelConfig cfg = config;
        cfg.text.eos_token_id = {5, greedy[1]};
        const auto gen = run(g, cfg);
        CHECK(gen.stop == StopReason::Eos);
        CHECK(gen.ids == std::vector<std::int64_t>(greedy.begin(), greedy.begin() + 2));
    }
    SECTION("the position limit ends generation") {
        ModelConfig cfg = config;
        cfg.text.max_position_embeddings = static_cast<int>(L + 2);
        GenerationConfig g;
        g.max_new_tokens = 6;
        const auto gen = run(g, cfg);
        CHECK(gen.stop == StopReason::ContextFull);
        CHECK(gen.ids == std::vector<std::int64_t>(greedy.begin(), greedy.begin() + 3));
        CHECK(gen.step_logits.shape(0) == 2);
        rows_match(gen.step_logits);
    }
    SECTION("from the prompt and its pixels in one call") {
        const auto model = load_model<T>(weights, config);
        GenerationConfig g;
        g.max_new_tokens = 6;
        const auto gen = model.generate(ids_of(c), pixels, g, hooks);
        CHECK(gen.stop == StopReason::Budget);
        CHECK(gen.ids == greedy);
        rows_match(gen.step_logits);
        CHECK_THROWS_WITH(model.generate({1, 5}, pixels, g, hooks), Catch::Contains("0 image markers (-200) for 1 image"));
    }
    SECTION("the default config generates greedily: up to 512 ids or the end-of-sequence id") {
        const GenerationConfig g;
        CHECK(g.max_new_tokens == 512);
        CHECK_FALSE(g.sampling.do_sample);
        CHECK(g.stop_at_eos);
        const auto gen = run(g);
        REQUIRE(gen.ids.size() >= greedy.size());
        CHECK(std::vector<std::int64_t>(gen.ids.begin(), gen.ids.begin() + 6) == greedy);
        const auto eos = std::find(gen.ids.begin(), gen.ids.end(), config.text.eos_token_id.front());
        if (eos == gen.ids.end()) {
            CHECK(gen.stop == StopReason::Budget);
            CHECK(gen.ids.size() == 512);
        } else {
            CHECK(gen.stop == StopReason::Eos);
            CHECK(eos + 1 == gen.ids.end());
        }
    }
    SECTION("sampling with top_k 1 is greedy whatever the seed") {
        GenerationConfig g;
        g.max_new_tokens = 6;
        g.stop_at_eos = false;
        g.sampling.do_sample = true;
        g.sampling.temperature = 5.0;
        g.sampling.top_k = 1;
        g.sampling.seed = 12345;
        CHECK(run(g).ids == greedy);
    }
    SECTION("sampling is reproducible from its seed") {
        GenerationConfig g;
        g.max_new_tokens = 6;
        g.stop_at_eos = false;
        g.sampling.do_sample = true;
        g.sampling.top_p = 0.9;
        g.sampling.seed = 7;
        const auto a = run(g), b = run(g);
        CHECK(a.ids == b.ids);
        CHECK(a.step_logits == b.step_logits);
    }
}

TEST_CASE("the sampler applies temperature then top-k then top-p as Hugging Face does", "[model][sampling]") {
    const std::vector<double> logits = {1.0, 3.0, 2.0, 3.0, 0.5};
    auto softmax_of = [](const std::vector<double>& x, const std::vector<int>& keep) {
        std::vector<double> p(x.size(), 0.0);
        double sum = 0;
        for (int i : keep) sum += std::exp(x[i]);
        for (int i : keep) p[i] = std::exp(x[i]) / sum;
        return p;
    };
    auto near = [](const std::vector<double>& a, const std::vector<double>& b) {
        REQUIRE(a.size() == b.size());
        for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).margin(1e-15));
    };
    SamplingConfig c;
    c.do_sample = true;

    // plain: softmax of the logits
    near(Sampler(c).probabilities(logits.data(), 5), softmax_of(logits, {0, 1, 2, 3, 4}));
    // temperature 2: softmax of logits / 2
    c.temperature = 2.0;
    std::vector<double> halved;
    for (double v : logits) halved.push_back(v / 2);
    near(Sampler(c).probabilities(logits.data(), 5), softmax_of(halved, {0, 1, 2, 3, 4}));
    // top-k 1 keeps both tied maxima
    c.temperature = 1.0;
    c.top_k = 1;
    near(Sampler(c).probabilities(logits.data(), 5), softmax_of(logits, {1, 3}));
    // top-k 3: the two 3.0s and the 2.0
    c.top_k = 3;
    near(Sampler(c).probabilities(logits.data(), 5), softmax_of(logits, {1, 2, 3}));
    // top-p: ascending probabilities are dropped while their running sum stays <= 1 − p
    c.top_k = 0;
    const auto p = softmax_of(logits, {0, 1, 2, 3, 4});  // order ascending: 4, 0, 2, {1, 3}
    c.top_p = 1.0 - (p[4] + p[0]) - 1e-12;  // drops 4 and 0, keeps 2
    near(Sampler(c).probabilities(logits.data(), 5), softmax_of(logits, {1, 2, 3}));
    c.top_p = 0.0;  // only the most likely stays (the later of the tie in ascending order)
    const auto only = Sampler(c).probabilities(logits.data(), 5);
    CHECK(only[0] + only[2] + only[4] == 0.0);
    CHECK(only[1] + only[3] == Approx(1.0));
    // temperature then top-k: the kth value is taken after scaling
    c = SamplingConfig{};
    c.do_sample = true;
    c.temperature = 0.5;
    c.top_k = 2;
    std::vector<double> doubled;
    for (double v : logits) doubled.push_back(v * 2);
    near(Sampler(c).probabilities(logits.data(), 5), softmax_of(doubled, {1, 3}));

    // draws follow the probabilities (20000 draws, fixed seed)
    c = SamplingConfig{};
    c.do_sample = true;
    c.seed = 3;
    Sampler s(c);
    std::vector<double> freq(5, 0.0);
    for (int i = 0; i < 20000; ++i) freq[static_cast<std::size_t>(s.pick(logits.data(), 5))] += 1.0 / 20000;
    const auto want = softmax_of(logits, {0, 1, 2, 3, 4});
    for (std::size_t i = 0; i < 5; ++i) CHECK(std::abs(freq[i] - want[i]) < 0.01);
    // greedy: the first of tied maxima
    CHECK(Sampler(SamplingConfig{}).pick(logits.data(), 5) == 1);
    // bad settings are named
    SamplingConfig bad;
    bad.temperature = 0;
    CHECK_THROWS_WITH(Sampler{bad}, Catch::Contains("temperature"));
    bad.temperature = 1;
    bad.top_p = 1.5;
    CHECK_THROWS_WITH(Sampler{bad}, Catch::Contains("top_p"));
}

TEST_CASE("prompts the model cannot take are refused with the reason", "[model][prompt]") {
    const auto& model = tiny_model<double>();
    Hooks<double> hooks;
    const Matrix<double> image = xt::zeros<double>({std::size_t(9), std::size_t(64)});
    auto prep = [&](std::vector<std::int64_t> ids, std::size_t images) {
        return model.prepare_inputs(ids, std::vector<Matrix<double>>(images, image), hooks);
    };
    CHECK_THROWS_WITH(prep({}, 0), Catch::Contains("empty"));
    CHECK_THROWS_WITH(prep({1, 5, -3}, 0), Catch::Contains("id -3 at position 2") && Catch::Contains("-200"));
    CHECK_THROWS_WITH(prep({1, 320}, 0), Catch::Contains("id 320 at position 1") && Catch::Contains("[0, 320)"));
    CHECK_THROWS_WITH(prep({1, -200, 5}, 0), Catch::Contains("1 image marker (-200) for 0 images"));
    CHECK_THROWS_WITH(prep({1, -200, 5, -200}, 1), Catch::Contains("2 image markers (-200) for 1 image"));
    CHECK_THROWS_WITH(prep({1, 5}, 1), Catch::Contains("0 image markers (-200) for 1 image"));
    CHECK_THROWS_WITH(prep({-200}, 1), Catch::Contains("image marker alone"));
    CHECK_THROWS_WITH(model.prepare_inputs({1, -200}, {Matrix<double>(xt::zeros<double>({std::size_t(9), std::size_t(32)}))},
                                           hooks),
                      Catch::Contains("image 0 features") && Catch::Contains("64 columns"));
    // positions: a prompt longer than max_position_embeddings (no rope_scaling) is refused
    ModelConfig cfg = load_config(kTiny + "/config.json");
    cfg.text.max_position_embeddings = 14;
    const auto small = load_model<double>(SafetensorsFile(kTiny + "/model.safetensors"), cfg);
    KVCache<double> cache = small.new_cache();
    const auto in = small.prepare_inputs({1, -200, 5, 17, 42, 99, 7}, {image}, hooks);  // 15 positions
    CHECK_THROWS_WITH(small.forward(in, cache, hooks),
                      Catch::Contains("15 positions") && Catch::Contains("max_position_embeddings 14"));
    // a routing for a layer that does not exist
    MamRouting r;
    r.policy = MamPolicy::Swap;
    r.layers = {2};
    MplugOwl2LlamaForCausalLM<double> routed = model;
    CHECK_THROWS_WITH(routed.set_mam_routing(r), Catch::Contains("layer 2 does not exist"));
}

TEST_CASE("a prompt may start with an image and hold several in a row", "[model][prompt]") {
    const auto& model = tiny_model<double>();
    Hooks<double> hooks;
    std::map<std::string, int> calls;
    hooks.add([&](const std::string& name, Matrix<double>& v, const Shape&) {
        if (name == "model.embed_tokens") calls[std::to_string(v.shape(0))]++;
    });
    Matrix<double> a = xt::ones<double>({std::size_t(9), std::size_t(64)}), b = a * 2.0;
    const auto in = model.prepare_inputs({-200, -200, 1, 7, -200}, {a, b, a}, hooks);
    REQUIRE(in.inputs_embeds.shape(0) == 9 + 9 + 2 + 9);
    const ModalityIndicators want = [] {
        ModalityIndicators m(29, 1);
        m[18] = m[19] = 0;
        return m;
    }();
    CHECK(in.modality_indicators == want);
    CHECK(in.inputs_embeds(0, 0) == 1.0);
    CHECK(in.inputs_embeds(9, 5) == 2.0);
    CHECK(in.inputs_embeds(18, 3) == model.model.embed_tokens.weight(1, 3));
    CHECK(in.inputs_embeds(19, 3) == model.model.embed_tokens.weight(7, 3));
    CHECK(in.inputs_embeds(20, 0) == 1.0);
    // embed_tokens runs once per marker on the text before it, as the official loop does
    CHECK(calls == std::map<std::string, int>{{"0", 2}, {"2", 1}});
}

TEST_CASE("loading names missing and mis-shaped tensors and lists unused ones", "[model][load]") {
    const ModelConfig config = load_config(kTiny + "/config.json");
    SafetensorsFile file(kTiny + "/model.safetensors");

    EditedSource missing(file, {"model.layers.1.self_attn.v_proj.multiway.1.weight"});
    CHECK_THROWS_WITH(load_model<float>(missing, config),
                      Catch::Contains("model.layers.1.self_attn.v_proj.multiway.1.weight") && Catch::Contains("missing"));

    ModelConfig wide = config;
    wide.text.intermediate_size = 128;
    CHECK_THROWS_WITH(load_model<float>(file, wide), Catch::Contains("model.layers.0.mlp.gate_proj.weight") &&
                                                         Catch::Contains("expected shape [128, 64]") &&
                                                         Catch::Contains("found [160, 64]"));

    EditedSource extra(file, {}, {"model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.1.self_attn.rotary_emb.inv_freq"});
    const auto m = load_model<float>(extra, config);
    CHECK(m.unused_tensors == std::vector<std::string>{"model.layers.0.self_attn.rotary_emb.inv_freq",
                                                       "model.layers.1.self_attn.rotary_emb.inv_freq"});

    // lm_head.weight is required unless the embeddings are tied
    EditedSource headless(file, {"lm_head.weight"});
    CHECK_THROWS_WITH(load_model<float>(headless, config), Catch::Contains("lm_head.weight"));
    ModelConfig tied = config;
    tied.text.tie_word_embeddings = true;
    const auto t = load_model<double>(headless, tied);
    CHECK(t.lm_head.weight == t.model.embed_tokens.weight);
    CHECK(t.unused_tensors.empty());
    const auto t2 = load_model<double>(file, tied);  // a stored head is ignored then
    CHECK(t2.lm_head.weight == t2.model.embed_tokens.weight);
    CHECK(t2.unused_tensors == std::vector<std::string>{"lm_head.weight"});
}
