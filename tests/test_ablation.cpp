// Ablating the modality-adaptive module. A routing policy set at run time
// (MamRouting through set_mam_routing) must compute exactly what the
// official routing computes on weights edited the same way:
//   text   — the text copy (.multiway.0) written over the visual one;
//   visual — the visual copy written over the text one;
//   swap   — the two copies exchanged;
// only in the chosen parts and layers. The edited checkpoint is an in-memory
// copy of reference_outputs/tiny/model.safetensors; both models run the tiny
// cases with images in double, and every recorded activation, the prompt's
// logits, the greedy steps and ids must agree to 1e-12 of the RMS.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/io/synthetic.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kTiny = parity::tiny_dir();
constexpr double kSame = 1e-12;

const SafetensorsFile& tiny_weights() {
    static const SafetensorsFile f(kTiny + "/model.safetensors");
    return f;
}

const ModelConfig& tiny_config() {
    static const ModelConfig c = load_config(kTiny + "/config.json");
    return c;
}

// The checkpoint's path of a multiway part of a layer, up to ".multiway.".
std::string multiway_path(std::size_t layer, MamPart part) {
    const bool attention = part == MamPart::KProj || part == MamPart::VProj;
    return "model.layers." + std::to_string(layer) + (attention ? ".self_attn." : ".") + mam_part_name(part) +
           ".multiway.";
}

// Every tensor of the tiny checkpoint, as bytes, with `edit` applied to the
// pair (text copy, visual copy) of each multiway tensor that routing `r`
// acts on.
template <class Edit>
std::shared_ptr<MemorySource> edited_checkpoint(const MamRouting& r, Edit edit) {
    const SafetensorsFile& f = tiny_weights();
    std::map<std::string, std::vector<std::uint8_t>> bytes;
    for (const auto& name : f.names()) {
        const TensorInfo* t = f.find(name);
        bytes[name].assign(t->data, t->data + t->nbytes);
    }
    const auto n_layers = static_cast<std::size_t>(tiny_config().text.num_hidden_layers);
    std::size_t edited = 0;
    for (std::size_t layer = 0; layer < n_layers; ++layer)
        for (MamPart part : all_mam_parts()) {
            if (!r.applies(part, layer)) continue;
            for (const char* suffix : {"weight", "bias"}) {
                const std::string text = multiway_path(layer, part) + "0." + suffix;
                const std::string visual = multiway_path(layer, part) + "1." + suffix;
                if (!bytes.count(text)) continue;  // no biases in the tiny decoder
                REQUIRE(bytes.count(visual));
                edit(bytes[text], bytes[visual]);
                ++edited;
            }
        }
    REQUIRE(edited > 0);
    auto src = std::make_shared<MemorySource>();
    for (auto& kv : bytes) {
        const TensorInfo* t = f.find(kv.first);
        src->add(kv.first, t->dtype, t->shape, std::move(kv.second));
    }
    return src;
}

// The official model on the weights that `r` describes.
std::shared_ptr<MemorySource> weights_edited_as(const MamRouting& r) {
    using Bytes = std::vector<std::uint8_t>;
    switch (r.policy) {
        case MamPolicy::Text: return edited_checkpoint(r, [](Bytes& text, Bytes& visual) { visual = text; });
        case MamPolicy::Visual: return edited_checkpoint(r, [](Bytes& text, Bytes& visual) { text = visual; });
        case MamPolicy::Swap: return edited_checkpoint(r, [](Bytes& text, Bytes& visual) { std::swap(text, visual); });
        case MamPolicy::Official: break;
    }
    FAIL("no edit for the official policy");
    return nullptr;
}

// A checkpoint with every tensor of one copy (.multiway.m) set to NaN.
std::shared_ptr<MemorySource> copy_poisoned(std::size_t m) {
    MamRouting all;
    all.policy = MamPolicy::Text;  // applies everywhere
    return edited_checkpoint(all, [m](std::vector<std::uint8_t>& text, std::vector<std::uint8_t>& visual) {
        std::vector<std::uint8_t>& target = m == 0 ? text : visual;
        const float nan = std::nanf("");
        for (std::size_t i = 0; i + 4 <= target.size(); i += 4) std::memcpy(target.data() + i, &nan, 4);
    });
}

