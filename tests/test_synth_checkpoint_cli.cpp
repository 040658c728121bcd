// `mplug-owl2 synth-checkpoint`: the folder it writes holds a config.json
// that parses to the asked size (the tiny one field for field as the
// reference's), every tensor of checkpoint_layout with the release's extras
// (rotary_emb.inv_freq, the abstractor's sin-cos tables) at its shape, in
// the asked dtype and shard, with the synthetic values of io/synthetic.hpp
// (the sin-cos tables: the abstractor's own), and loads back and runs, from
// the library and through `answer`.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "cli_run.hpp"
#include "mplug_owl2/abstractor/sincos_pos_embed.hpp"
#include "mplug_owl2/io/checkpoint.hpp"
#include "mplug_owl2/io/image.hpp"
#include "mplug_owl2/io/synthetic.hpp"
#include "mplug_owl2/io/tokenizer.hpp"
#include "mplug_owl2/model/image_processor.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;
namespace fs = std::filesystem;

namespace {

const std::string kTmp = MPLUG_OWL2_TEST_TMP;
const std::string kTokenizer = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/tokenizer";

using cli_run::read_file;
using cli_run::Run;

Run run(const std::string& args, const std::string& tag) { return cli_run::run(args, "synth_cli_" + tag); }

std::string fresh(const std::string& name) {
    const fs::path p = fs::path(kTmp) / name;
    fs::remove_all(p);
    return p.string();
}

// The stored value of element i of a tensor, as float.
float stored(const TensorInfo& t, std::size_t i) {
    float f = 0;
    convert_elements<float>(t.dtype, t.data + i * dtype_size(t.dtype), 1, &f);
    return f;
}

float round_to(DType dtype, float x) {
    if (dtype == DType::F16) return fp16_to_float(float_to_fp16(x));
    if (dtype == DType::BF16) return bf16_to_float(float_to_bf16(x));
    return x;
}

// Every tensor of `dir` is the layout's, at its shape, dtype and shard, with
// the synthetic values of `seed` rounded to `dtype`.
void check_written(const std::string& dir, DType dtype, std::uint64_t seed, bool sharded, const std::string& ext) {
    const ModelConfig config = load_config(dir + "/config.json");
    LayoutOptions layout;
    layout.rotary_inv_freq = true;
    layout.abstractor_pos_tables = true;
    const auto entries = checkpoint_layout(config, layout);
    const auto ck = open_checkpoint(dir);
    std::set<std::string> want;
    for (const auto& e : entries) want.insert(e.name);
    const auto names = ck->names();
    CHECK(std::set<std::string>(names.begin(), names.end()) == want);
    CHECK(names.size() == entries.size());

    const int shards = config.text.num_hidden_layers + 1;
    const auto A = static_cast<std::size_t>(config.abstractor.hidden_size);
    const Matrix<float> q_table = get_1d_sincos_pos_embed(A, static_cast<std::size_t>(config.abstractor.num_learnable_queries));
    const Matrix<float> k_table = get_2d_sincos_pos_embed(A, static_cast<std::size_t>(config.abstractor.grid_size),
                                                          config.abstractor.use_cls_token);
    for (const auto& e : entries) {
        INFO(e.name);
        const TensorInfo* t = ck->find(e.name);
        REQUIRE(t != nullptr);
        CHECK(t->shape == e.shape);
        CHECK(t->dtype == dtype);
        char file[64];
        if (sharded)
            std::snprintf(file, sizeof file, "%s-%05d-of-%05d.%s", ext == "bin" ? "pytorch_model" : "model",
                          e.shard + 1, shards, ext.c_str());
        else
            std::snprintf(file, sizeof file, "%s", ext == "bin" ? "pytorch_model.bin" : "model.safetensors");
        CHECK(fs::path(ck->origin(e.name)).filename() == file);

        std::vector<float> v(shape_numel(e.shape));
        const bool q_pos = e.name.find(".q_pos_embed") != std::string::npos;
        const bool k_pos = e.name.find(".k_pos_embed") != std::string::npos;
        if (q_pos || k_pos) {
            const Matrix<float>& table = q_pos ? q_table : k_table;
            REQUIRE(table.size() == v.size());
            std::copy(table.begin(), table.end(), v.begin());
        } else {
            synthetic_values(e.name, e.shape, seed, v.data(), config.text.rope_theta);
        }
        std::size_t mismatches = 0;
        for (std::size_t i = 0; i < v.size(); ++i) mismatches += stored(*t, i) != round_to(dtype, v[i]);
        CHECK(mismatches == 0);
    }
}

}  // namespace

