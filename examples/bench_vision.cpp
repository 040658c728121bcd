// bench_vision: the vision encoder and the visual abstractor at the release
// size (ViT 1024 wide, 16 heads, MLP 4096, 448 px / patch 14 = 1025 tokens;
// abstractor 64 queries, 16 heads, MLP 2816, visual_fc to 4096) on random
// weights, one image, float32 compute. Prints the seconds and GFLOP/s of
// each stage next to the GFLOP/s of a plain sgemm measured in the same run.
//
//   bench_vision [--vision-layers N] [--abstractor-layers M] [--dtype f32|bf16] [--repeat R]
//
// N (default 2) and M (default 1) are the numbers of layers built; the
// release has 24 and 6, each layer costs the same. --dtype bf16 stores the
// weights in bfloat16 and keeps them so (Linear's half-precision path).
// Every stage runs once to warm up, then R times (default 3); the best time
// is reported. FLOPs count every matrix product (2·M·N·K), attention's
// q·kᵀ and p·v included. Besides wall-clock time, the process CPU time is
// reported as GFLOP per CPU-second ("GFLOP/cpu-s"): on a machine shared
// with other work it counts only the time the benchmark ran, so it stays
// comparable when the wall clock does not.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "mplug_owl2/abstractor/visual_abstractor_model.hpp"
#include "mplug_owl2/core/gemm.hpp"
#include "mplug_owl2/core/parallel.hpp"
#include "mplug_owl2/io/synthetic.hpp"
#include "mplug_owl2/vision/vision_model.hpp"

using namespace mplug_owl2;

namespace {

struct Options {
    int vision_layers = 2;
    int abstractor_layers = 1;
    std::string dtype = "f32";
    int repeat = 3;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail(a, ": expected a value");
            return argv[++i];
        };
        if (a == "--vision-layers") o.vision_layers = std::stoi(value());
        else if (a == "--abstractor-layers") o.abstractor_layers = std::stoi(value());
        else if (a == "--dtype") o.dtype = value();
        else if (a == "--repeat") o.repeat = std::stoi(value());
        else fail("unknown argument ", a, " (expected --vision-layers, --abstractor-layers, --dtype or --repeat)");
    }
    if (o.dtype != "f32" && o.dtype != "bf16") fail("--dtype: expected f32 or bf16, found ", o.dtype);
    if (o.vision_layers < 1 || o.abstractor_layers < 1 || o.repeat < 1)
        fail("--vision-layers, --abstractor-layers and --repeat must be at least 1");
    return o;
}

double cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

struct Time {
    double wall = 1e30, cpu = 1e30;  // best wall-clock seconds; best CPU seconds of all threads
};

// The best times of `repeat` calls after one warm-up call.
Time best_time(int repeat, const std::function<void()>& fn) {
    fn();
    Time best;
    for (int r = 0; r < repeat; ++r) {
        const double c0 = cpu_seconds();
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        best.wall = std::min(best.wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        best.cpu = std::min(best.cpu, cpu_seconds() - c0);
    }
    return best;
}

// 2·M·N·K
double gemm_flops(double M, double N, double K) { return 2.0 * M * N * K; }

struct Row {
    std::string stage;
    Time time;
    double flops;
};

}  // namespace

