// Observation and intervention through hooks on the whole tiny model, in
// double: every official module reports (the module tree taken from the
// checkpoint's tensor names plus the official parameter-free activation
// modules); hooks that only read, or replace a value by an equal one,
// change nothing; zeroing, patching and per-copy edits change exactly what
// the computation says they must — causality keeps the positions before an
// edit as they were, a head zeroed in its probabilities or its values takes
// out that head's share of o_proj computed here from the recorded
// activations and the checkpoint's o_proj weight.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kTiny = parity::tiny_dir();

const MplugOwl2LlamaForCausalLM<double>& tiny() {
    static const MplugOwl2LlamaForCausalLM<double> m = load_model<double>(kTiny);
    return m;
}

xt::xtensor<double, 4> pixels_of(const std::string& case_name) {
    return parity::Case(case_name).pixel_values<double>(parity::tiny_case(case_name)["images"].size());
}

std::vector<std::int64_t> ids_of(const std::string& case_name) {
    return parity::tiny_case(case_name)["input_ids"].get<std::vector<std::int64_t>>();
}

struct Out {
    Matrix<double> logits, steps;
    ModalityIndicators indicators;
};

// The prompt's forward pass through `hooks`, then two greedy steps.
Out run(const std::vector<std::int64_t>& ids, const xt::xtensor<double, 4>& pixels, const Hooks<double>& hooks) {
    const auto& m = tiny();
    KVCache<double> cache = m.new_cache();
    const auto in = m.prepare_inputs(ids, m.encode_images(pixels, hooks), hooks);
    Out o;
    o.logits = m.forward(in, cache, hooks);
    GenerationConfig g;
    g.max_new_tokens = 2;
    g.stop_at_eos = false;
    o.steps = m.generate(o.logits, cache, g, hooks).step_logits;
    o.indicators = in.modality_indicators;
    return o;
}

Out run(const std::string& case_name, const Hooks<double>& hooks) {
    return run(ids_of(case_name), pixels_of(case_name), hooks);
}

bool ends_with(const std::string& s, const std::string& t) {
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

// Row r of a [rows, cols] matrix as a vector.
std::vector<double> row(const Matrix<double>& x, std::size_t r) {
    return std::vector<double>(&x(r, 0), &x(r, 0) + x.shape(1));
}

}  // namespace

TEST_CASE("every official module of the model reports its output", "[hooks]") {
    // 1. the official module tree: every tensor's module and its ancestors, less the
    //    ModuleList containers (…layers, …multiway), plus the parameter-free activation
    //    modules the official classes hold
    const SafetensorsFile weights(kTiny + "/model.safetensors");
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    std::set<std::string> modules;
    for (const auto& name : weights.names())
        for (std::string m = name.substr(0, name.rfind('.')); !m.empty();
             m = m.find('.') == std::string::npos ? "" : m.substr(0, m.rfind('.')))
            if (!ends_with(m, ".layers") && !ends_with(m, ".multiway")) modules.insert(m);
    for (int i = 0; i < cfg.text.num_hidden_layers; ++i)
        modules.insert("model.layers." + std::to_string(i) + ".mlp.act_fn");  // LlamaMLP.act_fn
    for (int i = 0; i < cfg.vision.num_hidden_layers; ++i)
        modules.insert("model.vision_model.encoder.layers." + std::to_string(i) + ".mlp.activation_fn");
    for (int i = 0; i < cfg.abstractor.num_hidden_layers; ++i)
        modules.insert("model.visual_abstractor.encoder.layers." + std::to_string(i) +
                       ".crossattention.output.mlp.act");
    REQUIRE(modules.count("model.layers.1.self_attn.k_proj.multiway.1"));
    REQUIRE(modules.count("model.visual_abstractor.encoder"));

    // 2. a prompt with text on both sides of an image reaches every module, each copy of
    //    every multiway module included
    Hooks<double> hooks;
    std::map<std::string, Shape> reported;
    hooks.add([&](const std::string& name, Matrix<double>& v, const Shape& shape) {
        CHECK(shape_numel(shape) == v.size());
        reported.emplace(name, shape);
    });
    run("image_then_text", hooks);
    for (const auto& m : modules) {
        INFO("official module " << m);
        CHECK(reported.count(m) == 1);
    }
    // and nothing reports under a name that is not an official module, but the spliced input and the logits
    for (const auto& kv : reported) {
        INFO("reported " << kv.first);
        CHECK((modules.count(kv.first) == 1 || kv.first == "decoder.inputs_embeds" || kv.first == "logits"));
    }
    // a copy reports the rows it computed: 6 text and 9 visual positions (Q + 1 for the image)
    CHECK(reported.at("model.layers.0.self_attn.k_proj.multiway.0") == Shape{6, 64});
    CHECK(reported.at("model.layers.0.self_attn.k_proj.multiway.1") == Shape{9, 64});
    CHECK(reported.at("model.layers.0.mlp.act_fn") == Shape{15, 160});
}