struct Run {
    std::map<std::string, Recorder<double>::Record> records;  // first report of each name in the prompt's pass
    Matrix<double> logits;
    Generation<double> gen;
    ModalityIndicators indicators;
};

// A tiny case from the reference's pixel values: the prompt's forward pass,
// recorded, then three greedy steps.
Run run_case(const MplugOwl2LlamaForCausalLM<double>& m, const std::string& case_name) {
    const nlohmann::json c = parity::tiny_case(case_name);
    parity::Case ref(case_name);
    const auto pixels = ref.pixel_values<double>(c["images"].size());
    Hooks<double> hooks;
    Recorder<double> rec(hooks);
    KVCache<double> cache = m.new_cache();
    const auto in = m.prepare_inputs(c["input_ids"].get<std::vector<std::int64_t>>(), m.encode_images(pixels, hooks),
                                     hooks);
    Run r;
    r.logits = m.forward(in, cache, hooks);
    rec.pause();
    GenerationConfig g;
    g.max_new_tokens = 3;
    g.stop_at_eos = false;
    r.gen = m.generate(r.logits, cache, g, hooks);
    r.records = rec.records();
    r.indicators = in.modality_indicators;
    return r;
}

bool is_copy_output(const std::string& name) { return name.find(".multiway.") != std::string::npos; }

// Every activation of `a` equals `b`'s: the same names (the per-copy outputs
// …multiway.m aside, whose row split differs by construction), shapes and
// values to `tol` of b's RMS; the names include every module output of the
// reference case.
void check_same_run(const Run& a, const Run& b, const std::string& case_name, double tol) {
    for (const auto& kv : b.records) {
        if (is_copy_output(kv.first)) continue;
        INFO("activation " << kv.first);
        auto it = a.records.find(kv.first);
        REQUIRE(it != a.records.end());
        REQUIRE(it->second.shape == kv.second.shape);
        CHECK(parity::relative_error(it->second.values, kv.second.values) <= tol);
    }
    for (const auto& kv : a.records)
        if (!is_copy_output(kv.first)) CHECK(b.records.count(kv.first) == 1);
    const nlohmann::json c = parity::tiny_case(case_name);
    for (const std::string name : c["activations"])
        if (name != "decoder.modality_indicators" && name != "generate.step_logits") CHECK(b.records.count(name) == 1);
    CHECK(parity::relative_error(a.logits, b.logits) <= tol);
    CHECK(parity::relative_error(a.gen.step_logits, b.gen.step_logits) <= tol);
    CHECK(a.gen.ids == b.gen.ids);
    CHECK(a.indicators == b.indicators);
}

std::string describe(const MamRouting& r) {
    std::string s = mam_policy_name(r.policy);
    s += " parts";
    if (r.parts.empty()) s += " all";
    for (MamPart p : r.parts) s += std::string(" ") + mam_part_name(p);
    s += " layers";
    if (r.layers.empty()) s += " all";
    for (std::size_t l : r.layers) s += " " + std::to_string(l);
    return s;
}

}  // namespace

TEST_CASE("an ablated routing computes what the official routing computes on weights edited the same way",
          "[ablation]") {
    using P = MamPart;
    const std::vector<MamRouting> choices = {
        MamRouting{MamPolicy::Text, {}, {}},
        MamRouting{MamPolicy::Visual, {}, {}},
        MamRouting{MamPolicy::Swap, {}, {}},
        MamRouting{MamPolicy::Text, {P::KProj, P::VProj}, {1}},
        MamRouting{MamPolicy::Swap, {P::InputLayernorm}, {0}},
        MamRouting{MamPolicy::Visual, {P::PostAttentionLayernorm, P::VProj}, {}},
        MamRouting{MamPolicy::Swap, {}, {1}},
        MamRouting{MamPolicy::Text, {P::InputLayernorm, P::PostAttentionLayernorm}, {0, 1}},
    };
    MplugOwl2LlamaForCausalLM<double> ablated = load_model<double>(tiny_weights(), tiny_config());
    for (const MamRouting& r : choices) {
        SECTION(describe(r)) {
            ablated.set_mam_routing(r);
            const auto edited = load_model<double>(*weights_edited_as(r), tiny_config());
            REQUIRE(edited.mam_routing().policy == MamPolicy::Official);
            for (const char* c : {"image_then_text", "two_images", "photo_jpeg"}) {
                INFO("case " << c);
                check_same_run(run_case(ablated, c), run_case(edited, c), c, kSame);
            }
        }
    }
}

