// The whole model loaded from every checkpoint layout (load_model(dir) over
// open_checkpoint): the tiny reference model (float32) re-saved as fp16
// PyTorch shards (the release's layout), bf16 safetensors shards, and
// float32 in a single .bin, a single safetensors file and .bin shards.
//   - float32 layouts give the reference logits and greedy-step logits to
//     1e-9 in double;
//   - half layouts give, in double, exactly what the double model gives on
//     the reference weights rounded to fp16 / bf16 here in the test, and in
//     float with the weights kept in half precision the same within the float
//     tolerance;
//   - with float compute, half weights kept in half precision (pointing into
//     the mapped checkpoint) equal the same weights converted on load, up to
//     float rounding; embedding rows exactly;
//   - the model keeps the checkpoint open while it points into it, and only
//     then;
//   - unused, missing and mis-shaped tensors of a sharded checkpoint.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <memory>

#include "mplug_owl2/io/checkpoint.hpp"
#include "mplug_owl2/io/synthetic.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;
namespace fs = std::filesystem;

namespace {

const std::string kTiny = parity::tiny_dir();

struct Layout {
    std::string name;
    CheckpointFormat format;
    DType dtype;
    bool sharded;
};

const std::vector<Layout>& layouts() {
    static const std::vector<Layout> all = {
        {"bin_fp16_shards", CheckpointFormat::PyTorch, DType::F16, true},
        {"safetensors_bf16_shards", CheckpointFormat::Safetensors, DType::BF16, true},
        {"bin_fp32_single", CheckpointFormat::PyTorch, DType::F32, false},
        {"safetensors_fp32_single", CheckpointFormat::Safetensors, DType::F32, false},
        {"bin_fp32_shards", CheckpointFormat::PyTorch, DType::F32, true},
    };
    return all;
}

// The tiny reference model re-saved in `layout` with its config.json, once
// per test case (`tag`: test cases may run at the same time).
std::string saved_tiny(const Layout& layout, const std::string& tag) {
    static std::map<std::string, std::string> done;
    const std::string key = tag + "_" + layout.name;
    auto it = done.find(key);
    if (it != done.end()) return it->second;
    const fs::path dir = fs::path(MPLUG_OWL2_TEST_TMP) / ("tiny_model_" + key);
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(kTiny + "/config.json", dir / "config.json");
    const SafetensorsFile ref(kTiny + "/model.safetensors");
    save_checkpoint(ref, dir.string(), layout.format, layout.dtype,
                    layout.sharded ? shards_by_decoder_layer(ref.names())
                                   : std::vector<std::vector<std::string>>{ref.names()});
    return done[key] = dir.string();
}

// The reference weights with every value rounded to `dtype` here (round to
// nearest even), held as exact float32 values.
std::shared_ptr<MemorySource> rounded_reference(DType dtype) {
    const SafetensorsFile ref(kTiny + "/model.safetensors");
    auto out = std::make_shared<MemorySource>();
    for (const auto& name : ref.names()) {
        const TensorInfo& t = *ref.find(name);
        REQUIRE(t.dtype == DType::F32);
        std::vector<float> v(shape_numel(t.shape));
        std::memcpy(v.data(), t.data, t.nbytes);
        for (float& x : v) x = dtype == DType::F16 ? fp16_to_float(float_to_fp16(x)) : bf16_to_float(float_to_bf16(x));
        out->add(name, DType::F32, t.shape, encode_floats(v, DType::F32));
    }
    return out;
}

template <class T>
struct CaseRun {
    Matrix<T> logits, steps;
};

// A reference case through `model`: the prompt's logits, then the greedy
// steps the reference took.
template <class T>
CaseRun<T> run_case(MplugOwl2LlamaForCausalLM<T>& model, const nlohmann::json& c) {
    parity::Case ref(c["name"]);
    MamRouting routing;
    if (!c["ablate"].is_null()) routing.policy = mam_policy_from_name(c["ablate"]["policy"]);
    model.set_mam_routing(routing);
    const Hooks<T> hooks;
    KVCache<T> cache = model.new_cache();
    const auto ids = c["input_ids"].get<std::vector<std::int64_t>>();
    const auto in = model.prepare_inputs(ids, model.encode_images(ref.pixel_values<T>(c["images"].size()), hooks),
                                         hooks);
    CaseRun<T> run;
    run.logits = model.forward(in, cache, hooks);
    GenerationConfig g;
    g.max_new_tokens = c["generated_ids"].size();
    g.stop_at_eos = false;
    run.steps = model.generate(run.logits, cache, g, hooks).step_logits;
    return run;
}

template <class A, class B>
void check_close(const A& ours, const B& ref, double tol, const std::string& what) {
    REQUIRE(ours.size() == ref.size());
    const double err = parity::relative_error(ours, ref);
    INFO(what << ": max|ours - ref| / rms(ref) = " << err << " (tolerance " << tol << ")");
    CHECK(err <= tol);
}

}  // namespace

