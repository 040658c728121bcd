// Checkpoints that do not fit their config: the tiny reference model
// (reference_outputs/tiny) rewritten into a temporary folder with one tensor
// dropped, added, transposed, reshaped or stored as integers. Loading the
// model must name the tensor, the file holding it and what was expected
// (an extra tensor is not an error: it is listed in unused_tensors, as the
// release's rotary_emb.inv_freq buffers are).
//
// The other inputs are tested where their readers are:
//   safetensors headers and ranges    test_safetensors.cpp
//   PyTorch zip/pickle files          test_pytorch_checkpoint.cpp
//   index files of sharded folders    test_checkpoint_layouts.cpp
//   config.json                       test_config.cpp
//   image files                       test_image.cpp
#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <map>

#include "mplug_owl2/io/checkpoint.hpp"
#include "mplug_owl2/model/load_model.hpp"

using namespace mplug_owl2;
namespace fs = std::filesystem;

namespace {

const std::string kTiny = std::string(MPLUG_OWL2_REFERENCE_DIR) + "/tiny";

struct StoredTensor {
    DType dtype;
    Shape shape;
    std::vector<std::uint8_t> bytes;
};
using Tensors = std::map<std::string, StoredTensor>;

// The tiny checkpoint's tensors, with float32 ones converted to `dtype`.
Tensors tiny_tensors(DType dtype = DType::F32) {
    SafetensorsFile f(kTiny + "/model.safetensors");
    Tensors out;
    for (const auto& name : f.names()) {
        const TensorInfo& t = *f.find(name);
        DType stored;
        auto bytes = tensor_bytes_as(t, dtype, stored);
        out[name] = StoredTensor{stored, t.shape, std::move(bytes)};
    }
    return out;
}

// A model folder holding the tiny config and `tensors` as model.safetensors.
std::string model_folder(const std::string& name, const Tensors& tensors) {
    const fs::path dir = fs::path(MPLUG_OWL2_TEST_TMP) / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(kTiny + "/config.json", dir / "config.json");
    SafetensorsWriter w;
    for (const auto& kv : tensors) w.add_bytes(kv.first, kv.second.dtype, kv.second.shape, kv.second.bytes);
    w.write((dir / "model.safetensors").string());
    return dir.string();
}

// The [rows, cols] matrix `t` stored as its transpose [cols, rows].
void transpose(StoredTensor& t) {
    REQUIRE(t.shape.size() == 2);
    const std::size_t rows = t.shape[0], cols = t.shape[1], es = dtype_size(t.dtype);
    std::vector<std::uint8_t> out(t.bytes.size());
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c)
            std::memcpy(out.data() + (c * rows + r) * es, t.bytes.data() + (r * cols + c) * es, es);
    t.bytes = std::move(out);
    t.shape = {cols, rows};
}

