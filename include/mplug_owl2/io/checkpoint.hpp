// The checkpoint folder of a Hugging Face model, in any of its four layouts,
// looked for in the order from_pretrained uses:
//   model.safetensors                      one safetensors file
//   model.safetensors.index.json           safetensors shards
//   pytorch_model.bin                      one torch.save file
//   pytorch_model.bin.index.json           torch.save shards (the mPLUG-Owl2 release:
//                                          pytorch_model-000NN-of-00033.bin)
// An index is {"metadata": {"total_size": bytes}, "weight_map": {tensor: shard file}}.
// The shards are opened together as one TensorSource whose origin() names
// the shard holding each tensor. save_checkpoint writes the same layouts, in
// half precision if asked, so that a small model can be tested in the shape of
// the release.
#pragma once

#include <sys/stat.h>

#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pytorch_checkpoint.hpp"
#include "pytorch_writer.hpp"
#include "safetensors.hpp"

namespace mplug_owl2 {

enum class CheckpointLayout { Safetensors, ShardedSafetensors, PyTorch, ShardedPyTorch };

inline const char* layout_name(CheckpointLayout l) {
    switch (l) {
        case CheckpointLayout::Safetensors: return "model.safetensors";
        case CheckpointLayout::ShardedSafetensors: return "model.safetensors.index.json";
        case CheckpointLayout::PyTorch: return "pytorch_model.bin";
        case CheckpointLayout::ShardedPyTorch: return "pytorch_model.bin.index.json";
    }
    return "?";
}

namespace checkpoint_detail {
inline bool is_file(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
inline bool is_dir(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
inline std::string join(const std::string& dir, const std::string& name) {
    return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}
inline std::string parent(const std::string& path) {
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}
}  // namespace checkpoint_detail

// One weights file, recognised by its content: a ZIP archive, or a pickle
// stream (the legacy format, which PyTorchCheckpoint then names), is a
// torch.save checkpoint; anything else must be safetensors.
inline std::unique_ptr<TensorSource> open_weights_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open");
    unsigned char head[2] = {};
    in.read(reinterpret_cast<char*>(head), 2);
    const bool zip = in.gcount() == 2 && head[0] == 'P' && head[1] == 'K';
    const bool pickle = in.gcount() >= 1 && head[0] == 0x80;
    if (zip || pickle) return std::make_unique<PyTorchCheckpoint>(path);
    return std::make_unique<SafetensorsFile>(path);
}

// Shards listed by an index file, seen as one source.
class ShardedCheckpoint : public TensorSource {
public:
    // The release's index (33 shards, ~700 tensors) is ~50 KB.
    static constexpr std::size_t kMaxIndexBytes = std::size_t(64) << 20;

    explicit ShardedCheckpoint(const std::string& index_path) : index_path_(index_path) {
        using checkpoint_detail::join;
        const MappedFile index_file(index_path);
        if (index_file.size() > kMaxIndexBytes)
            fail(index_path, ": ", index_file.size(), " bytes, over the limit of ", kMaxIndexBytes, " for an index file");
        const char* text = reinterpret_cast<const char*>(index_file.data());
        nlohmann::json index = nlohmann::json::parse(text, text + index_file.size(), nullptr, /*allow_exceptions=*/false);
        if (index.is_discarded()) fail(index_path, ": not valid JSON");
        if (!index.is_object()) fail(index_path, ": not a JSON object");
        if (!index.contains("weight_map") || !index["weight_map"].is_object())
            fail(index_path, ": no \"weight_map\" object");

        // 1. The index: tensor -> shard file, shard files inside the folder.
        std::map<std::string, std::vector<std::string>> listed;  // shard file -> tensors
        for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
            if (!it.value().is_string()) fail(index_path, ": weight_map entry ", it.key(), " is not a file name");
            const std::string file = it.value().get<std::string>();
            if (file.empty() || file.front() == '/' || file == ".." || file.compare(0, 3, "../") == 0 ||
                file.find("/../") != std::string::npos ||
                (file.size() >= 3 && file.compare(file.size() - 3, 3, "/..") == 0))
                fail(index_path, ": weight_map entry ", it.key(), " names shard \"", file, "\" outside the folder");
            // The file system would read the name up to its first NUL byte only.
            if (file.find('\0') != std::string::npos)
                fail(index_path, ": weight_map entry ", it.key(), " names a shard with a NUL byte in its name");
            listed[file].push_back(it.key());
        }
        if (listed.empty()) fail(index_path, ": the weight_map is empty");
        const std::string dir = checkpoint_detail::parent(index_path);
        for (const auto& kv : listed)
            if (!checkpoint_detail::is_file(join(dir, kv.first)))
                fail(index_path, ": shard ", kv.first, " (", kv.second.size(), " tensors, e.g. ", kv.second.front(),
                     ") is missing from ", dir);

