// The tensor types of the library. Activations are matrices with one row per
// position (token, patch or query) and one column per feature, row-major, so
// a Linear layer is one GEMM over all rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "error.hpp"

namespace mplug_owl2 {

template <class T>
using Matrix = xt::xtensor<T, 2>;  // [rows, cols]
template <class T>
using Vector = xt::xtensor<T, 1>;

using Shape = std::vector<std::size_t>;

inline std::string shape_str(const Shape& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

inline std::size_t shape_numel(const Shape& s) {
    std::size_t n = 1;
    for (auto d : s) n *= d;
    return n;
}

// Throws unless x is [rows, cols]; `what` names the tensor in the message.
template <class T>
void check_shape(const Matrix<T>& x, std::size_t rows, std::size_t cols, const std::string& what) {
    if (x.shape(0) != rows || x.shape(1) != cols)
        fail(what, ": expected shape ", shape_str({rows, cols}), ", found ",
             shape_str({x.shape(0), x.shape(1)}));
}

template <class T>
void check_cols(const Matrix<T>& x, std::size_t cols, const std::string& what) {
    if (x.shape(1) != cols)
        fail(what, ": expected ", cols, " columns, found shape ", shape_str({x.shape(0), x.shape(1)}));
}

}  // namespace mplug_owl2
