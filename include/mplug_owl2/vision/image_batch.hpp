// How a batch of images is laid out and reported. The vision encoder and the
// abstractor stack the images' rows (image n's rows follow image n−1's) and
// report every activation with the official module's shape: [images, rows,
// width], the batch dimension dropped for a single image as the reference
// activations store it.
#pragma once

#include <cstddef>
#include <string>

#include "../core/tensor.hpp"

namespace mplug_owl2 {

// Official shape of `rows_per_image` × `cols` per image for `n_images` images.
inline Shape image_batch_shape(std::size_t n_images, std::size_t rows_per_image, std::size_t cols) {
    if (n_images == 1) return {rows_per_image, cols};
    return {n_images, rows_per_image, cols};
}

// Rows per image of `x`, which must hold n_images equal blocks.
template <class T>
std::size_t rows_per_image(const Matrix<T>& x, std::size_t n_images, const std::string& what) {
    if (n_images == 0) fail(what, ": expected at least one image");
    if (x.shape(0) % n_images != 0)
        fail(what, ": ", x.shape(0), " rows do not split into ", n_images, " images");
    return x.shape(0) / n_images;
}

}  // namespace mplug_owl2
