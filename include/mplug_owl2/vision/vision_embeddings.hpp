// `model.vision_model.embeddings`: MplugOwlVisionEmbeddings of
// visual_encoder.py. Cuts each image into p×p patches, projects them
// (`patch_embed`, a bias-free Conv2d whose kernel equals its stride, i.e. one
// matrix product over the flattened patches), prepends the CLS token, adds
// the position embeddings and applies `pre_layernorm`.
//
// Without a CLS token the checkpoint holds a 16×16 table of position
// embeddings whatever the image size, resized to the patch grid by
// get_abs_pos (bicubic, float32).
#pragma once

#include <algorithm>
#include <string>
#include <type_traits>

#include <xtensor/xtensor.hpp>

#include "../core/layer_norm.hpp"
#include "../core/linear.hpp"
#include "../kernels/sgemm.hpp"
#include "../io/config.hpp"
#include "get_abs_pos.hpp"
#include "image_batch.hpp"

namespace mplug_owl2 {

template <class T>
struct VisionEmbeddings {
    std::string name;                // model.vision_model.embeddings
    std::size_t hidden_size = 0;     // D
    std::size_t patch_size = 0;      // p
    Vector<T> cls_token;             // [D]; empty without use_cls_token
    Linear<T> patch_embed;           // weight [D, 3·p·p] (the conv's [D, 3, p, p] flattened), no bias
    Matrix<T> position_embedding;    // [1 + g², D] with CLS, else [256, D]
    LayerNorm<T> pre_layernorm;      // eps = layer_norm_eps

    static constexpr std::size_t kNoClsTableRows = 256;  // the official fixed 16×16 table

    bool use_cls_token() const { return cls_token.size() != 0; }

    void load(WeightLoader& w, const VisionConfig& c, const std::string& path) {
        name = path;
        hidden_size = static_cast<std::size_t>(c.hidden_size);
        patch_size = static_cast<std::size_t>(c.patch_size);
        const std::size_t D = hidden_size, p = patch_size;
        cls_token = c.use_cls_token ? w.vector<T>(path + ".cls_token", D) : Vector<T>();
        patch_embed.name = path + ".patch_embed";
        const auto conv = w.tensor<T>(path + ".patch_embed.weight", {D, 3, p, p});
        patch_embed.weight = Matrix<T>::from_shape({D, 3 * p * p});
        std::copy(conv.begin(), conv.end(), patch_embed.weight.begin());
        const std::size_t rows =
            c.use_cls_token ? static_cast<std::size_t>(c.num_patches()) + 1 : kNoClsTableRows;
        position_embedding = w.matrix<T>(path + ".position_embedding", rows, D);
        pre_layernorm.load(w, path + ".pre_layernorm", D, c.layer_norm_eps);
    }

    // Patch grid of an image side: the conv drops the pixels left over.
    std::size_t grid(std::size_t pixels) const { return pixels / patch_size; }

    // pixels [N, 3, H, W] -> [N·L, D], L = (1 +) (H/p)·(W/p)
    Matrix<T> forward(const xt::xtensor<T, 4>& pixels, const Hooks<T>& hooks) const {
        const std::size_t N = pixels.shape(0), H = pixels.shape(2), W = pixels.shape(3);
        const std::size_t D = hidden_size, p = patch_size;
        if (N == 0) fail(name, ": expected at least one image");
        if (pixels.shape(1) != 3) fail(name, ": expected 3 colour channels, found ", pixels.shape(1));
        if (H < p || W < p) fail(name, ": image ", H, "x", W, " is smaller than one ", p, "x", p, " patch");
        const std::size_t gh = grid(H), gw = grid(W), G = gh * gw;
        const std::size_t cls = use_cls_token() ? 1 : 0, L = cls + G;

        // 1. im2col: row (n, gy, gx) holds the patch in (channel, ky, kx) order   [N·G, 3·p·p]
        //    (each patch row is p contiguous pixels of the row-major [N, 3, H, W])
        Matrix<T> patches = Matrix<T>::from_shape({N * G, 3 * p * p});
        const T* px = pixels.data();
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t gy = 0; gy < gh; ++gy)
                for (std::size_t gx = 0; gx < gw; ++gx) {
                    T* row = &patches(n * G + gy * gw + gx, 0);
                    for (std::size_t ch = 0; ch < 3; ++ch)
                        for (std::size_t ky = 0; ky < p; ++ky, row += p)
                            std::copy_n(px + ((n * 3 + ch) * H + gy * p + ky) * W + gx * p, p, row);
                }

