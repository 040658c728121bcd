// `model.embed_tokens`: nn.Embedding, one row of the [vocab, D] table per
// token id. Shared by every text position. A table stored in fp16/bf16 may
// stay so (the loader in half mode); its rows are then converted on lookup,
// giving exactly the values a converted table holds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/half_matrix.hpp"
#include "../core/hooks.hpp"
#include "../io/tensor_source.hpp"

namespace mplug_owl2 {

template <class T>
struct Embedding {
    std::string name;         // model.embed_tokens
    Matrix<T> weight;         // [vocab, D]
    HalfMatrix weight_half;   // `weight` kept in its stored fp16/bf16 instead (then `weight` is empty)

    void load(WeightLoader& w, const std::string& path, std::size_t vocab, std::size_t dim) {
        name = path;
        if (w.keeps_half(path + ".weight")) {
            weight_half = HalfMatrix::load(w, path + ".weight", vocab, dim);
            weight = Matrix<T>();
        } else {
            weight = w.matrix<T>(path + ".weight", vocab, dim);
            weight_half = HalfMatrix();
        }
    }

    std::size_t vocab_size() const { return weight_half.empty() ? weight.shape(0) : weight_half.rows; }
    std::size_t dim() const { return weight_half.empty() ? weight.shape(1) : weight_half.cols; }

    // ids [L] -> [L, D]
    Matrix<T> forward(const std::vector<std::int64_t>& ids, const Hooks<T>& hooks) const {
        const std::size_t D = dim();
        Matrix<T> y = Matrix<T>::from_shape({ids.size(), D});
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (ids[i] < 0 || static_cast<std::size_t>(ids[i]) >= vocab_size())
                fail(name, ": token id ", ids[i], " at position ", i, " is outside the vocabulary [0, ", vocab_size(),
                     ")");
            const auto row = static_cast<std::size_t>(ids[i]);
            if (weight_half.empty())
                std::copy(&weight(row, 0), &weight(row, 0) + D, &y(i, 0));
            else
                weight_half.row<T>(row, 0, D, &y(i, 0));
        }
        hooks.report(name, y);
        return y;
    }
};

}  // namespace mplug_owl2
