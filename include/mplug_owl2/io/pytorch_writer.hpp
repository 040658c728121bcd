// Writes checkpoints that torch.load reads: the ZIP layout of torch.save
// (<archive>/data.pkl, <archive>/data/<key>, <archive>/byteorder,
// <archive>/version) with a protocol-2 pickle of an OrderedDict whose values
// are torch._utils._rebuild_tensor_v2 calls over one storage per tensor.
// Tensors are streamed to disk as they are added; the pickle and the
// directory are written by finish().
#pragma once

#include <set>
#include <string>
#include <vector>

#include "tensor_source.hpp"
#include "zip_archive.hpp"

namespace mplug_owl2 {

class PyTorchWriter {
public:
    // `force_zip64` writes ZIP64 records even where 32-bit ones would do.
    explicit PyTorchWriter(const std::string& path, bool force_zip64 = false)
        : zip_(path, force_zip64), prefix_(archive_name(path)) {}

    // One tensor: `n` bytes of `dtype` elements, contiguous, little-endian.
    void add_bytes(const std::string& name, DType dtype, const Shape& shape, const std::uint8_t* bytes, std::size_t n) {
        if (n != shape_numel(shape) * dtype_size(dtype))
            fail("PyTorch writer: tensor ", name, ": ", n, " bytes for shape ", shape_str(shape), " of ", dtype_name(dtype));
        if (!names_.insert(name).second) fail("PyTorch writer: tensor ", name, " added twice");
        const std::string key = std::to_string(entries_.size());
        zip_.add(prefix_ + "/data/" + key, bytes, n);
        entries_.push_back(Entry{name, dtype, shape, key});
    }

    void finish() {
        const std::string pkl = pickle();
        zip_.add(prefix_ + "/data.pkl", reinterpret_cast<const std::uint8_t*>(pkl.data()), pkl.size());
        zip_.add(prefix_ + "/byteorder", std::string("little"));
        zip_.add(prefix_ + "/version", std::string("3\n"));
        zip_.finish();
    }

    // torch.save names the archive's folder after the file, without its extension.
    static std::string archive_name(const std::string& path) {
        std::string base = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
        const auto dot = base.find_last_of('.');
        if (dot != std::string::npos && dot > 0) base.resize(dot);
        return base.empty() ? "archive" : base;
    }

private:
    struct Entry {
        std::string name;
        DType dtype;
        Shape shape;
        std::string key;
    };

    static const char* storage_class(DType t) {
        switch (t) {
            case DType::F64: return "DoubleStorage";
            case DType::F32: return "FloatStorage";
            case DType::F16: return "HalfStorage";
            case DType::BF16: return "BFloat16Storage";
            case DType::I64: return "LongStorage";
            case DType::I32: return "IntStorage";
            case DType::I16: return "ShortStorage";
            case DType::I8: return "CharStorage";
            case DType::U8: return "ByteStorage";
            case DType::BOOL: return "BoolStorage";
        }
        return "?";
    }

    // ---- protocol-2 pickle opcodes ------------------------------------------------
    static void op_int(std::string& o, std::uint64_t v) {
        auto le = [&](std::uint64_t x, int bytes) {
            for (int i = 0; i < bytes; ++i) o.push_back(static_cast<char>(x >> (8 * i)));
        };
        if (v < 256) {
            o.push_back('K');  // BININT1
            le(v, 1);
        } else if (v < 65536) {
            o.push_back('M');  // BININT2
            le(v, 2);
        } else if (v < 0x80000000u) {
            o.push_back('J');  // BININT
            le(v, 4);
        } else {
            o.push_back('\x8a');  // LONG1 of 8 bytes (element counts stay far below 2^63)
            o.push_back(8);
            le(v, 8);
        }
    }
    static void op_str(std::string& o, const std::string& s) {
        o.push_back('X');  // BINUNICODE
        for (int i = 0; i < 4; ++i) o.push_back(static_cast<char>(static_cast<std::uint64_t>(s.size()) >> (8 * i)));
        o += s;
    }
    static void op_global(std::string& o, const char* module, const char* name) {
        o += 'c';
        o += module;
        o += '\n';
        o += name;
        o += '\n';
    }
    static void op_tuple(std::string& o, const std::vector<std::uint64_t>& v) {
        o.push_back('(');  // MARK
        for (auto x : v) op_int(o, x);
        o.push_back('t');  // TUPLE
    }
    static void op_ordered_dict(std::string& o) {
        op_global(o, "collections", "OrderedDict");
        o.push_back(')');  // EMPTY_TUPLE
        o.push_back('R');  // REDUCE
    }

    std::string pickle() const {
        std::string o = "\x80\x02";  // PROTO 2
        op_ordered_dict(o);
        o.push_back('(');  // MARK
        for (const Entry& e : entries_) {
            op_str(o, e.name);
            op_global(o, "torch._utils", "_rebuild_tensor_v2");
            o.push_back('(');  // MARK: the arguments
            o.push_back('(');  // MARK: the persistent id
            op_str(o, "storage");
            op_global(o, "torch", storage_class(e.dtype));
            op_str(o, e.key);
            op_str(o, "cpu");
            op_int(o, shape_numel(e.shape));
            o.push_back('t');  // TUPLE
            o.push_back('Q');  // BINPERSID
            op_int(o, 0);      // storage offset
            std::vector<std::uint64_t> size(e.shape.begin(), e.shape.end()), stride(e.shape.size());
            std::uint64_t s = 1;
            for (std::size_t d = e.shape.size(); d-- > 0;) {
                stride[d] = s;
                s *= e.shape[d];
            }
            op_tuple(o, size);
            op_tuple(o, stride);
            o.push_back('\x89');  // NEWFALSE: requires_grad
            op_ordered_dict(o);   // backward hooks
            o.push_back('t');     // TUPLE
            o.push_back('R');     // REDUCE
        }
        o.push_back('u');  // SETITEMS
        o.push_back('.');  // STOP
        return o;
    }

    ZipWriter zip_;
    std::string prefix_;
    std::vector<Entry> entries_;
    std::set<std::string> names_;
};

}  // namespace mplug_owl2