// The message of the mplug_owl2::Error that loading the folder throws (any
// other exception fails the test).
template <class T>
std::string load_error(const std::string& dir, const LoadOptions& options = {}) {
    try {
        load_model<T>(dir, options);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("the unmodified rewrite of the tiny checkpoint loads", "[input-errors][weights]") {
    const std::string dir = model_folder("intact_model", tiny_tensors());
    const auto model = load_model<double>(dir);
    CHECK(model.unused_tensors.empty());
    CHECK(model.lm_head.weight.shape(0) == 320);
}

TEST_CASE("a missing tensor is named with its file and expected shape", "[input-errors][weights]") {
    for (const std::string name : {"model.layers.1.mlp.down_proj.weight", "model.vision_model.post_layernorm.bias",
                                   "model.visual_abstractor.vit_eos", "lm_head.weight"}) {
        INFO(name);
        Tensors t = tiny_tensors();
        const Shape shape = t.at(name).shape;
        t.erase(name);
        const std::string dir = model_folder("missing_tensor", t);
        Shape expected = shape;
        while (expected.size() > 1 && expected.front() == 1) expected.erase(expected.begin());  // [1, 1, H] asked as [H]
        CHECK(load_error<double>(dir) == "tensor " + name + ": missing from the checkpoint " + dir +
                                             "/model.safetensors (expected shape " + shape_str(expected) + ")");
    }
}

TEST_CASE("an extra tensor is listed by name as unused", "[input-errors][weights]") {
    Tensors t = tiny_tensors();
    t["model.layers.0.mlp.stray.weight"] = StoredTensor{DType::F32, {2, 2}, std::vector<std::uint8_t>(16, 0)};
    t["zzz_not_a_weight"] = StoredTensor{DType::I64, {1}, std::vector<std::uint8_t>(8, 0)};
    const std::string dir = model_folder("extra_tensor", t);
    const auto model = load_model<double>(dir);
    CHECK(model.unused_tensors == std::vector<std::string>{"model.layers.0.mlp.stray.weight", "zzz_not_a_weight"});
    // strict loading refuses them by name, but not the buffers the release stores and the model recomputes
    LoadOptions strict;
    strict.strict = true;
    CHECK(load_error<double>(dir, strict) ==
          "checkpoint " + dir + ": 2 tensors that no module reads: model.layers.0.mlp.stray.weight, zzz_not_a_weight"
                                " (strict loading; without it they are listed as unused)");
    Tensors buffers = tiny_tensors();
    buffers["model.layers.1.self_attn.rotary_emb.inv_freq"] = StoredTensor{DType::F32, {8}, std::vector<std::uint8_t>(32, 0)};
    const auto with_buffers = load_model<double>(model_folder("recomputed_buffer", buffers), strict);
    CHECK(with_buffers.unused_tensors == std::vector<std::string>{"model.layers.1.self_attn.rotary_emb.inv_freq"});
}

TEST_CASE("a transposed matrix is named and said to be the transpose", "[input-errors][weights]") {
    // Non-square matrices only: a transposed square matrix cannot be told by its shape.
    for (const std::string name : {"model.layers.0.mlp.gate_proj.weight", "model.vision_model.encoder.layers.1.mlp.fc2.weight",
                                   "model.visual_abstractor.encoder.layers.0.crossattention.output.mlp.w1.weight",
                                   "lm_head.weight"}) {
        INFO(name);
        Tensors t = tiny_tensors();
        const Shape shape = t.at(name).shape;
        transpose(t.at(name));
        const std::string dir = model_folder("transposed_tensor", t);
        CHECK(load_error<double>(dir) == "tensor " + name + " in " + dir + "/model.safetensors: expected shape " +
                                             shape_str(shape) + ", found " + shape_str({shape[1], shape[0]}) +
                                             " (the transpose of the expected shape)");
    }
    // The same in half precision, where float compute keeps the fp16 matrix as stored.
    Tensors half = tiny_tensors(DType::F16);
    transpose(half.at("model.layers.1.mlp.up_proj.weight"));
    const std::string half_dir = model_folder("transposed_half", half);
    CHECK(load_error<float>(half_dir) == "tensor model.layers.1.mlp.up_proj.weight in " + half_dir +
                                         "/model.safetensors: expected shape [160, 64], found [64, 160]"
                                         " (the transpose of the expected shape)");
}

TEST_CASE("a mis-shaped or integer tensor is named with both shapes or its dtype", "[input-errors][weights]") {
    SECTION("reshaped, same number of elements") {
        Tensors t = tiny_tensors();
        t.at("model.norm.weight").shape = {2, 32};
        const std::string dir = model_folder("reshaped_tensor", t);
        CHECK(load_error<double>(dir) ==
              "tensor model.norm.weight in " + dir + "/model.safetensors: expected shape [64], found [2, 32]");
    }
    SECTION("a different size") {
        Tensors t = tiny_tensors();
        t.at("model.embed_tokens.weight") = StoredTensor{DType::F32, {321, 64}, std::vector<std::uint8_t>(321 * 64 * 4, 0)};
        const std::string dir = model_folder("resized_tensor", t);
        CHECK(load_error<double>(dir) == "tensor model.embed_tokens.weight in " + dir +
                                             "/model.safetensors: expected shape [320, 64], found [321, 64]");
    }
    SECTION("a 4-D patch embedding with its kernel dimensions swapped for channels") {
        Tensors t = tiny_tensors();
        t.at("model.vision_model.embeddings.patch_embed.weight").shape = {64, 14, 14, 3};
        const std::string dir = model_folder("patch_tensor", t);
        CHECK(load_error<double>(dir) == "tensor model.vision_model.embeddings.patch_embed.weight in " + dir +
                                             "/model.safetensors: expected shape [64, 3, 14, 14], found [64, 14, 14, 3]");
    }
    SECTION("integers where floats belong") {
        Tensors t = tiny_tensors();
        t.at("model.norm.weight").dtype = DType::I32;
        const std::string dir = model_folder("integer_tensor", t);
        CHECK(load_error<double>(dir) ==
              "tensor model.norm.weight in " + dir + "/model.safetensors: expected a floating-point dtype, found I32");
    }
}

TEST_CASE("a model folder without config.json or weights is named", "[input-errors][weights]") {
    const std::string dir = model_folder("no_config", tiny_tensors());
    fs::remove(dir + "/config.json");
    CHECK_THAT(load_error<double>(dir), Catch::StartsWith(dir + "/config.json: cannot open"));
    const std::string dir2 = model_folder("no_weights", tiny_tensors());
    fs::remove(dir2 + "/model.safetensors");
    CHECK_THAT(load_error<double>(dir2), Catch::StartsWith(dir2 + ": no weights found"));
}