TEST_CASE("float32 layouts give the reference logits in double", "[layouts][model]") {
    for (const auto& layout : layouts()) {
        if (layout.dtype != DType::F32) continue;
        SECTION(layout.name) {
            auto model = load_model<double>(saved_tiny(layout, "fp32"));
            CHECK(model.unused_tensors.empty());
            for (const auto& c : parity::tiny_cases()) {
                parity::Case ref(c["name"]);
                const auto run = run_case(model, c);
                ref.check("logits", run.logits, parity::tolerance<double>());
                ref.check("generate.step_logits", run.steps, parity::tolerance<double>());
            }
        }
    }
}

TEST_CASE("half layouts give what the reference model gives on the same rounded weights", "[layouts][model]") {
    const ModelConfig config = load_config(kTiny + "/config.json");
    for (const auto& layout : layouts()) {
        if (layout.dtype == DType::F32) continue;
        SECTION(layout.name) {
            const std::string dir = saved_tiny(layout, "rounded");
            auto in_double = load_model<double>(dir);
            auto in_float = load_model<float>(dir);  // weights kept in half precision
            CHECK_FALSE(in_float.lm_head.weight_half.empty());
            auto rounded = load_model<double>(*rounded_reference(layout.dtype), config);
            for (const auto& c : parity::tiny_cases()) {
                const std::string name = c["name"];
                parity::Case ref(name);
                const auto want = run_case(rounded, c);
                const auto got = run_case(in_double, c);
                check_close(got.logits, want.logits, parity::tolerance<double>(), name + " logits in double");
                check_close(got.steps, want.steps, parity::tolerance<double>(), name + " step logits in double");
                const auto fast = run_case(in_float, c);
                check_close(fast.logits, want.logits, parity::tolerance<float>(), name + " logits in float");
                check_close(fast.steps, want.steps, parity::tolerance<float>(), name + " step logits in float");
                // The rounding is real: the official float32 weights give other logits.
                CHECK(parity::relative_error(got.logits, ref.get("logits")) > 1e-6);
            }
        }
    }
}

TEST_CASE("half weights kept in half precision equal the same weights converted on load", "[layouts][model][half]") {
    for (const auto& layout : layouts()) {
        if (layout.dtype == DType::F32) continue;
        SECTION(layout.name) {
            const std::string dir = saved_tiny(layout, "modes");
            auto half = load_model<float>(dir);
            LoadOptions convert;
            convert.keep_half_precision = false;
            auto full = load_model<float>(dir, convert);

            // Every kind of matrix is kept in half, and only in the half mode.
            const auto& l1 = half.model.layers[1];
            for (const HalfMatrix* m : std::vector<const HalfMatrix*>{&half.model.embed_tokens.weight_half, &half.lm_head.weight_half,
                                        &l1.self_attn.q_proj.weight_half, &l1.self_attn.k_proj.multiway[1].weight_half,
                                        &l1.self_attn.v_proj.multiway[0].weight_half, &l1.mlp.down_proj.weight_half,
                                        &half.model.vision_model.encoder.layers[0].self_attn.query_key_value.weight_half,
                                        &half.model.visual_abstractor.visual_fc.weight_half}) {
                CHECK_FALSE(m->empty());
                CHECK(m->dtype == layout.dtype);
            }
            CHECK(half.model.embed_tokens.weight.size() == 0);
            CHECK(full.model.embed_tokens.weight_half.empty());
            CHECK(full.lm_head.weight_half.empty());
            CHECK(full.model.layers[1].mlp.down_proj.weight_half.empty());

            // Embedding rows are converted on lookup to exactly the converted table's values.
            const std::vector<std::int64_t> ids = {0, 1, 2, 77, 319};
            const Matrix<float> rows_half = half.model.embed_tokens.forward(ids, Hooks<float>());
            const Matrix<float> rows_full = full.model.embed_tokens.forward(ids, Hooks<float>());
            CHECK(rows_half == rows_full);

            // The products differ only in the order float sums are taken: a dot
            // product of K ≤ 256 terms moves by at most about K·2⁻²⁴ ≈ 1.5e-5 of
            // the sum of its terms' sizes, and far less on average; 1e-5 of the
            // logits' RMS is float rounding, a hundredth of the float tolerance.
            for (const auto& c : parity::tiny_cases()) {
                const std::string name = c["name"];
                const auto a = run_case(half, c);
                const auto b = run_case(full, c);
                check_close(a.logits, b.logits, 1e-5, name + " logits");
                check_close(a.steps, b.steps, 1e-5, name + " step logits");
            }
        }
    }
}