        // 2. Every shard, every tensor it holds; a name may live in one shard only.
        for (const auto& kv : listed) {
            const std::string path = join(dir, kv.first);
            shards_.push_back(open_weights_file(path));
            paths_.push_back(path);
            const TensorSource& shard = *shards_.back();
            for (const auto& name : kv.second)
                if (!shard.find(name))
                    fail(index_path, ": tensor ", name, " is listed in shard ", kv.first, " but absent from ", path);
            for (const auto& name : shard.names()) {
                auto [it, fresh] = where_.emplace(name, shards_.size() - 1);
                if (!fresh) fail("tensor ", name, " appears in two shards: ", paths_[it->second], " and ", path);
            }
        }
    }

    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : where_) out.push_back(kv.first);
        return out;
    }
    const TensorInfo* find(const std::string& name) const override {
        auto it = where_.find(name);
        return it == where_.end() ? nullptr : shards_[it->second]->find(name);
    }
    std::string origin(const std::string& name) const override {
        auto it = where_.find(name);
        return it == where_.end() ? index_path_ : paths_[it->second];
    }
    const std::vector<std::string>& shard_paths() const { return paths_; }

private:
    std::string index_path_;
    std::vector<std::unique_ptr<TensorSource>> shards_;
    std::vector<std::string> paths_;
    std::map<std::string, std::size_t> where_;
};

// Which layout a checkpoint folder has, and the file to open for it.
struct CheckpointLocation {
    CheckpointLayout layout;
    std::string path;
};

inline CheckpointLocation locate_checkpoint(const std::string& dir) {
    using checkpoint_detail::join;
    if (!checkpoint_detail::is_dir(dir)) fail(dir, ": not a folder");
    for (CheckpointLayout l : {CheckpointLayout::Safetensors, CheckpointLayout::ShardedSafetensors,
                               CheckpointLayout::PyTorch, CheckpointLayout::ShardedPyTorch}) {
        const std::string p = join(dir, layout_name(l));
        if (checkpoint_detail::is_file(p)) return {l, p};
    }
    fail(dir, ": no weights found (looked for model.safetensors, model.safetensors.index.json, "
              "pytorch_model.bin and pytorch_model.bin.index.json)");
}

// The weights of a checkpoint folder, or of a single weights or index file.
inline std::unique_ptr<TensorSource> open_checkpoint(const std::string& path) {
    auto ends_with = [&](const char* s) {
        const std::string e(s);
        return path.size() >= e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0;
    };
    if (checkpoint_detail::is_file(path))
        return ends_with(".index.json") ? std::unique_ptr<TensorSource>(std::make_unique<ShardedCheckpoint>(path))
                                        : open_weights_file(path);
    const CheckpointLocation loc = locate_checkpoint(path);
    if (loc.layout == CheckpointLayout::ShardedSafetensors || loc.layout == CheckpointLayout::ShardedPyTorch)
        return std::make_unique<ShardedCheckpoint>(loc.path);
    return open_weights_file(loc.path);
}

// ---- writing ----------------------------------------------------------------------

enum class CheckpointFormat { PyTorch, Safetensors };