TEST_CASE("hooks that read or put back an equal value change nothing", "[hooks]") {
    const Out base = run("two_images", Hooks<double>());
    SECTION("reading every activation") {
        Hooks<double> hooks;
        double sum = 0;
        std::size_t calls = 0;
        hooks.add([&](const std::string&, Matrix<double>& v, const Shape&) {
            for (double x : v) sum += x;
            ++calls;
        });
        const Out o = run("two_images", hooks);
        CHECK(calls > 100);
        CHECK(std::isfinite(sum));
        CHECK(o.logits == base.logits);
        CHECK(o.steps == base.steps);
    }
    SECTION("replacing every activation by a copy of itself") {
        Hooks<double> hooks;
        hooks.add([](const std::string&, Matrix<double>& v, const Shape&) {
            const Matrix<double> copy = v;
            v = copy;
        });
        const Out o = run("two_images", hooks);
        CHECK(o.logits == base.logits);
        CHECK(o.steps == base.steps);
    }
    SECTION("recording the attention probabilities as well") {
        Hooks<double> hooks;
        Recorder<double> rec(hooks);
        hooks.request_attention_probs();
        const Out o = run("two_images", hooks);
        CHECK(rec.contains("model.layers.1.self_attn.probs"));
        CHECK(rec.contains("model.visual_abstractor.encoder.layers.1.crossattention.attention.probs"));
        CHECK(o.logits == base.logits);
        CHECK(o.steps == base.steps);
    }
}

TEST_CASE("zeroing the visual rows of a layer's output changes the later positions only", "[hooks]") {
    // image_then_text: BOS, the image's 9 rows, then 5 text positions
    const Out base = run("image_then_text", Hooks<double>());
    REQUIRE(base.indicators == ModalityIndicators{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0});
    Hooks<double> hooks;
    hooks.add([&](const std::string& name, Matrix<double>& v, const Shape&) {
        if (name != "model.layers.0") return;
        for (std::size_t r = 0; r < v.shape(0); ++r)
            if (base.indicators[r] == 1) std::fill(&v(r, 0), &v(r, 0) + v.shape(1), 0.0);
    });
    Recorder<double> rec(hooks);  // added after: records what the edit left
    const Out o = run("image_then_text", hooks);
    for (std::size_t r = 1; r < 10; ++r)
        for (std::size_t c = 0; c < 64; ++c) CHECK(rec.at("model.layers.0").values[r * 64 + c] == 0.0);
    // causality: the position before the image is untouched, bit for bit
    CHECK(row(o.logits, 0) == row(base.logits, 0));
    // every text position after it sees the change
    for (std::size_t r = 10; r < 15; ++r) {
        INFO("position " << r);
        CHECK(parity::relative_error(row(o.logits, r), row(base.logits, r)) > 1e-3);
    }
    CHECK(parity::relative_error(o.steps, base.steps) > 1e-3);
}

TEST_CASE("a head zeroed in its probabilities or its values takes out its share of o_proj", "[hooks]") {
    const std::size_t H = 4, hd = 16, D = 64, h = 2;
    const SafetensorsFile weights(kTiny + "/model.safetensors");
    const auto w_o = read_tensor<double>(weights, "model.layers.0.self_attn.o_proj.weight");  // [D, H·hd]

    Hooks<double> observe;
    Recorder<double> base(observe);
    observe.request_attention_probs();
    run("image_then_text", observe);
    const auto& P = base.at("model.layers.0.self_attn.probs");  // [H, L, L]
    const auto& v = base.at("model.layers.0.self_attn.v_proj");  // [L, H·hd]
    const auto& y = base.at("model.layers.0.self_attn");         // [L, D]
    const std::size_t L = P.shape[1];
    REQUIRE(P.shape == Shape{H, L, L});

    // the head's share: (P_h · v_h) · W_o[:, h·hd .. (h+1)·hd]ᵀ
    std::vector<double> expected = y.values;
    for (std::size_t i = 0; i < L; ++i)
        for (std::size_t d = 0; d < hd; ++d) {
            double ctx = 0;
            for (std::size_t j = 0; j < L; ++j)
                ctx += P.values[(h * L + i) * L + j] * v.values[j * H * hd + h * hd + d];
            for (std::size_t o = 0; o < D; ++o) expected[i * D + o] -= ctx * w_o(o, h * hd + d);
        }

    SECTION("zeroing head 2's attention probabilities") {
        Hooks<double> hooks;
        hooks.request_attention_probs();
        hooks.add([&](const std::string& name, Matrix<double>& p, const Shape& shape) {
            // [H, rows, keys] as [H·rows, keys]: rows = L in the prompt's pass, 1 in a decoding step
            if (name == "model.layers.0.self_attn.probs")
                std::fill(&p(h * shape[1], 0), &p(h * shape[1], 0) + shape[1] * shape[2], 0.0);
        });
        Recorder<double> rec(hooks);
        run("image_then_text", hooks);
        CHECK(parity::relative_error(rec.at("model.layers.0.self_attn").values, expected) <= 1e-12);
        CHECK(parity::relative_error(rec.at("model.layers.0.self_attn").values, y.values) > 1e-3);
    }
    SECTION("zeroing head 2's values") {
        Hooks<double> hooks;
        hooks.add([&](const std::string& name, Matrix<double>& x, const Shape&) {
            if (name == "model.layers.0.self_attn.v_proj")
                for (std::size_t r = 0; r < x.shape(0); ++r) std::fill(&x(r, h * hd), &x(r, h * hd) + hd, 0.0);
        });
        Recorder<double> rec(hooks);
        run("image_then_text", hooks);
        CHECK(parity::relative_error(rec.at("model.layers.0.self_attn").values, expected) <= 1e-12);
    }
}