TEST_CASE("synth-checkpoint writes the tiny size as the reference config in release shards", "[cli][synth]") {
    const std::string dir = fresh("synth_tiny_bin");
    const Run r = run("synth-checkpoint --out '" + dir + "' --size tiny --seed 3", "tiny");
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.find("no tokenizer.model written") != std::string::npos);
    CHECK(!fs::exists(dir + "/tokenizer.model"));
    CHECK(locate_checkpoint(dir).layout == CheckpointLayout::ShardedPyTorch);
    check_written(dir, DType::F16, 3, true, "bin");

    // config.json: the reference's tiny configuration, in the published format.
    const ModelConfig ours = load_config(dir + "/config.json");
    const ModelConfig ref = load_config(parity::tiny_dir() + "/config.json");
    const auto j = nlohmann::json::parse(read_file(dir + "/config.json"));
    CHECK(j["model_type"] == "mplug_owl2");
    CHECK(j["architectures"] == nlohmann::json::array({"MPLUGOwl2LlamaForCausalLM"}));
    CHECK(j["torch_dtype"] == "float16");
    CHECK(j["visual_config"].contains("visual_model"));
    CHECK(j["visual_config"].contains("visual_abstractor"));
    const auto &a = ours.text, &b = ref.text;
    CHECK(std::make_tuple(a.vocab_size, a.hidden_size, a.intermediate_size, a.num_hidden_layers, a.num_attention_heads,
                          a.num_key_value_heads, a.hidden_act, a.max_position_embeddings, a.rms_norm_eps, a.rope_theta,
                          a.bos_token_id, a.eos_token_id, a.tie_word_embeddings, a.attention_bias, a.pad_token_id) ==
          std::make_tuple(b.vocab_size, b.hidden_size, b.intermediate_size, b.num_hidden_layers, b.num_attention_heads,
                          b.num_key_value_heads, b.hidden_act, b.max_position_embeddings, b.rms_norm_eps, b.rope_theta,
                          b.bos_token_id, b.eos_token_id, b.tie_word_embeddings, b.attention_bias, b.pad_token_id));
    const auto &v = ours.vision, &w = ref.vision;
    CHECK(std::make_tuple(v.hidden_size, v.intermediate_size, v.num_hidden_layers, v.num_attention_heads, v.image_size,
                          v.patch_size, v.hidden_act, v.layer_norm_eps, v.use_post_layernorm, v.use_cls_token) ==
          std::make_tuple(w.hidden_size, w.intermediate_size, w.num_hidden_layers, w.num_attention_heads, w.image_size,
                          w.patch_size, w.hidden_act, w.layer_norm_eps, w.use_post_layernorm, w.use_cls_token));
    const auto &p = ours.abstractor, &q = ref.abstractor;
    CHECK(std::make_tuple(p.num_learnable_queries, p.hidden_size, p.num_hidden_layers, p.num_attention_heads,
                          p.intermediate_size, p.layer_norm_eps, p.encoder_hidden_size, p.grid_size, p.use_cls_token,
                          p.add_v2t_pos_emb) ==
          std::make_tuple(q.num_learnable_queries, q.hidden_size, q.num_hidden_layers, q.num_attention_heads,
                          q.intermediate_size, q.layer_norm_eps, q.encoder_hidden_size, q.grid_size, q.use_cls_token,
                          q.add_v2t_pos_emb));

    // It loads (the half matrices kept as stored) and runs; only the rotary buffers go unused.
    auto model = load_model<float>(dir);
    CHECK(model.unused_tensors == std::vector<std::string>{"model.layers.0.self_attn.rotary_emb.inv_freq",
                                                           "model.layers.1.self_attn.rotary_emb.inv_freq"});
    CHECK_FALSE(model.lm_head.weight_half.empty());
    GenerationConfig g;
    g.max_new_tokens = 3;
    g.stop_at_eos = false;
    const auto gen = model.generate({1, -200, 5, 17}, xt::xtensor<float, 4>(xt::zeros<float>({1, 3, 56, 56})), g,
                                    Hooks<float>());
    CHECK(gen.ids.size() == 3);

    // A folder that already holds a checkpoint is refused.
    const Run again = run("synth-checkpoint --out '" + dir + "' --size tiny", "tiny_again");
    CHECK(again.code == 2);
    CHECK(again.err.find("already holds a checkpoint (pytorch_model.bin.index.json)") != std::string::npos);
}

