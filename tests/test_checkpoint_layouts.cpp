// The four checkpoint layouts of a Hugging Face folder: the tiny reference
// model (reference_outputs/tiny/model.safetensors, float32) is written in the
// release's layout (fp16 pytorch_model-000NN-of-000MM.bin shards, one per
// decoder layer plus one, with pytorch_model.bin.index.json) and as bf16
// sharded safetensors, then opened again with open_checkpoint: every tensor
// must be exactly the fp16 / bf16 rounding of the original. Also: layout
// detection order, and the errors for broken folders.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mplug_owl2/io/checkpoint.hpp"

using namespace mplug_owl2;
namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(MPLUG_OWL2_REFERENCE_DIR) + "/tiny/model.safetensors";

std::string fresh_dir(const std::string& name) {
    const fs::path p = fs::path(MPLUG_OWL2_TEST_TMP) / name;
    fs::remove_all(p);
    fs::create_directories(p);
    return p.string();
}

std::string open_error(const std::string& path) {
    try {
        open_checkpoint(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}
void write_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

// Every tensor of `ck` is the float32 tensor of `ref` rounded to `to` (bit for bit).
void check_rounded(const TensorSource& ref, const TensorSource& ck, DType to) {
    REQUIRE(ck.names() == ref.names());
    for (const auto& name : ref.names()) {
        INFO(name);
        const TensorInfo& r = *ref.find(name);
        const TensorInfo& c = *ck.find(name);
        REQUIRE(r.dtype == DType::F32);
        CHECK(c.dtype == to);
        CHECK(c.shape == r.shape);
        REQUIRE(c.nbytes == shape_numel(r.shape) * dtype_size(to));
        std::size_t mismatches = 0;
        for (std::size_t i = 0; i < shape_numel(r.shape); ++i) {
            float f;
            std::memcpy(&f, r.data + 4 * i, 4);
            if (to == DType::F32) {
                mismatches += std::memcmp(&f, c.data + 4 * i, 4) != 0;
                continue;
            }
            std::uint16_t h;
            std::memcpy(&h, c.data + 2 * i, 2);
            mismatches += h != (to == DType::F16 ? float_to_fp16(f) : float_to_bf16(f));
        }
        CHECK(mismatches == 0);
    }
}

// Tensors held in memory, for layouts the reference model is too small for.
class MemorySource : public TensorSource {
public:
    void add(const std::string& name, DType dtype, const Shape& shape, std::uint8_t fill) {
        bytes_[name].assign(shape_numel(shape) * dtype_size(dtype), fill);
        infos_[name] = TensorInfo{dtype, shape, bytes_[name].data(), bytes_[name].size()};
    }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : infos_) out.push_back(kv.first);
        return out;
    }
    const TensorInfo* find(const std::string& n) const override {
        auto it = infos_.find(n);
        return it == infos_.end() ? nullptr : &it->second;
    }
    std::string origin(const std::string&) const override { return "memory"; }

private:
    std::map<std::string, std::vector<std::uint8_t>> bytes_;
    std::map<std::string, TensorInfo> infos_;
};

}  // namespace

