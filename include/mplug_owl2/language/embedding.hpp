// `model.embed_tokens`: nn.Embedding, one row of the [vocab, D] table per
// token id. Shared by every text position.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/hooks.hpp"
#include "../io/tensor_source.hpp"

namespace mplug_owl2 {

template <class T>
struct Embedding {
    std::string name;  // model.embed_tokens
    Matrix<T> weight;  // [vocab, D]

    void load(WeightLoader& w, const std::string& path, std::size_t vocab, std::size_t dim) {
        name = path;
        weight = w.matrix<T>(path + ".weight", vocab, dim);
    }

    std::size_t vocab_size() const { return weight.shape(0); }

    // ids [L] -> [L, D]
    Matrix<T> forward(const std::vector<std::int64_t>& ids, const Hooks<T>& hooks) const {
        const std::size_t D = weight.shape(1);
        Matrix<T> y = Matrix<T>::from_shape({ids.size(), D});
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (ids[i] < 0 || static_cast<std::size_t>(ids[i]) >= vocab_size())
                fail(name, ": token id ", ids[i], " at position ", i, " is outside the vocabulary [0, ", vocab_size(),
                     ")");
            std::copy(&weight(ids[i], 0), &weight(ids[i], 0) + D, &y(i, 0));
        }
        hooks.report(name, y);
        return y;
    }
};

}  // namespace mplug_owl2
