// The key/value cache of the decoder (the official `past_key_values`): per
// layer, the keys (after RoPE) and values of every position processed so far,
// so that a decoding step computes only its new position.
//
// Laid out for the decoding step, which reads every cached key and value of
// a head once per token: each key/value head owns one block of `capacity`
// rows, so its keys [length, head_dim] are contiguous (as are its values),
// and appending a position writes into room reserved beforehand
// (`reserve`, or doubling when full) instead of moving the cache.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "../core/tensor.hpp"

namespace mplug_owl2 {

namespace kv_cache_detail {
// Leaves new elements uninitialised: the room a cache reserves is written
// before it is read, and zero-filling it would cost a pass over memory (20 MB
// per layer for 600 positions of the 7B model).
template <class U>
struct UninitialisedAllocator : std::allocator<U> {
    template <class V>
    struct rebind {
        using other = UninitialisedAllocator<V>;
    };
    UninitialisedAllocator() = default;
    template <class V>
    UninitialisedAllocator(const UninitialisedAllocator<V>&) noexcept {}
    template <class V, class... Args>
    void construct(V* p, Args&&... args) {
        if constexpr (sizeof...(Args) == 0)
            ::new (static_cast<void*>(p)) V;
        else
            ::new (static_cast<void*>(p)) V(std::forward<Args>(args)...);
    }
};
}  // namespace kv_cache_detail

template <class T>
struct KVCache {
    using Storage = std::vector<T, kv_cache_detail::UninitialisedAllocator<T>>;

    struct Layer {
        std::size_t heads = 0, head_dim = 0;  // key/value heads, their dimension
        std::size_t capacity = 0;             // rows of room per head
        std::size_t used = 0;                 // positions held
        Storage keys;    // [heads, capacity, head_dim], rotated; rows past `used` unset
        Storage values;  // [heads, capacity, head_dim]

        std::size_t length() const { return used; }
        std::size_t width() const { return heads * head_dim; }

        // Head g's keys and values, [length, head_dim] row-major.
        const T* keys_of(std::size_t g) const { return keys.data() + g * capacity * head_dim; }
        const T* values_of(std::size_t g) const { return values.data() + g * capacity * head_dim; }

        // Room for `positions` positions without moving the cache again.
        void reserve(std::size_t positions) {
            if (positions <= capacity) return;
            Storage k(heads * positions * head_dim), v(heads * positions * head_dim);
            for (std::size_t g = 0; g < heads; ++g) {
                std::copy_n(keys_of(g), used * head_dim, k.data() + g * positions * head_dim);
                std::copy_n(values_of(g), used * head_dim, v.data() + g * positions * head_dim);
            }
            keys.swap(k);
            values.swap(v);
            capacity = positions;
        }

        // Appends the rows of k and v [n, heads·head_dim] (head g in columns
        // g·head_dim ..), each head's part to its own block.
        void append(const Matrix<T>& k, const Matrix<T>& v) {
            check_cols(k, width(), "key/value cache: keys");
            check_cols(v, width(), "key/value cache: values");
            const std::size_t n = k.shape(0);
            if (v.shape(0) != n) fail("key/value cache: ", n, " key rows but ", v.shape(0), " value rows");
            if (used + n > capacity) reserve(std::max(used + n, 2 * capacity));
            for (std::size_t i = 0; i < n; ++i)
                for (std::size_t g = 0; g < heads; ++g) {
                    const std::size_t at = (g * capacity + used + i) * head_dim;
                    std::copy_n(&k(i, g * head_dim), head_dim, keys.data() + at);
                    std::copy_n(&v(i, g * head_dim), head_dim, values.data() + at);
                }
            used += n;
        }
    };

    std::vector<Layer> layers;
    std::size_t length = 0;  // positions held (the official past_key_values_length)

    KVCache() = default;
    KVCache(std::size_t num_layers, std::size_t kv_heads, std::size_t head_dim) : layers(num_layers) {
        for (auto& l : layers) {
            l.heads = kv_heads;
            l.head_dim = head_dim;
        }
    }

    // Room for `positions` positions in every layer (e.g. prompt + tokens to generate).
    void reserve(std::size_t positions) {
        for (auto& l : layers) l.reserve(positions);
    }

    void clear() {
        length = 0;
        for (auto& l : layers) l.used = 0;
    }
};

}  // namespace mplug_owl2
