// The safetensors format: an 8-byte little-endian header length N, N bytes
// of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"},
// then the data. The reader memory-maps the file and checks everything the
// header claims before handing out a byte; the writer writes to a temporary
// name and renames it into place when complete.
#pragma once

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mapped_file.hpp"
#include "tensor_source.hpp"

namespace mplug_owl2 {

class SafetensorsFile : public TensorSource {
public:
    // Header JSON larger than this is refused (the format's own limit is 100 MB).
    static constexpr std::size_t kMaxHeader = 100u << 20;

    explicit SafetensorsFile(const std::string& path) : file_(path) { parse(); }

    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : tensors_) out.push_back(kv.first);
        return out;
    }
    const TensorInfo* find(const std::string& name) const override {
        auto it = tensors_.find(name);
        return it == tensors_.end() ? nullptr : &it->second;
    }
    std::string origin(const std::string&) const override { return file_.path(); }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::string& path() const { return file_.path(); }

private:
    void parse() {
        const std::string& p = file_.path();
        const std::size_t size = file_.size();
        if (size < 8) fail(p, ": not a safetensors file (", size, " bytes, shorter than the 8-byte header length)");
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | file_.data()[i];
        if (n > kMaxHeader) fail(p, ": safetensors header length ", n, " exceeds the limit of ", kMaxHeader);
        if (n > size - 8) fail(p, ": safetensors header length ", n, " runs past the end of the file (", size, " bytes)");
        const char* h = reinterpret_cast<const char*>(file_.data() + 8);
        nlohmann::json header = nlohmann::json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
        if (header.is_discarded()) fail(p, ": safetensors header is not valid JSON");
        if (!header.is_object()) fail(p, ": safetensors header is not a JSON object");
        const std::uint8_t* base = file_.data() + 8 + n;
        const std::size_t data_size = size - 8 - n;

        std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
        for (auto it = header.begin(); it != header.end(); ++it) {
            const std::string& name = it.key();
            const auto& e = it.value();
            if (name == "__metadata__") {
                if (!e.is_object()) fail(p, ": __metadata__ is not an object");
                for (auto m = e.begin(); m != e.end(); ++m) {
                    if (!m.value().is_string()) fail(p, ": __metadata__ field ", m.key(), " is not a string");
                    metadata_[m.key()] = m.value().get<std::string>();
                }
                continue;
            }
            auto bad = [&](const std::string& why) { fail(p, ": tensor ", name, ": ", why); };
            if (!e.is_object()) bad("entry is not an object");
            if (!e.contains("dtype") || !e["dtype"].is_string()) bad("dtype missing or not a string");
            if (!e.contains("shape") || !e["shape"].is_array()) bad("shape missing or not an array");
            if (!e.contains("data_offsets") || !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
                bad("data_offsets missing or not [begin, end]");
            TensorInfo info;
            const std::string dt = e["dtype"].get<std::string>();
            if (!dtype_from_name(dt, info.dtype)) bad("unsupported dtype " + dt);
            std::size_t numel = 1;
            for (const auto& d : e["shape"]) {
                if (!d.is_number_unsigned()) bad("shape has an entry that is not a non-negative integer");
                const auto v = d.get<std::uint64_t>();
                if (v != 0 && numel > (std::uint64_t(1) << 48) / v) bad("shape is impossibly large");
                numel *= v;
                info.shape.push_back(static_cast<std::size_t>(v));
            }
            const auto& off = e["data_offsets"];
            if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
                bad("data_offsets are not non-negative integers");
            const auto b = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
            if (b > end) bad("data_offsets begin after they end");
            if (end > data_size)
                bad("data range [" + std::to_string(b) + ", " + std::to_string(end) + ") runs past the end of the data (" +
                    std::to_string(data_size) + " bytes)");
            const std::uint64_t expect = numel * dtype_size(info.dtype);
            if (end - b != expect)
                bad("shape " + shape_str(info.shape) + " of " + dt + " needs " + std::to_string(expect) +
                    " bytes, the data range holds " + std::to_string(end - b));
            info.data = base + b;
            info.nbytes = static_cast<std::size_t>(end - b);
            ranges.emplace_back(b, end);
            tensors_.emplace(name, std::move(info));
        }
        std::sort(ranges.begin(), ranges.end());
        for (std::size_t i = 1; i < ranges.size(); ++i)
            if (ranges[i].first < ranges[i - 1].second)
                fail(p, ": tensors' data ranges overlap at byte ", ranges[i].first);
    }

    MappedFile file_;
    std::map<std::string, TensorInfo> tensors_;
    std::map<std::string, std::string> metadata_;
};