int main(int argc, char** argv) try {
    const Options opt = parse(argc, argv);

    // The release configuration with N vision and M abstractor layers; the
    // language model is left out but for the width visual_fc projects to.
    ModelConfig cfg;
    cfg.vision.num_hidden_layers = opt.vision_layers;
    cfg.abstractor.num_hidden_layers = opt.abstractor_layers;
    cfg.text.num_hidden_layers = 0;
    cfg.text.vocab_size = 8;
    const std::size_t D = cfg.vision.hidden_size, I = cfg.vision.intermediate_size;
    const std::size_t L = cfg.vision.seq_len(), G = cfg.vision.num_patches(), P = cfg.vision.patch_size;
    const std::size_t A = cfg.abstractor.hidden_size, A_mlp = cfg.abstractor.intermediate_size;
    const std::size_t Q = cfg.abstractor.num_learnable_queries, K = Q + L, Hlm = cfg.text.hidden_size;

    const DType dtype = opt.dtype == "bf16" ? DType::BF16 : DType::F32;
    const auto source = synthetic_checkpoint(cfg, dtype, 1);
    WeightLoader w(*source);
    if (dtype == DType::BF16) w.keep_half_precision(source);
    VisionModel<float> vision;
    vision.load(w, cfg.vision);
    VisualAbstractorModel<float> abstractor;
    abstractor.load(w, cfg.abstractor, Hlm, cfg.vision);

    // One image of normalised pixels.
    const std::size_t S = cfg.vision.image_size;
    xt::xtensor<float, 4> pixels = xt::xtensor<float, 4>::from_shape({1, 3, S, S});
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (auto& p : pixels) p = normal(rng);

    const Hooks<float> hooks;
    std::vector<Row> rows;
    const int R = opt.repeat;

    // The vision encoder, stage by stage.
    Matrix<float> h;
    rows.push_back({"vision embeddings", best_time(R, [&] { h = vision.embeddings.forward(pixels, hooks); }),
                    gemm_flops(G, D, 3.0 * P * P)});
    const double layer_flops = gemm_flops(L, 3 * D, D) + 2 * gemm_flops(L, L, D) + gemm_flops(L, D, D) +
                               gemm_flops(L, I, D) + gemm_flops(L, D, I);
    for (std::size_t i = 0; i < vision.encoder.layers.size(); ++i) {
        Matrix<float> out;
        const Time t = best_time(R, [&] { out = vision.encoder.layers[i].forward(h, 1, hooks); });
        h = out;
        rows.push_back({"vision layer " + std::to_string(i), t, layer_flops});
    }
    Matrix<float> features;
    rows.push_back(
        {"vision post_layernorm", best_time(R, [&] { features = vision.post_layernorm.forward(h, hooks); }), 0});

    // The abstractor, stage by stage.
    Matrix<float> x = abstractor.query_embeds;
    const double abs_flops = gemm_flops(Q, A, A) + 2 * gemm_flops(K, A, D) + 2 * gemm_flops(Q, K, A) +
                             gemm_flops(Q, A, A) + 2 * gemm_flops(Q, A_mlp, A) + gemm_flops(Q, A, A_mlp);
    for (std::size_t i = 0; i < abstractor.encoder.layers.size(); ++i) {
        Matrix<float> out;
        const Time t = best_time(R, [&] { out = abstractor.encoder.layers[i].forward(x, features, 1, hooks); });
        x = out;
        rows.push_back({"abstractor layer " + std::to_string(i), t, abs_flops});
    }
    rows.push_back({"abstractor visual_fc", best_time(R, [&] { abstractor.visual_fc.forward(x, hooks); }),
                    gemm_flops(Q, Hlm, A)});

    // The whole image once more end to end, to check the stages add up.
    const Time whole = best_time(R, [&] { abstractor.forward(vision.forward(pixels, hooks), 1, hooks); });

    // A plain sgemm of the vision MLP's shape, x [L, D] · W [I, D]ᵀ, timed the
    // same way: OpenBLAS's, and the library's gemm<float> (which takes
    // kernels/sgemm.hpp on AVX-512 CPUs). Stages are compared with the faster.
    Matrix<float> sa = Matrix<float>::from_shape({L, D}), sb = Matrix<float>::from_shape({I, D});
    Matrix<float> sc = Matrix<float>::from_shape({L, I});
    for (auto& v : sa) v = normal(rng);
    for (auto& v : sb) v = normal(rng);
    const double sgemm_flops = gemm_flops(L, I, D);
    const Time openblas = best_time(R, [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, I, D, 1.f, sa.data(), D, sb.data(), D, 0.f,
                    sc.data(), I);
    });
    const Time library = best_time(R, [&] {
        gemm<float>(Trans::No, Trans::Yes, L, I, D, 1.f, sa.data(), D, sb.data(), D, 0.f, sc.data(), I);
    });

    // GFLOP/s of the wall clock, and GFLOP per CPU-second of one core.
    const double cores = double(thread_pool().size());
    auto rate = [](double flops, double seconds) { return flops / seconds * 1e-9; };
    const double ref_wall = std::max(rate(sgemm_flops, openblas.wall), rate(sgemm_flops, library.wall));
    const double ref_cpu = std::max(rate(sgemm_flops, openblas.cpu), rate(sgemm_flops, library.cpu));

    std::printf("OpenBLAS %s, core %s, %d BLAS threads; thread pool %zu threads; weights %s\n", openblas_get_config(),
                openblas_get_corename(), openblas_get_num_threads(), thread_pool().size(), opt.dtype.c_str());
    std::printf("sgemm %zux%zux%zu: OpenBLAS %.4f s = %.1f GFLOP/s (%.1f GFLOP/cpu-s); "
                "gemm<float> %.4f s = %.1f GFLOP/s (%.1f GFLOP/cpu-s)\n\n",
                L, I, D, openblas.wall, rate(sgemm_flops, openblas.wall), rate(sgemm_flops, openblas.cpu),
                library.wall, rate(sgemm_flops, library.wall), rate(sgemm_flops, library.cpu));
    std::printf("%-24s %9s %8s %9s %9s %12s %9s\n", "stage", "seconds", "GFLOP", "GFLOP/s", "of sgemm", "GFLOP/cpu-s",
                "of sgemm");
    Time total{0, 0}, vision_t{0, 0}, layers_t{0, 0}, abs_t{0, 0};
    double vision_f = 0, layers_f = 0;
    auto add = [](Time& a, const Time& b) { a.wall += b.wall, a.cpu += b.cpu; };
    for (const auto& r : rows) {
        add(total, r.time);
        if (r.stage.rfind("vision", 0) == 0) add(vision_t, r.time), vision_f += r.flops;
        if (r.stage.rfind("vision layer", 0) == 0) add(layers_t, r.time), layers_f += r.flops;
        if (r.stage.rfind("abstractor layer", 0) == 0) add(abs_t, r.time);
        if (r.flops == 0) {
            std::printf("%-24s %9.4f\n", r.stage.c_str(), r.time.wall);
            continue;
        }
        const double g = rate(r.flops, r.time.wall), gc = rate(r.flops, r.time.cpu);
        std::printf("%-24s %9.4f %8.2f %9.1f %8.0f%% %12.1f %8.0f%%\n", r.stage.c_str(), r.time.wall, r.flops * 1e-9, g,
                    100 * g / ref_wall, gc, 100 * gc / ref_cpu);
    }
    auto summary = [&](const char* what, const Time& t, double flops) {
        std::printf("%s %.1f GFLOP/s = %.0f%% of sgemm; %.1f GFLOP/cpu-s = %.0f%% of sgemm\n", what,
                    rate(flops, t.wall), 100 * rate(flops, t.wall) / ref_wall, rate(flops, t.cpu),
                    100 * rate(flops, t.cpu) / ref_cpu);
    };
    const double nv = opt.vision_layers, na = opt.abstractor_layers;
    std::printf("\nper vision layer:      %.4f s (%.4f CPU-s / %.0f cores)\n", layers_t.wall / nv,
                layers_t.cpu / nv / cores, cores);
    std::printf("per abstractor layer:  %.4f s (%.4f CPU-s / %.0f cores)\n", abs_t.wall / na, abs_t.cpu / na / cores,
                cores);
    summary("vision layers: ", layers_t, layers_f);
    summary("vision encoder:", vision_t, vision_f);
    std::printf("sum of stages %.4f s; the same image end to end %.4f s\n", total.wall, whole.wall);
    std::printf("release estimate (24 vision + 6 abstractor layers): %.2f s (%.2f CPU-s / %.0f cores)\n",
                total.wall + (24 - nv) * layers_t.wall / nv + (6 - na) * abs_t.wall / na,
                (total.cpu + (24 - nv) * layers_t.cpu / nv + (6 - na) * abs_t.cpu / na) / cores, cores);
    return 0;
} catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
}