TEST_CASE("the tiny model as fp16 PyTorch shards reads back as its exact fp16 rounding", "[layouts]") {
    SafetensorsFile ref(kModel);
    const std::string dir = fresh_dir("tiny_bin_f16");
    const auto groups = shards_by_decoder_layer(ref.names());
    REQUIRE(groups.size() == 3);  // everything else, layer 0, layer 1
    save_checkpoint(ref, dir, CheckpointFormat::PyTorch, DType::F16, groups);

    CHECK(locate_checkpoint(dir).layout == CheckpointLayout::ShardedPyTorch);
    auto ck = open_checkpoint(dir);
    check_rounded(ref, *ck, DType::F16);
    CHECK(file_name(ck->origin("model.embed_tokens.weight")) == "pytorch_model-00001-of-00003.bin");
    CHECK(file_name(ck->origin("model.layers.0.mlp.up_proj.weight")) == "pytorch_model-00002-of-00003.bin");
    CHECK(file_name(ck->origin("model.layers.1.self_attn.k_proj.multiway.1.weight")) == "pytorch_model-00003-of-00003.bin");

    // The index: every tensor mapped to its shard, total_size the bytes stored.
    const auto index = read_json(dir + "/pytorch_model.bin.index.json");
    std::size_t total = 0;
    for (const auto& n : ref.names()) {
        total += ck->find(n)->nbytes;
        CHECK(index["weight_map"][n].get<std::string>() == file_name(ck->origin(n)));
    }
    CHECK(index["weight_map"].size() == ref.names().size());
    CHECK(index["metadata"]["total_size"].get<std::size_t>() == total);

    // The weight loader reads through the shards.
    WeightLoader loader(*ck);
    const auto w = loader.matrix<float>("model.layers.1.mlp.down_proj.weight", 64, 160);
    float f;
    std::memcpy(&f, ref.find("model.layers.1.mlp.down_proj.weight")->data + 4 * 7, 4);
    CHECK(w(0, 7) == fp16_to_float(float_to_fp16(f)));
}

TEST_CASE("the tiny model as bf16 safetensors shards reads back as its exact bf16 rounding", "[layouts]") {
    SafetensorsFile ref(kModel);
    const std::string dir = fresh_dir("tiny_st_bf16");
    save_checkpoint(ref, dir, CheckpointFormat::Safetensors, DType::BF16, shards_by_decoder_layer(ref.names()));
    CHECK(locate_checkpoint(dir).layout == CheckpointLayout::ShardedSafetensors);
    auto ck = open_checkpoint(dir);
    check_rounded(ref, *ck, DType::BF16);
    CHECK(file_name(ck->origin("lm_head.weight")) == "model-00001-of-00003.safetensors");
    CHECK(file_name(ck->origin("model.layers.1.input_layernorm.multiway.0.weight")) == "model-00003-of-00003.safetensors");
    CHECK(SafetensorsFile(dir + "/model-00002-of-00003.safetensors").metadata().at("format") == "pt");
}

TEST_CASE("single-file layouts keep float32 bit for bit", "[layouts]") {
    SafetensorsFile ref(kModel);
    const std::vector<std::vector<std::string>> one = {ref.names()};
    const std::string bin = fresh_dir("tiny_bin_f32");
    save_checkpoint(ref, bin, CheckpointFormat::PyTorch, DType::F32, one);
    CHECK(locate_checkpoint(bin).layout == CheckpointLayout::PyTorch);
    check_rounded(ref, *open_checkpoint(bin), DType::F32);
    CHECK(!fs::exists(bin + "/pytorch_model.bin.index.json"));

    const std::string st = fresh_dir("tiny_st_f32");
    save_checkpoint(ref, st, CheckpointFormat::Safetensors, DType::F32, one);
    CHECK(locate_checkpoint(st).layout == CheckpointLayout::Safetensors);
    check_rounded(ref, *open_checkpoint(st), DType::F32);
    // A weights file or an index can be opened directly too.
    check_rounded(ref, *open_checkpoint(bin + "/pytorch_model.bin"), DType::F32);
}