TEST_CASE("synth-checkpoint writes bf16 safetensors shards and single files that load back", "[cli][synth]") {
    const std::string small = fresh("synth_small_st");
    const Run r = run("synth-checkpoint --out '" + small + "' --size small --layout safetensors --dtype bf16 --seed 9 " +
                          "--tokenizer '" + kTokenizer + "/tokenizer.model'",
                      "small");
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(locate_checkpoint(small).layout == CheckpointLayout::ShardedSafetensors);
    check_written(small, DType::BF16, 9, true, "safetensors");
    for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
        CHECK(read_file(small + "/" + f) == read_file(kTokenizer + "/" + f));
    const ModelConfig config = load_config(small + "/config.json");
    CHECK(config.text.num_hidden_layers == 4);
    CHECK(config.vision.image_size == 112);

    // answer runs on it and gives what the library gives (greedy, bf16 weights kept in half).
    const Run a = run("answer --model '" + small + "' --image '" + parity::tiny_dir() +
                          "/coffee.jpg' --prompt 'Describe the image.' --max-new-tokens 4 --ids --print-prompt-ids",
                      "small_answer");
    INFO(a.err);
    REQUIRE(a.code == 0);
    auto model = load_model<float>(small);
    CHECK(model.model.layers[3].mlp.up_proj.weight_half.dtype == DType::BF16);
    ImageProcessorConfig pre = ImageProcessorConfig::load(small + "/preprocessor_config.json");
    CHECK(pre.crop_size == 112);
    const ProcessedImage img = process_image(load_image(parity::tiny_dir() + "/coffee.jpg"), "pad", pre);
    xt::xtensor<float, 4> pixels = xt::xtensor<float, 4>::from_shape({1, 3, 112, 112});
    std::copy(img.pixel_values.begin(), img.pixel_values.end(), pixels.begin());
    const Tokenizer tok(small);
    const auto prompt = tok.encode_prompt("USER: <|image|>Describe the image. ASSISTANT:");
    GenerationConfig g;
    g.max_new_tokens = 4;
    const auto want = model.generate(prompt, pixels, g, Hooks<float>());
    std::string ids;
    for (auto id : want.ids) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    CHECK(a.err.find("\nids: " + ids + "\n") != std::string::npos);

    // One file of each kind, float32.
    for (const std::string layout : {"bin", "safetensors"}) {
        const std::string dir = fresh("synth_tiny_single_" + layout);
        const Run s = run("synth-checkpoint --out '" + dir + "' --size tiny --single-file --dtype fp32 --layout " + layout,
                          "single_" + layout);
        INFO(s.err);
        REQUIRE(s.code == 0);
        CHECK(locate_checkpoint(dir).layout ==
              (layout == "bin" ? CheckpointLayout::PyTorch : CheckpointLayout::Safetensors));
        check_written(dir, DType::F32, 0, false, layout);
        CHECK(load_model<double>(dir).unused_tensors.size() == 2);
    }
}

TEST_CASE("synth-checkpoint refuses unknown sizes and tokenizers larger than the vocabulary", "[cli][synth][errors]") {
    const Run size = run("synth-checkpoint --out '" + fresh("synth_bad_size") + "' --size huge", "bad_size");
    CHECK(size.code == 1);
    CHECK(size.err.rfind("error: ", 0) == 0);

    // A config of 100 tokens cannot take the 320-piece tokenizer.
    const std::string cfg = kTmp + "/synth_small_vocab_config.json";
    auto j = nlohmann::json::parse(read_file(parity::tiny_dir() + "/config.json"));
    j["vocab_size"] = 100;
    std::ofstream(cfg) << j.dump();
    const std::string out = fresh("synth_bad_tokenizer");
    const Run tok = run("synth-checkpoint --out '" + out + "' --config '" + cfg + "' --tokenizer '" + kTokenizer + "'",
                        "bad_tokenizer");
    CHECK(tok.code == 2);
    CHECK(tok.err.find("320 pieces, more than the model's vocab_size 100") != std::string::npos);
    CHECK(!fs::exists(out + "/config.json"));
}
