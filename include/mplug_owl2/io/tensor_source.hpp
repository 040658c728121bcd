// Where weights come from. A TensorSource is a checkpoint file (safetensors,
// PyTorch) seen as named, typed byte ranges; a WeightLoader reads tensors
// from one by their official names, checks their shapes, converts them to
// the compute type and remembers which tensors the model used.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../core/half.hpp"
#include "../core/tensor.hpp"

namespace mplug_owl2 {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

inline std::size_t dtype_size(DType t) {
    switch (t) {
        case DType::F64: case DType::I64: return 8;
        case DType::F32: case DType::I32: return 4;
        case DType::F16: case DType::BF16: case DType::I16: return 2;
        default: return 1;
    }
}

// The safetensors spelling of each dtype.
inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F64: return "F64";
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::I64: return "I64";
        case DType::I32: return "I32";
        case DType::I16: return "I16";
        case DType::I8: return "I8";
        case DType::U8: return "U8";
        case DType::BOOL: return "BOOL";
    }
    return "?";
}

inline bool dtype_from_name(const std::string& s, DType& out) {
    static const std::map<std::string, DType> names = {
        {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
        {"I64", DType::I64}, {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},
        {"U8", DType::U8},   {"BOOL", DType::BOOL}};
    auto it = names.find(s);
    if (it == names.end()) return false;
    out = it->second;
    return true;
}

// One stored tensor: its type, shape and contiguous little-endian bytes.
struct TensorInfo {
    DType dtype = DType::F32;
    Shape shape;
    const std::uint8_t* data = nullptr;
    std::size_t nbytes = 0;
};

class TensorSource {
public:
    virtual ~TensorSource() = default;
    virtual std::vector<std::string> names() const = 0;
    virtual const TensorInfo* find(const std::string& name) const = 0;  // nullptr if absent
    virtual std::string origin(const std::string& name) const = 0;      // file holding it
    // Whether `name` is there, for sources where find() is costly (tensors made on demand).
    virtual bool has(const std::string& name) const { return find(name) != nullptr; }
};

// Converts n stored elements of type `from` at `src` into T (float or double,
// or an integer type for index tensors).
template <class T>
void convert_elements(DType from, const std::uint8_t* src, std::size_t n, T* dst) {
    auto load = [&](auto tag) {
        using S = decltype(tag);
        for (std::size_t i = 0; i < n; ++i) {
            S v;
            std::memcpy(&v, src + i * sizeof(S), sizeof(S));
            dst[i] = static_cast<T>(v);
        }
    };
    switch (from) {
        case DType::F64: load(double{}); break;
        case DType::F32: load(float{}); break;
        case DType::I64: load(std::int64_t{}); break;
        case DType::I32: load(std::int32_t{}); break;
        case DType::I16: load(std::int16_t{}); break;
        case DType::I8: load(std::int8_t{}); break;
        case DType::U8: case DType::BOOL: load(std::uint8_t{}); break;
        case DType::F16:
            for (std::size_t i = 0; i < n; ++i) {
                std::uint16_t h;
                std::memcpy(&h, src + 2 * i, 2);
                dst[i] = static_cast<T>(fp16_to_float(h));
            }
            break;
        case DType::BF16:
            for (std::size_t i = 0; i < n; ++i) {
                std::uint16_t h;
                std::memcpy(&h, src + 2 * i, 2);
                dst[i] = static_cast<T>(bf16_to_float(h));
            }
            break;
    }
}

// Reads one tensor of any stored dtype as T, whatever its rank.
template <class T>
xt::xarray<T> read_tensor(const TensorSource& src, const std::string& name) {
    const TensorInfo* info = src.find(name);
    if (!info) fail("tensor ", name, ": not found");
    xt::xarray<T> out = xt::xarray<T>::from_shape(info->shape);
    convert_elements<T>(info->dtype, info->data, shape_numel(info->shape), out.data());
    return out;
}

// Reads the model's weights by official name with strict shape checks, and
// keeps count of what was read so that unused tensors can be reported.
class WeightLoader {
public:
    explicit WeightLoader(const TensorSource& src) : src_(src) {}

    bool has(const std::string& name) const { return src_.find(name) != nullptr; }

    // The tensor `name`, which must have exactly `expected` as its shape
    // (a leading 1 in the stored shape is accepted where `expected` omits it,
    // as for [1, Q, D] parameters).
    template <class T>
    xt::xarray<T> tensor(const std::string& name, const Shape& expected) {
        const TensorInfo& info = lookup(name, expected);
        Shape stored = info.shape;
        while (stored.size() > expected.size() && stored.front() == 1) stored.erase(stored.begin());
        if (stored != expected)
            fail("tensor ", name, " in ", src_.origin(name), ": expected shape ", shape_str(expected),
                 ", found ", shape_str(info.shape), transposed_hint(stored, expected));
        if (info.dtype == DType::I64 || info.dtype == DType::I32 || info.dtype == DType::I16 ||
            info.dtype == DType::I8 || info.dtype == DType::U8 || info.dtype == DType::BOOL)
            fail("tensor ", name, " in ", src_.origin(name), ": expected a floating-point dtype, found ",
                 dtype_name(info.dtype));
        xt::xarray<T> out = xt::xarray<T>::from_shape(expected);
        convert_elements<T>(info.dtype, info.data, shape_numel(expected), out.data());
        used_.insert(name);
        return out;
    }

    template <class T>
    Matrix<T> matrix(const std::string& name, std::size_t rows, std::size_t cols) {
        auto a = tensor<T>(name, {rows, cols});
        Matrix<T> m = Matrix<T>::from_shape({rows, cols});
        std::copy(a.begin(), a.end(), m.begin());
        return m;
    }

    template <class T>
    Vector<T> vector(const std::string& name, std::size_t n) {
        auto a = tensor<T>(name, {n});
        Vector<T> v = Vector<T>::from_shape({n});
        std::copy(a.begin(), a.end(), v.begin());
        return v;
    }

    // From now on, matrices stored as F16/BF16 stay in half precision (see
    // core/half_matrix.hpp) instead of being converted to the compute type;
    // `owner` keeps the memory of the source alive for as long as they live.
    void keep_half_precision(std::shared_ptr<const void> owner) { half_owner_ = std::move(owner); }

    // True when the matrix `name` is to be kept in half precision.
    bool keeps_half(const std::string& name) const {
        if (!half_owner_) return false;
        const TensorInfo* info = src_.find(name);
        return info && (info->dtype == DType::F16 || info->dtype == DType::BF16);
    }

    // The stored half-precision bytes of `name`, shape-checked, not copied.
    // The caller passes the matrix on in a HalfMatrix-like holder together
    // with half_owner() to keep the bytes alive.
    const TensorInfo& half_tensor(const std::string& name, std::size_t rows, std::size_t cols) {
        const TensorInfo& info = lookup(name, {rows, cols});
        if (info.shape != Shape{rows, cols})
            fail("tensor ", name, " in ", src_.origin(name), ": expected shape ", shape_str({rows, cols}), ", found ",
                 shape_str(info.shape), transposed_hint(info.shape, {rows, cols}));
        if (info.dtype != DType::F16 && info.dtype != DType::BF16)
            fail("tensor ", name, " in ", src_.origin(name), ": expected F16 or BF16, found ", dtype_name(info.dtype));
        used_.insert(name);
        return info;
    }
    const std::shared_ptr<const void>& half_owner() const { return half_owner_; }

    // Tensors of the source that no module read, sorted.
    std::vector<std::string> unused() const {
        std::vector<std::string> out;
        for (const auto& n : src_.names())
            if (!used_.count(n)) out.push_back(n);
        std::sort(out.begin(), out.end());
        return out;
    }

    const TensorSource& source() const { return src_; }

private:
    // A matrix stored transposed ([in, out] for a Linear weight) is a common conversion slip: say so.
    static std::string transposed_hint(const Shape& found, const Shape& expected) {
        const bool transposed = found.size() == 2 && expected.size() == 2 && found[0] == expected[1] &&
                                found[1] == expected[0];
        return transposed ? " (the transpose of the expected shape)" : "";
    }

    const TensorInfo& lookup(const std::string& name, const Shape& expected) const {
        const TensorInfo* info = src_.find(name);
        if (!info)
            fail("tensor ", name, ": missing from the checkpoint ", src_.origin(name), " (expected shape ",
                 shape_str(expected), ")");
        return *info;
    }

    const TensorSource& src_;
    std::set<std::string> used_;
    std::shared_ptr<const void> half_owner_;
};

}  // namespace mplug_owl2