// Writes a file to `path` through a temporary name in the same folder, so a
// reader never sees a half-written file.
template <class Fn>
void write_atomically(const std::string& path, Fn&& write_body) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) fail(path, ": cannot open for writing");
        write_body(out);
        out.flush();
        if (!out) {
            out.close();
            std::remove(tmp.c_str());
            fail(path, ": write failed");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        fail(path, ": cannot rename the temporary file into place");
    }
}

// Collects tensors, then writes them as one safetensors file.
class SafetensorsWriter {
public:
    void add_bytes(const std::string& name, DType dtype, const Shape& shape, std::vector<std::uint8_t> bytes) {
        if (bytes.size() != shape_numel(shape) * dtype_size(dtype))
            fail("safetensors writer: tensor ", name, ": ", bytes.size(), " bytes for shape ", shape_str(shape));
        entries_[name] = Entry{dtype, shape, std::move(bytes)};
    }

    // Stores `n` values of C++ type S as `dtype` (same width, bit-for-bit).
    template <class S>
    void add(const std::string& name, DType dtype, const Shape& shape, const S* values) {
        if (sizeof(S) != dtype_size(dtype)) fail("safetensors writer: tensor ", name, ": element size mismatch");
        std::vector<std::uint8_t> bytes(shape_numel(shape) * sizeof(S));
        if (!bytes.empty()) std::copy_n(reinterpret_cast<const std::uint8_t*>(values), bytes.size(), bytes.data());
        add_bytes(name, dtype, shape, std::move(bytes));
    }
    void add(const std::string& name, const Shape& shape, const double* v) { add(name, DType::F64, shape, v); }
    void add(const std::string& name, const Shape& shape, const float* v) { add(name, DType::F32, shape, v); }
    void add(const std::string& name, const Shape& shape, const std::int64_t* v) { add(name, DType::I64, shape, v); }
    void add(const std::string& name, const Shape& shape, const std::uint8_t* v) { add(name, DType::U8, shape, v); }

    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
    bool contains(const std::string& name) const { return entries_.count(name) != 0; }

    void write(const std::string& path) const {
        nlohmann::json header = nlohmann::json::object();
        if (!metadata_.empty()) header["__metadata__"] = metadata_;
        std::uint64_t offset = 0;
        for (const auto& kv : entries_) {
            const Entry& e = kv.second;
            header[kv.first] = {{"dtype", dtype_name(e.dtype)},
                                {"shape", e.shape},
                                {"data_offsets", {offset, offset + e.bytes.size()}}};
            offset += e.bytes.size();
        }
        std::string h = header.dump();
        while ((8 + h.size()) % 8) h.push_back(' ');  // align the data to 8 bytes
        write_atomically(path, [&](std::ofstream& out) {
            std::uint8_t len[8];
            for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(std::uint64_t(h.size()) >> (8 * i));
            out.write(reinterpret_cast<const char*>(len), 8);
            out.write(h.data(), static_cast<std::streamsize>(h.size()));
            for (const auto& kv : entries_)
                out.write(reinterpret_cast<const char*>(kv.second.bytes.data()),
                          static_cast<std::streamsize>(kv.second.bytes.size()));
        });
    }

private:
    struct Entry {
        DType dtype;
        Shape shape;
        std::vector<std::uint8_t> bytes;
    };
    std::map<std::string, Entry> entries_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace mplug_owl2