inline bool is_float_dtype(DType t) {
    return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// A tensor's bytes in `to`: floating-point tensors are converted (to fp16 and
// bf16 with round-to-nearest-even from their float value, as torch's .half()
// and .bfloat16() do, float64 going through float32 first as in torch), all
// other tensors keep their bytes and dtype.
inline std::vector<std::uint8_t> tensor_bytes_as(const TensorInfo& t, DType to, DType& stored) {
    stored = is_float_dtype(t.dtype) ? to : t.dtype;
    if (stored == t.dtype) return std::vector<std::uint8_t>(t.data, t.data + t.nbytes);
    const std::size_t n = shape_numel(t.shape);
    std::vector<std::uint8_t> out(n * dtype_size(stored));
    if (stored == DType::F64) {
        convert_elements<double>(t.dtype, t.data, n, reinterpret_cast<double*>(out.data()));
        return out;
    }
    std::vector<float> f(n);
    convert_elements<float>(t.dtype, t.data, n, f.data());
    for (std::size_t i = 0; i < n; ++i) {
        if (stored == DType::F32) {
            std::memcpy(out.data() + 4 * i, &f[i], 4);
        } else {
            const std::uint16_t h = stored == DType::F16 ? float_to_fp16(f[i]) : float_to_bf16(f[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        }
    }
    return out;
}

// Groups tensor names as the release shards them: one shard per decoder layer
// (model.layers.N.*), preceded by one shard with everything else.
inline std::vector<std::vector<std::string>> shards_by_decoder_layer(const std::vector<std::string>& names) {
    std::vector<std::string> rest;
    std::map<long, std::vector<std::string>> layers;
    const std::string prefix = "model.layers.";
    for (const auto& n : names) {
        if (n.compare(0, prefix.size(), prefix) == 0) {
            std::size_t used = 0;
            const std::string tail = n.substr(prefix.size());
            long k = -1;
            try {
                k = std::stol(tail, &used);
            } catch (const std::exception&) {
            }
            if (k >= 0 && used > 0 && used < tail.size() && tail[used] == '.') {
                layers[k].push_back(n);
                continue;
            }
        }
        rest.push_back(n);
    }
    std::vector<std::vector<std::string>> out;
    if (!rest.empty()) out.push_back(rest);
    for (auto& kv : layers) out.push_back(kv.second);
    return out;
}

// Writes the tensors of `src` into folder `dir` (which must exist) in
// `format`, floating-point tensors stored as `dtype`. One group in `shards`
// writes model.safetensors or pytorch_model.bin; several write numbered shards
// (model-0000k-of-0000n.safetensors, pytorch_model-0000k-of-0000n.bin) and
// their index. Every tensor of `src` must be in exactly one group.
inline void save_checkpoint(const TensorSource& src, const std::string& dir, CheckpointFormat format, DType dtype,
                            const std::vector<std::vector<std::string>>& shards) {
    using checkpoint_detail::join;
    if (!is_float_dtype(dtype)) fail("save_checkpoint: dtype ", dtype_name(dtype), " is not a floating-point type");
    if (!checkpoint_detail::is_dir(dir)) fail(dir, ": not a folder");
    if (shards.empty()) fail("save_checkpoint: no shards given");
    std::set<std::string> grouped;
    for (const auto& g : shards)
        for (const auto& n : g) {
            if (!src.has(n)) fail("save_checkpoint: tensor ", n, " is not in the source");
            if (!grouped.insert(n).second) fail("save_checkpoint: tensor ", n, " is in two shards");
        }
    for (const auto& n : src.names())
        if (!grouped.count(n)) fail("save_checkpoint: tensor ", n, " is in no shard");

    const bool st = format == CheckpointFormat::Safetensors;
    const std::size_t count = shards.size();
    auto shard_name = [&](std::size_t k) {
        if (count == 1) return std::string(st ? "model.safetensors" : "pytorch_model.bin");
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s-%05zu-of-%05zu.%s", st ? "model" : "pytorch_model", k + 1, count,
                      st ? "safetensors" : "bin");
        return std::string(buf);
    };
    nlohmann::json weight_map = nlohmann::json::object();
    std::uint64_t total = 0;
    for (std::size_t k = 0; k < count; ++k) {
        const std::string file = shard_name(k);
        const std::string path = join(dir, file);
        if (st) {
            SafetensorsWriter w;
            w.set_metadata("format", "pt");
            for (const auto& n : shards[k]) {
                DType stored;
                auto bytes = tensor_bytes_as(*src.find(n), dtype, stored);
                total += bytes.size();
                w.add_bytes(n, stored, src.find(n)->shape, std::move(bytes));
                weight_map[n] = file;
            }
            w.write(path);
        } else {
            PyTorchWriter w(path);
            for (const auto& n : shards[k]) {
                DType stored;
                const auto bytes = tensor_bytes_as(*src.find(n), dtype, stored);
                total += bytes.size();
                w.add_bytes(n, stored, src.find(n)->shape, bytes.data(), bytes.size());
                weight_map[n] = file;
            }
            w.finish();
        }
    }
    if (count > 1) {
        const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
        const std::string text = index.dump(2) + "\n";
        write_atomically(join(dir, st ? "model.safetensors.index.json" : "pytorch_model.bin.index.json"),
                         [&](std::ofstream& out) { out.write(text.data(), static_cast<std::streamsize>(text.size())); });
    }
}

}  // namespace mplug_owl2