TEST_CASE("patching activations from another run carries that run's result along", "[hooks]") {
    // run A: image_then_text with its image; run B: the same prompt with the coffee photo
    const auto ids = ids_of("image_then_text");
    const auto pixels_a = pixels_of("image_then_text"), pixels_b = pixels_of("photo_jpeg");
    Hooks<double> record_a;
    Recorder<double> a(record_a);
    const Out out_a = run(ids, pixels_a, record_a);
    const Out out_b = run(ids, pixels_b, Hooks<double>());
    REQUIRE(parity::relative_error(out_a.logits, out_b.logits) > 1e-3);

    auto patch = [&](const std::string& layer, bool visual_rows_only) {
        Hooks<double> hooks;
        hooks.add([&, layer, visual_rows_only](const std::string& name, Matrix<double>& x, const Shape&) {
            if (name != layer) return;
            const auto& from = a.at(layer).values;
            for (std::size_t r = 0; r < x.shape(0); ++r)
                if (!visual_rows_only || out_a.indicators[r] == 1)
                    std::copy(&from[r * x.shape(1)], &from[(r + 1) * x.shape(1)], &x(r, 0));
        });
        return run(ids, pixels_b, hooks);
    };
    SECTION("every row of the first layer's output: B's prompt logits become A's") {
        const Out o = patch("model.layers.0", false);
        CHECK(o.logits == out_a.logits);
    }
    SECTION("the visual rows of the last layer's output: those rows take A's logits, the text rows keep B's") {
        const Out o = patch("model.layers.1", true);
        for (std::size_t r = 0; r < o.logits.shape(0); ++r) {
            INFO("position " << r);
            CHECK(row(o.logits, r) == row(out_a.indicators[r] == 1 ? out_a.logits : out_b.logits, r));
        }
    }
}

TEST_CASE("each copy of a multiway module reports its own rows and edits to them reach the merged output",
          "[hooks][mam]") {
    Hooks<double> observe;
    Recorder<double> base(observe);
    const Out o = run("image_then_text", observe);
    const std::string name = "model.layers.0.input_layernorm";
    const auto& merged = base.at(name).values;
    const auto& text = base.at(name + ".multiway.0").values;
    const auto& visual = base.at(name + ".multiway.1").values;
    std::size_t t = 0, v = 0;
    for (std::size_t r = 0; r < o.indicators.size(); ++r) {
        const auto& part = o.indicators[r] == 0 ? text : visual;
        std::size_t& k = o.indicators[r] == 0 ? t : v;
        CHECK(std::vector<double>(&part[k * 64], &part[k * 64] + 64) ==
              std::vector<double>(&merged[r * 64], &merged[r * 64] + 64));
        ++k;
    }
    CHECK(t * 64 == text.size());
    CHECK(v * 64 == visual.size());

    // the visual copy's output zeroed: the merged output is zero on the visual rows, as before elsewhere
    Hooks<double> hooks;
    hooks.add([&](const std::string& n, Matrix<double>& x, const Shape&) {
        if (n == name + ".multiway.1") x.fill(0.0);
    });
    Recorder<double> rec(hooks);
    run("image_then_text", hooks);
    const auto& edited = rec.at(name).values;
    for (std::size_t r = 0; r < o.indicators.size(); ++r)
        for (std::size_t c = 0; c < 64; ++c)
            CHECK(edited[r * 64 + c] == (o.indicators[r] == 1 ? 0.0 : merged[r * 64 + c]));
}