        // 2. patch_embed = patches · Wᵀ   [N·G, D]
        Matrix<T> embeds = patch_embed.project(patches);
        report_patch_embed(embeds, N, gh, gw, hooks);

        // 3. [CLS ; patches] per image, plus the position embeddings   [N·L, D]
        const Matrix<T> pos = use_cls_token() ? Matrix<T>() : no_cls_positions(gh, gw);
        if (use_cls_token() && L > position_embedding.shape(0))
            fail(name, ": the image gives ", L, " positions but position_embedding has ",
                 position_embedding.shape(0), " rows");
        Matrix<T> x = Matrix<T>::from_shape({N * L, D});
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t r = 0; r < L; ++r) {
                const T* src = (cls && r == 0) ? cls_token.data() : &embeds(n * G + r - cls, 0);
                const T* pe = cls ? &position_embedding(r, 0) : &pos(r, 0);
                T* dst = &x(n * L + r, 0);
                for (std::size_t d = 0; d < D; ++d) dst[d] = src[d] + pe[d];
            }

        // 4. pre_layernorm
        const Shape shape = image_batch_shape(N, L, D);
        Matrix<T> y = pre_layernorm.forward(x, hooks, shape);
        hooks.report(name, y, shape);
        return y;
    }

private:
    // The 16×16 table resized to the gh×gw grid (which must be square, or the
    // official broadcast fails).
    Matrix<T> no_cls_positions(std::size_t gh, std::size_t gw) const {
        if (gh != gw)
            fail(name, ": without a CLS token the patch grid must be square, found ", gh, "x", gw);
        return get_abs_pos(position_embedding, gh * gw);
    }

    // Reports the conv's output in its official layout [N, D, gh, gw]: a
    // transposed copy, made only when a hook listens, and copied back so that
    // a hook's change to it takes effect.
    void report_patch_embed(Matrix<T>& embeds, std::size_t N, std::size_t gh, std::size_t gw,
                            const Hooks<T>& hooks) const {
        if (!hooks.active()) return;
        const std::size_t D = hidden_size, G = gh * gw;
        Matrix<T> chw = Matrix<T>::from_shape({N * D, G});
        for (std::size_t n = 0; n < N; ++n) transpose_blocked(&embeds(n * G, 0), G, D, &chw(n * D, 0));
        const Shape shape = N == 1 ? Shape{D, gh, gw} : Shape{N, D, gh, gw};
        hooks.report(patch_embed.name, chw, shape);
        for (std::size_t n = 0; n < N; ++n) transpose_blocked(&chw(n * D, 0), D, G, &embeds(n * G, 0));
    }

    // dst [cols, rows] = src [rows, cols]ᵀ by tiles: float through the
    // AVX-512 16 × 16 transpose in registers (each cache line read and
    // written once; element by element, the 1024 × 1024 copies of the
    // release model took about 5 ms each, the 4 KB-apart lines of a tile
    // evicting one another), else 8 × 8 tiles.
    static void transpose_blocked(const T* src, std::size_t rows, std::size_t cols, T* dst) {
        if constexpr (std::is_same<T, float>::value) {
            if (kernels::cpu_has_avx512f()) {
                for (std::size_t r0 = 0; r0 < rows; r0 += 16)
                    for (std::size_t c0 = 0; c0 < cols; c0 += 16) {
                        const std::size_t r = std::min<std::size_t>(16, rows - r0), c = std::min<std::size_t>(16, cols - c0);
                        kernels::sgemm_detail::transpose16(src + r0 * cols + c0, cols, r, c, dst + c0 * rows + r0, rows,
                                                           static_cast<__mmask16>((1u << r) - 1));
                    }
                return;
            }
        }
        constexpr std::size_t B = 8;
        for (std::size_t r0 = 0; r0 < rows; r0 += B)
            for (std::size_t c0 = 0; c0 < cols; c0 += B)
                for (std::size_t r = r0; r < std::min(rows, r0 + B); ++r)
                    for (std::size_t c = c0; c < std::min(cols, c0 + B); ++c) dst[c * rows + r] = src[r * cols + c];
    }
};

}  // namespace mplug_owl2