TEST_CASE("the model keeps the checkpoint open exactly while it points into it", "[layouts][model][half]") {
    const std::string dir = saved_tiny(layouts()[0], "alive");
    const ModelConfig config = load_config(dir + "/config.json");
    const auto case0 = parity::tiny_cases()[0];

    std::shared_ptr<const TensorSource> source(open_checkpoint(dir));
    std::weak_ptr<const TensorSource> watch = source;
    const std::uint8_t* stored = source->find("lm_head.weight")->data;
    {
        auto model = load_model<float>(source, config);
        source.reset();
        REQUIRE_FALSE(watch.expired());
        // The matrices point into the mapped shards: nothing was copied.
        CHECK(model.lm_head.weight_half.data == stored);
        CHECK(model.model.embed_tokens.weight_half.data == watch.lock()->find("model.embed_tokens.weight")->data);
        CHECK(model.model.layers[0].mlp.up_proj.weight_half.data ==
              watch.lock()->find("model.layers.0.mlp.up_proj.weight")->data);
        // A moved model still works from the same memory.
        auto moved = std::move(model);
        const auto run = run_case(moved, case0);
        CHECK(run.logits.shape(1) == 320);
    }
    CHECK(watch.expired());

    // Converted weights (on request, or for double compute) leave nothing pointing into it.
    LoadOptions convert;
    convert.keep_half_precision = false;
    for (bool as_double : {false, true}) {
        std::shared_ptr<const TensorSource> s(open_checkpoint(dir));
        std::weak_ptr<const TensorSource> w = s;
        if (as_double) {
            auto m = load_model<double>(s, config);
            s.reset();
            CHECK(w.expired());
            CHECK(m.lm_head.weight_half.empty());
        } else {
            auto m = load_model<float>(s, config, convert);
            s.reset();
            CHECK(w.expired());
            CHECK(m.lm_head.weight_half.empty());
        }
    }
}

TEST_CASE("a sharded checkpoint names its unused missing and mis-shaped tensors", "[layouts][model][errors]") {
    const ModelConfig config = load_config(kTiny + "/config.json");
    LayoutOptions with_buffers;
    with_buffers.rotary_inv_freq = true;
    const auto full = synthetic_checkpoint(config, DType::F16, 5, with_buffers);
    auto write = [&](const std::string& name, const TensorSource& src) {
        const fs::path dir = fs::path(MPLUG_OWL2_TEST_TMP) / name;
        fs::remove_all(dir);
        fs::create_directories(dir);
        fs::copy_file(kTiny + "/config.json", dir / "config.json");
        save_checkpoint(src, dir.string(), CheckpointFormat::PyTorch, DType::F16, shards_by_decoder_layer(src.names()));
        return dir.string();
    };

    // The release's rotary_emb.inv_freq buffers are read by nothing: listed, not refused.
    const auto model = load_model<float>(write("tiny_unused", *full));
    CHECK(model.unused_tensors == std::vector<std::string>{"model.layers.0.self_attn.rotary_emb.inv_freq",
                                                           "model.layers.1.self_attn.rotary_emb.inv_freq"});

    // Missing: the tensor, the checkpoint and the shape it should have.
    MemorySource missing;
    for (const auto& n : full->names())
        if (n != "model.layers.1.self_attn.o_proj.weight") {
            const TensorInfo& t = *full->find(n);
            missing.add(n, t.dtype, t.shape, std::vector<std::uint8_t>(t.data, t.data + t.nbytes));
        }
    const std::string dir_missing = write("tiny_missing", missing);
    CHECK_THROWS_WITH(load_model<float>(dir_missing),
                      Catch::Contains("tensor model.layers.1.self_attn.o_proj.weight: missing from the checkpoint") &&
                          Catch::Contains("pytorch_model.bin.index.json") && Catch::Contains("expected shape [64, 64]"));

    // Mis-shaped: the tensor, its shard, the expected and the stored shape, in either weights mode.
    MemorySource wrong;
    for (const auto& n : full->names()) {
        const TensorInfo& t = *full->find(n);
        const bool bad = n == "model.layers.1.mlp.up_proj.weight";
        const Shape shape = bad ? Shape{80, 128} : t.shape;  // same element count, other shape
        wrong.add(n, t.dtype, shape, std::vector<std::uint8_t>(t.data, t.data + t.nbytes));
    }
    const std::string dir_wrong = write("tiny_misshaped", wrong);
    LoadOptions convert;
    convert.keep_half_precision = false;
    for (bool keep : {true, false}) {
        INFO("keep_half_precision " << keep);
        CHECK_THROWS_WITH(load_model<float>(dir_wrong, keep ? LoadOptions{} : convert),
                          Catch::Contains("tensor model.layers.1.mlp.up_proj.weight in") &&
                              Catch::Contains("pytorch_model-00003-of-00003.bin") &&
                              Catch::Contains("expected shape [160, 64], found [80, 128]"));
    }
}