TEST_CASE("the release layout has 33 shards for 32 decoder layers", "[layouts]") {
    MemorySource src;
    src.add("model.embed_tokens.weight", DType::F32, {8, 4}, 0x3c);
    src.add("lm_head.weight", DType::F32, {8, 4}, 0x3d);
    src.add("model.vision_model.embeddings.cls_token", DType::F32, {1, 1, 4}, 0x3e);
    src.add("model.position_ids", DType::I64, {1, 5}, 0x01);  // integer tensors keep their type
    for (int l = 0; l < 32; ++l) {
        src.add("model.layers." + std::to_string(l) + ".mlp.up_proj.weight", DType::F32, {6, 4}, 0x3f);
        src.add("model.layers." + std::to_string(l) + ".input_layernorm.multiway.0.weight", DType::F32, {4}, 0x40);
    }
    const auto groups = shards_by_decoder_layer(src.names());
    REQUIRE(groups.size() == 33);
    const std::string dir = fresh_dir("release_layout");
    save_checkpoint(src, dir, CheckpointFormat::PyTorch, DType::F16, groups);
    for (int k = 1; k <= 33; ++k) {
        char name[64];
        std::snprintf(name, sizeof name, "pytorch_model-%05d-of-00033.bin", k);
        CHECK(fs::exists(dir + "/" + name));
    }
    auto ck = open_checkpoint(dir);
    CHECK(ck->names().size() == src.names().size());
    CHECK(file_name(ck->origin("model.layers.31.mlp.up_proj.weight")) == "pytorch_model-00033-of-00033.bin");
    CHECK(file_name(ck->origin("model.layers.9.mlp.up_proj.weight")) == "pytorch_model-00011-of-00033.bin");
    CHECK(ck->find("model.position_ids")->dtype == DType::I64);
    CHECK(ck->find("model.layers.3.input_layernorm.multiway.0.weight")->dtype == DType::F16);
    // 0x40404040 as float32 is 3.0039062...; fp16 rounds it to 0x4202 (3.00390625 exactly).
    std::uint16_t h;
    std::memcpy(&h, ck->find("model.layers.3.input_layernorm.multiway.0.weight")->data, 2);
    CHECK(h == 0x4202);
}

TEST_CASE("layout detection follows the from_pretrained order", "[layouts]") {
    SafetensorsFile ref(kModel);
    const std::vector<std::vector<std::string>> one = {ref.names()};
    const std::string dir = fresh_dir("both_layouts");
    save_checkpoint(ref, dir, CheckpointFormat::PyTorch, DType::F16, one);
    save_checkpoint(ref, dir, CheckpointFormat::Safetensors, DType::F32, one);
    CHECK(locate_checkpoint(dir).layout == CheckpointLayout::Safetensors);
    CHECK(open_checkpoint(dir)->find("lm_head.weight")->dtype == DType::F32);
    fs::remove(dir + "/model.safetensors");
    CHECK(locate_checkpoint(dir).layout == CheckpointLayout::PyTorch);
    CHECK(open_checkpoint(dir)->find("lm_head.weight")->dtype == DType::F16);
}

