// The key/value cache of the decoder (the official `past_key_values`): per
// layer, the keys (after RoPE) and values of every position processed so far,
// so that a decoding step computes only its new position.
#pragma once

#include <cstddef>
#include <vector>

#include "../core/tensor.hpp"

namespace mplug_owl2 {

template <class T>
struct KVCache {
    struct Layer {
        std::size_t width = 0;  // num_key_value_heads · head_dim
        std::vector<T> keys;    // [length, width], row-major, rotated
        std::vector<T> values;  // [length, width]

        std::size_t length() const { return width ? keys.size() / width : 0; }

        // Appends the rows of k and v [n, width].
        void append(const Matrix<T>& k, const Matrix<T>& v) {
            check_cols(k, width, "key/value cache: keys");
            check_cols(v, width, "key/value cache: values");
            keys.insert(keys.end(), k.begin(), k.end());
            values.insert(values.end(), v.begin(), v.end());
        }
    };

    std::vector<Layer> layers;
    std::size_t length = 0;  // positions held (the official past_key_values_length)

    KVCache() = default;
    KVCache(std::size_t num_layers, std::size_t width) : layers(num_layers) {
        for (auto& l : layers) l.width = width;
    }

    void clear() {
        length = 0;
        for (auto& l : layers) {
            l.keys.clear();
            l.values.clear();
        }
    }
};

}  // namespace mplug_owl2
