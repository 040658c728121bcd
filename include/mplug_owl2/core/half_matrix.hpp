// Weights kept in their stored half precision (fp16 or bf16), so that the 7B
// checkpoint (~16.5 GB in half) fits in memory next to its activations. The
// matrix may point straight into a memory-mapped checkpoint file; it then
// keeps that file alive. Products convert the weights to the compute type
// where they are used (see kernels/half_gemm.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../io/tensor_source.hpp"

namespace mplug_owl2 {

struct HalfMatrix {
    DType dtype = DType::F16;  // F16 or BF16
    std::size_t rows = 0, cols = 0;
    const std::uint8_t* data = nullptr;      // rows × cols little-endian halves, any alignment
    std::shared_ptr<const void> keep_alive;  // the mapped file or the owned bytes behind `data`

    bool empty() const { return data == nullptr; }
    std::size_t bytes() const { return rows * cols * 2; }

    // Row r, columns [c0, c0 + n), converted to T.
    template <class T>
    void row(std::size_t r, std::size_t c0, std::size_t n, T* out) const {
        convert_elements<T>(dtype, data + 2 * (r * cols + c0), n, out);
    }

    // The stored matrix `name` [rows, cols] of a loader in half mode, not copied.
    static HalfMatrix load(WeightLoader& w, const std::string& name, std::size_t rows, std::size_t cols) {
        const TensorInfo& info = w.half_tensor(name, rows, cols);
        HalfMatrix m;
        m.dtype = info.dtype;
        m.rows = rows;
        m.cols = cols;
        m.data = info.data;
        m.keep_alive = w.half_owner();
        return m;
    }

    // A copy of float values rounded to `dtype` (round to nearest even).
    static HalfMatrix from_float(const float* values, std::size_t rows, std::size_t cols, DType dtype) {
        auto owned = std::make_shared<std::vector<std::uint16_t>>(rows * cols);
        for (std::size_t i = 0; i < rows * cols; ++i)
            (*owned)[i] = dtype == DType::BF16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
        HalfMatrix m;
        m.dtype = dtype;
        m.rows = rows;
        m.cols = cols;
        m.data = reinterpret_cast<const std::uint8_t*>(owned->data());
        m.keep_alive = owned;
        return m;
    }
};

}  // namespace mplug_owl2