TEST_CASE("broken checkpoint folders are reported by file and tensor", "[layouts][errors]") {
    SafetensorsFile ref(kModel);
    CHECK_THAT(open_error(fresh_dir("empty")), Catch::Contains("no weights found"));
    CHECK_THAT(open_error(std::string(MPLUG_OWL2_TEST_TMP) + "/no_such_folder"), Catch::Contains("not a folder"));

    {
        const std::string dir = fresh_dir("legacy");
        fs::copy_file(std::string(MPLUG_OWL2_FIXTURE_DIR) + "/torch/legacy.bin", dir + "/pytorch_model.bin");
        CHECK_THAT(open_error(dir), Catch::Contains("pytorch_model.bin: legacy PyTorch format"));
    }

    const auto groups = shards_by_decoder_layer(ref.names());
    auto sharded = [&](const std::string& name) {
        const std::string dir = fresh_dir(name);
        save_checkpoint(ref, dir, CheckpointFormat::PyTorch, DType::F16, groups);
        return dir;
    };
    {
        const std::string dir = sharded("missing_shard");
        fs::remove(dir + "/pytorch_model-00002-of-00003.bin");
        CHECK_THAT(open_error(dir), Catch::Contains("shard pytorch_model-00002-of-00003.bin (13 tensors, e.g. model.layers.0.") &&
                                        Catch::Contains("is missing"));
    }
    {
        const std::string dir = sharded("absent_tensor");
        auto index = read_json(dir + "/pytorch_model.bin.index.json");
        index["weight_map"]["model.layers.0.mlp.extra.weight"] = "pytorch_model-00002-of-00003.bin";
        write_json(dir + "/pytorch_model.bin.index.json", index);
        CHECK_THAT(open_error(dir), Catch::Contains("tensor model.layers.0.mlp.extra.weight is listed in shard "
                                                    "pytorch_model-00002-of-00003.bin but absent"));
    }
    {
        const std::string dir = fresh_dir("duplicate_exact");
        MemorySource a, b;
        a.add("x", DType::F32, {2}, 0);
        b.add("x", DType::F32, {2}, 0);
        b.add("y", DType::F32, {2}, 0);
        save_checkpoint(a, dir, CheckpointFormat::Safetensors, DType::F32, {a.names()});
        fs::rename(dir + "/model.safetensors", dir + "/a.safetensors");
        save_checkpoint(b, dir, CheckpointFormat::Safetensors, DType::F32, {b.names()});
        fs::rename(dir + "/model.safetensors", dir + "/b.safetensors");
        write_json(dir + "/model.safetensors.index.json", {{"weight_map", {{"x", "a.safetensors"}, {"y", "b.safetensors"}}}});
        CHECK_THAT(open_error(dir), Catch::Contains("tensor x appears in two shards") && Catch::Contains("a.safetensors") &&
                                        Catch::Contains("b.safetensors"));
    }
    {
        const std::string dir = fresh_dir("bad_index");
        write_json(dir + "/pytorch_model.bin.index.json", {{"weight_map", {{"x", "../outside.bin"}}}});
        CHECK_THAT(open_error(dir), Catch::Contains("names shard \"../outside.bin\" outside the folder"));
        write_json(dir + "/pytorch_model.bin.index.json", {{"metadata", {{"total_size", 1}}}});
        CHECK_THAT(open_error(dir), Catch::Contains("no \"weight_map\" object"));
        std::ofstream(dir + "/pytorch_model.bin.index.json") << "{ not json";
        CHECK_THAT(open_error(dir), Catch::Contains("pytorch_model.bin.index.json: not valid JSON"));
    }
}