TEST_CASE("the ablations change the result of a prompt with an image", "[ablation]") {
    // Otherwise the comparison above could pass with routing ignored.
    MplugOwl2LlamaForCausalLM<double> m = load_model<double>(tiny_weights(), tiny_config());
    const Run official = run_case(m, "image_then_text");
    for (MamPolicy p : {MamPolicy::Text, MamPolicy::Visual, MamPolicy::Swap}) {
        m.set_mam_routing(MamRouting{p, {}, {}});
        INFO("policy " << mam_policy_name(p));
        CHECK(parity::relative_error(run_case(m, "image_then_text").logits, official.logits) > 1e-3);
    }
}

TEST_CASE("with text on every part of every layer no visual copy is read and with visual no text copy",
          "[ablation]") {
    // One copy's every tensor is NaN: any read of it would make the logits NaN.
    for (std::size_t poisoned : {1, 0}) {
        const MamPolicy policy = poisoned == 1 ? MamPolicy::Text : MamPolicy::Visual;
        SECTION(std::string("policy ") + mam_policy_name(policy)) {
            MplugOwl2LlamaForCausalLM<double> clean = load_model<double>(tiny_weights(), tiny_config());
            MplugOwl2LlamaForCausalLM<double> half = load_model<double>(*copy_poisoned(poisoned), tiny_config());
            clean.set_mam_routing(MamRouting{policy, {}, {}});
            half.set_mam_routing(MamRouting{policy, {}, {}});
            for (const char* c : {"image_then_text", "two_images"}) {
                const Run a = run_case(half, c), b = run_case(clean, c);
                for (double x : a.logits) REQUIRE(std::isfinite(x));
                CHECK(a.logits == b.logits);
                CHECK(a.gen.step_logits == b.gen.step_logits);
            }
            // under official routing the poisoned copy is read
            half.set_mam_routing(MamRouting{});
            const Matrix<double> logits = run_case(half, "image_then_text").logits;
            CHECK(std::isnan(logits(logits.shape(0) - 1, 0)));
        }
    }
}

TEST_CASE("the routing acts only where it is restricted to and can be set back at run time", "[ablation]") {
    MplugOwl2LlamaForCausalLM<double> m = load_model<double>(tiny_weights(), tiny_config());
    const Run official = run_case(m, "two_images");

    // swap in layer 1 only: the vision tower, the abstractor and layer 0 are untouched, bit for bit
    m.set_mam_routing(MamRouting{MamPolicy::Swap, {}, {1}});
    const Run swapped = run_case(m, "two_images");
    std::size_t same = 0;
    for (const auto& kv : official.records) {
        if (kv.first.rfind("model.layers.1", 0) == 0 || kv.first == "model" || kv.first == "model.norm" ||
            kv.first == "lm_head" || kv.first == "logits")
            continue;
        INFO("activation " << kv.first);
        REQUIRE(swapped.records.count(kv.first));
        CHECK(swapped.records.at(kv.first).values == kv.second.values);
        ++same;
    }
    CHECK(same > 80);
    CHECK(parity::relative_error(swapped.records.at("model.layers.1.self_attn.k_proj").values,
                                 official.records.at("model.layers.1.self_attn.k_proj").values) > 1e-3);

    // k_proj only: layer 1's input_layernorm is still official
    m.set_mam_routing(MamRouting{MamPolicy::Swap, {MamPart::KProj}, {1}});
    const Run k_only = run_case(m, "two_images");
    CHECK(k_only.records.at("model.layers.1.input_layernorm").values ==
          official.records.at("model.layers.1.input_layernorm").values);
    CHECK(k_only.records.at("model.layers.1.self_attn.v_proj").values ==
          official.records.at("model.layers.1.self_attn.v_proj").values);
    CHECK(k_only.records.at("model.layers.1.self_attn.k_proj").values !=
          official.records.at("model.layers.1.self_attn.k_proj").values);

    // back to official: the first run again, bit for bit
    m.set_mam_routing(MamRouting{});
    const Run again = run_case(m, "two_images");
    CHECK(again.logits == official.logits);
    CHECK(again.gen.step_logits == official.gen.step_logits);
}