TEST_CASE("sharded safetensors index files are checked entry by entry", "[layouts][errors]") {
    SafetensorsFile ref(kModel);
    const auto groups = shards_by_decoder_layer(ref.names());
    const std::string dir = fresh_dir("st_index");
    save_checkpoint(ref, dir, CheckpointFormat::Safetensors, DType::F32, groups);
    const std::string index_path = dir + "/model.safetensors.index.json";
    const nlohmann::json good = read_json(index_path);
    REQUIRE(good["weight_map"].size() == ref.names().size());
    // The error of opening the folder with `index` as its index; it must be
    // an mplug_owl2::Error naming the index file first.
    auto with_index = [&](const std::string& text) {
        std::ofstream(index_path, std::ios::trunc) << text;
        const std::string msg = open_error(dir);
        CHECK_THAT(msg, Catch::StartsWith(index_path + ": "));
        return msg;
    };
    auto with_map = [&](const std::string& tensor, const nlohmann::json& file) {
        nlohmann::json j = good;
        j["weight_map"][tensor] = file;
        return with_index(j.dump());
    };

    SECTION("invalid JSON and wrong types") {
        CHECK_THAT(with_index("{\"weight_map\": {"), Catch::EndsWith(": not valid JSON"));
        CHECK_THAT(with_index(""), Catch::EndsWith(": not valid JSON"));
        CHECK_THAT(with_index("[\"model.safetensors\"]"), Catch::EndsWith(": not a JSON object"));
        CHECK_THAT(with_index(R"({"weight_map": ["a", "b"]})"), Catch::EndsWith(": no \"weight_map\" object"));
        CHECK_THAT(with_index(R"({"weight_map": {}})"), Catch::EndsWith(": the weight_map is empty"));
        CHECK_THAT(with_map("lm_head.weight", 3), Catch::EndsWith(": weight_map entry lm_head.weight is not a file name"));
        CHECK_THAT(with_map("lm_head.weight", nullptr), Catch::Contains("weight_map entry lm_head.weight is not a file name"));
        // Deep nesting is parsed without recursion and refused by type.
        CHECK_THAT(with_index(R"({"weight_map": {"x": )" + std::string(100000, '[') + std::string(100000, ']') + "}}"),
                   Catch::EndsWith(": weight_map entry x is not a file name"));
    }
    SECTION("a shard that is missing") {
        fs::remove(dir + "/model-00002-of-00003.safetensors");
        CHECK_THAT(with_index(good.dump()),
                   Catch::Contains("shard model-00002-of-00003.safetensors (13 tensors, e.g. model.layers.0.") &&
                       Catch::EndsWith(") is missing from " + dir));
    }
    SECTION("a tensor mapped to a shard that does not hold it") {
        CHECK_THAT(with_map("model.layers.1.mlp.up_proj.weight", "model-00002-of-00003.safetensors"),
                   Catch::EndsWith(": tensor model.layers.1.mlp.up_proj.weight is listed in shard "
                                   "model-00002-of-00003.safetensors but absent from " +
                                   dir + "/model-00002-of-00003.safetensors"));
    }
    SECTION("shard paths that leave the folder") {
        for (const std::string& bad : {std::string("/etc/passwd"), std::string(".."), std::string("../model.safetensors"),
                                       std::string("a/../../model.safetensors"), std::string("sub/.."), std::string("")}) {
            INFO(bad);
            CHECK_THAT(with_map("lm_head.weight", bad),
                       Catch::EndsWith(": weight_map entry lm_head.weight names shard \"" + bad + "\" outside the folder"));
        }
        // Read up to the NUL, this name would be an existing shard.
        CHECK_THAT(with_map("lm_head.weight", std::string("model-00001-of-00003.safetensors") + '\0' + "x"),
                   Catch::EndsWith(": weight_map entry lm_head.weight names a shard with a NUL byte in its name"));
    }
    SECTION("a shard that is not a weights file") {
        std::ofstream(dir + "/model-00002-of-00003.safetensors", std::ios::trunc) << "not weights at all";
        CHECK_THAT(open_error(dir), Catch::StartsWith(dir + "/model-00002-of-00003.safetensors: safetensors header length"));
    }
    SECTION("an index file far too large to be one") {
        {
            std::ofstream out(index_path, std::ios::binary | std::ios::trunc);
            out.seekp(static_cast<std::streamoff>(ShardedCheckpoint::kMaxIndexBytes));
            out << '}';
        }
        CHECK(open_error(dir) == index_path + ": 67108865 bytes, over the limit of 67108864 for an index file");
    }
    SECTION("the intact index opens, also when named directly") {
        CHECK(open_checkpoint(dir)->names() == ref.names());
        CHECK(open_checkpoint(index_path)->names() == ref.names());
    }
}

TEST_CASE("save_checkpoint checks its shard groups", "[layouts][errors]") {
    MemorySource src;
    src.add("a", DType::F32, {2}, 0);
    src.add("b", DType::F32, {2}, 0);
    const std::string dir = fresh_dir("save_errors");
    CHECK_THROWS_WITH(save_checkpoint(src, dir, CheckpointFormat::PyTorch, DType::F16, {{"a"}}),
                      Catch::Contains("tensor b is in no shard"));
    CHECK_THROWS_WITH(save_checkpoint(src, dir, CheckpointFormat::PyTorch, DType::F16, {{"a", "b"}, {"b"}}),
                      Catch::Contains("tensor b is in two shards"));
    CHECK_THROWS_WITH(save_checkpoint(src, dir, CheckpointFormat::PyTorch, DType::F16, {{"a", "b", "c"}}),
                      Catch::Contains("tensor c is not in the source"));
    CHECK_THROWS_WITH(save_checkpoint(src, dir, CheckpointFormat::PyTorch, DType::I8, {{"a", "b"}}),
                      Catch::Contains("not a floating-point type"));
    CHECK(fs::is_empty(dir));
}
