// `mplug-owl2 bench`: the whole model at the release widths (vision 1024
// wide, 16 heads, MLP 4096, 448 px / patch 14; abstractor 64 queries, 16
// heads, MLP 2816; decoder 4096 wide, 32 heads, MLP 11008, vocab 32000) on
// random weights held in memory, at chosen depths, float32 compute. One
// image plus --text prompt tokens go through the prefill (image encoding,
// splicing, the decoder, lm_head on the last position), then --decode tokens
// through the key/value cache, exactly as generation runs them.
//
// Next to the stage times it measures, in the same run, what bounds them:
//   - the GFLOP/s of a plain float product of the vision MLP's shape
//     ([1025, 1024] · [1024, 4096]), four times in a row (about as long as
//     the stages), through OpenBLAS's cblas_sgemm and through the library's
//     gemm<float> (which takes the AVX-512 kernel where it is faster):
//     compute-bound stages are compared with the faster;
//   - the memory bandwidth of a streaming read of 1 GiB over the threads
//     (four streams per thread, as the decoding kernels read), held as
//     the weights are, in 2 MB pages where offered (core/large_pages.hpp):
//     decoding reads every weight once per token, so its floor is
//     bytes read per token / bandwidth.
// Every stage runs --repeat times after one warm-up run; each figure is the
// best of those runs. Besides wall-clock seconds it records the process's
// CPU-seconds per stage: on a machine shared with other work, CPU time / the
// threads is what the stage would take with the cores to itself.
#pragma once

#include <CLI/CLI.hpp>
#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <time.h>

#include "mplug_owl2/core/large_pages.hpp"
#include "mplug_owl2/core/parallel.hpp"
#include "mplug_owl2/io/synthetic.hpp"
#include "mplug_owl2/model/mplug_owl2_model.hpp"

namespace cli {

struct BenchOptions {
    int vision_layers = 2, abstractor_layers = 1, llm_layers = 2;
    int text = 24, decode = 8;
    int threads = static_cast<int>(mplug_owl2::ThreadPool::default_threads());
    int repeat = 2;
    std::string weights = "f32";
    bool json = false;
};

namespace bench_detail {

using Clock = std::chrono::steady_clock;

inline double elapsed_s(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU-seconds used by the process so far (all its threads).
inline double cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Work per wall-clock second and per CPU-second (the best seen).
struct Rate {
    double wall = 0, cpu = 0;
    void keep_best(const Rate& r) {
        wall = std::max(wall, r.wall);
        cpu = std::max(cpu, r.cpu);
    }
};

// A moment: wall clock and CPU time.
struct Stamp {
    Clock::time_point wall;
    double cpu = 0;
    static Stamp now() { return {Clock::now(), cpu_seconds()}; }
};

// 2·M·N·K
inline double gemm_flops(double M, double N, double K) { return 2.0 * M * N * K; }

// Bytes of a Linear's weight as stored (packed or not).
template <class T>
double weight_bytes(const mplug_owl2::Linear<T>& l) {
    if (!l.weight_half.empty()) return double(l.weight_half.bytes());
    return double(l.out_features() * l.in_features() * sizeof(T));
}

// Sum of n 64-bit words: the loads are what is timed. The words are read as
// four streams at once (each a quarter of the range, fetched a few lines
// ahead), as the decoding kernels read four weight rows at once: one
// stream per core leaves part of the memory bandwidth unused.
__attribute__((target("avx512f"))) inline std::uint64_t read_avx512(const std::uint64_t* p, std::size_t n) {
    const std::size_t q = n / 32 * 8;  // words per stream, whole lines
    const std::uint64_t *p0 = p, *p1 = p + q, *p2 = p + 2 * q, *p3 = p + 3 * q;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (std::size_t i = 0; i < q; i += 8) {
        _mm_prefetch(reinterpret_cast<const char*>(p0 + i + 128), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p1 + i + 128), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p2 + i + 128), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p3 + i + 128), _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(p0 + i));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(p1 + i));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(p2 + i));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(p3 + i));
    }
    alignas(64) std::uint64_t lanes[8];
    _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    std::uint64_t s = 0;
    for (auto l : lanes) s += l;
    for (std::size_t i = 4 * q; i < n; ++i) s += p[i];
    return s;
}

inline std::uint64_t read_words(const std::uint64_t* p, std::size_t n) {
    if (__builtin_cpu_supports("avx512f")) return read_avx512(p, n);
    std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
    for (; i < n; ++i) s0 += p[i];
    return s0 + s1 + s2 + s3;
}

// A streaming read of `bytes` (one slice per thread of the pool): GB/s.
class ReadBandwidth {
public:
    explicit ReadBandwidth(std::size_t bytes)
        : words_(bytes / 64 * 8),
          buf_(static_cast<std::uint64_t*>(mplug_owl2::allocate_large(words_ * 8)), std::free) {  // as the weights
        std::uint64_t* p = buf_.get();  // every page touched before timing
        mplug_owl2::thread_pool().parallel_for(words_, [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) p[i] = i;
        });
    }

    Rate measure() {
        constexpr std::size_t slices = 64;  // of whole 64-byte lines
        std::vector<std::uint64_t> part(slices);
        const std::uint64_t* p = buf_.get();
        const Stamp t0 = Stamp::now();
        mplug_owl2::thread_pool().parallel_for(slices, [&](std::size_t s0, std::size_t s1) {
            for (std::size_t s = s0; s < s1; ++s) {
                const std::size_t b = words_ * s / slices / 8 * 8, e = words_ * (s + 1) / slices / 8 * 8;
                part[s] = read_words(p + b, e - b);
            }
        });
        const Stamp t1 = Stamp::now();
        for (auto x : part) sink_ += x;  // keeps the reads
        const double gb = double(words_ * 8) * 1e-9;
        return {gb / std::chrono::duration<double>(t1.wall - t0.wall).count(), gb / (t1.cpu - t0.cpu)};
    }
    std::uint64_t sink() const { return sink_; }

private:
    std::size_t words_;
    std::unique_ptr<std::uint64_t[], void (*)(void*)> buf_;
    std::uint64_t sink_ = 0;
};

// C[M, N] = A[M, K] · B[N, K]ᵀ through cblas_sgemm or gemm<float>: GFLOP/s.
class SgemmRate {
public:
    SgemmRate(std::size_t M, std::size_t N, std::size_t K)
        : M_(M), N_(N), K_(K), a_(mplug_owl2::Matrix<float>::from_shape({M, K})),
          b_(mplug_owl2::Matrix<float>::from_shape({N, K})), c_(mplug_owl2::Matrix<float>::from_shape({M, N})) {
        std::mt19937 rng(3);
        std::normal_distribution<float> normal(0.f, 1.f);
        for (auto& v : a_) v = normal(rng);
        for (auto& v : b_) v = normal(rng);
    }

    // `times` products back to back, timed together: a stretch of work as
    // long as the stages it bounds (about 0.1 s), not one burst.
    Rate measure(bool through_openblas, int times = 4) {
        using namespace mplug_owl2;
        const Stamp t0 = Stamp::now();
        for (int i = 0; i < times; ++i) {
            if (through_openblas)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M_),
                            static_cast<blasint>(N_), static_cast<blasint>(K_), 1.f, a_.data(),
                            static_cast<blasint>(K_), b_.data(), static_cast<blasint>(K_), 0.f, c_.data(),
                            static_cast<blasint>(N_));
            else
                gemm<float>(Trans::No, Trans::Yes, M_, N_, K_, 1.f, a_.data(), K_, b_.data(), K_, 0.f, c_.data(),
                            N_);
        }
        const Stamp t1 = Stamp::now();
        const double gflop = times * gemm_flops(double(M_), double(N_), double(K_)) * 1e-9;
        return {gflop / std::chrono::duration<double>(t1.wall - t0.wall).count(), gflop / (t1.cpu - t0.cpu)};
    }

private:
    std::size_t M_, N_, K_;
    mplug_owl2::Matrix<float> a_, b_, c_;
};

// Floating-point operations of the vision encoder (patch embedding and every
// layer's products, attention's q·kᵀ and p·v included) for one image.
inline double vision_flops(const mplug_owl2::VisionConfig& c) {
    const double L = c.seq_len(), G = c.num_patches(), D = c.hidden_size, I = c.intermediate_size;
    const double P = c.patch_size;
    const double layer = gemm_flops(L, 3 * D, D) + 2 * gemm_flops(L, L, D) + gemm_flops(L, D, D) +
                         gemm_flops(L, I, D) + gemm_flops(L, D, I);
    return gemm_flops(G, D, 3 * P * P) + c.num_hidden_layers * layer;
}

// ... of the abstractor for one image (its layers and visual_fc).
inline double abstractor_flops(const mplug_owl2::ModelConfig& c) {
    const double Q = c.abstractor.num_learnable_queries, A = c.abstractor.hidden_size;
    const double AM = c.abstractor.intermediate_size, E = c.abstractor.encoder_hidden_size;
    const double K = Q + c.vision.seq_len(), H = c.text.hidden_size;
    const double layer = gemm_flops(Q, A, A) + 2 * gemm_flops(K, A, E) + 2 * gemm_flops(Q, K, A) +
                         gemm_flops(Q, A, A) + 2 * gemm_flops(Q, AM, A) + gemm_flops(Q, A, AM);
    return c.abstractor.num_hidden_layers * layer + gemm_flops(Q + 1, H, A);
}

// ... of the decoder over L new positions after `past` cached ones, the
// attention counted over every key of the causal window, plus lm_head on
// `head_rows` rows.
inline double decoder_flops(const mplug_owl2::TextConfig& c, double L, double past, double head_rows) {
    const double D = c.hidden_size, I = c.intermediate_size, hd = c.head_dim();
    const double H = c.num_attention_heads, KV = double(c.num_key_value_heads) * hd;
    const double keys = L * past + L * (L + 1) / 2;  // query-key pairs inside the causal window
    const double layer = gemm_flops(L, D, H * hd) + 2 * gemm_flops(L, KV, D) + gemm_flops(L, D, H * hd) +
                         2 * 2 * keys * hd * H + 3 * gemm_flops(L, I, D);
    return c.num_hidden_layers * layer + gemm_flops(head_rows, c.vocab_size, D);
}

// Bytes one decoding step reads with `past` positions cached: every weight a
// text position meets (the text copy of each multiway module), the cached
// keys and values, one row of the embedding table, lm_head.
template <class T>
double decode_bytes(const mplug_owl2::MplugOwl2LlamaForCausalLM<T>& m, double past) {
    const auto& lm = m.model;
    const double D = lm.config.hidden_size, kv = double(lm.config.num_key_value_heads) * lm.config.head_dim();
    double b = 0;
    for (const auto& layer : lm.layers) {
        const auto& a = layer.self_attn;
        b += weight_bytes(a.q_proj) + weight_bytes(a.k_proj.multiway[0]) + weight_bytes(a.v_proj.multiway[0]) +
             weight_bytes(a.o_proj);
        b += weight_bytes(layer.mlp.gate_proj) + weight_bytes(layer.mlp.up_proj) + weight_bytes(layer.mlp.down_proj);
        b += 2 * D * sizeof(T);                    // the two RMSNorm gains
        b += 2 * (past + 1) * kv * sizeof(T);      // keys and values of every position
    }
    const auto& e = lm.embed_tokens;
    b += D * (e.weight_half.empty() ? double(sizeof(T)) : 2.0);  // one embedding row
    b += D * sizeof(T) + weight_bytes(m.lm_head);               // final norm, lm_head
    return b;
}

// Wall-clock and CPU-seconds of one stage, the best over the runs.
struct Seconds {
    double wall = 1e30, cpu = 1e30;
    void take(const Stamp& a, const Stamp& b, double per = 1) {
        wall = std::min(wall, std::chrono::duration<double>(b.wall - a.wall).count() / per);
        cpu = std::min(cpu, (b.cpu - a.cpu) / per);
    }
};

// Best (least time, most rate) over the runs.
struct Figures {
    Seconds vision, abstractor, prefill_decoder, prefill_total, decode_per_token;
    Rate sgemm_openblas, sgemm_gemm, bandwidth;
};

}  // namespace bench_detail

inline void run_bench(const BenchOptions& o) {
    using namespace mplug_owl2;
    using namespace bench_detail;
    // 0. the options: depths up to the release's, the prompt and decoding
    //    within the context, threads within what a machine may run
    const ModelConfig release;
    for (auto [option, value, most] :
         {std::tuple<const char*, int, int>{"--vision-layers", o.vision_layers, release.vision.num_hidden_layers},
          {"--abstractor-layers", o.abstractor_layers, release.abstractor.num_hidden_layers},
          {"--llm-layers", o.llm_layers, release.text.num_hidden_layers}})
        if (value < 0 || value > most)
            fail(option, " ", value, ": expected 0 to ", most, " layers (the release's depth)");
    if (o.text < 1) fail("--text ", o.text, ": expected at least 1 (the BOS token)");
    if (o.decode < 1) fail("--decode ", o.decode, ": expected at least 1");
    const auto image_rows = static_cast<std::size_t>(release.abstractor.num_learnable_queries) + 1;
    if (static_cast<std::size_t>(o.text) + image_rows > max_positions(release.text))
        fail("--text ", o.text, ": with the image's ", image_rows, " positions the prompt exceeds the ",
             max_positions(release.text), " positions of the model (max_position_embeddings)");
    check_context(static_cast<std::size_t>(o.text) + image_rows, static_cast<std::size_t>(o.decode), release.text,
                  "--decode");
    if (o.threads < 1 || o.threads > 1024) fail("--threads ", o.threads, ": expected 1 to 1024");
    if (o.repeat < 1) fail("--repeat ", o.repeat, ": expected at least 1");

    // 1. threads: OpenBLAS's and the pool's (the two never run at once)
    openblas_set_num_threads(o.threads);
    thread_pool().resize(static_cast<std::size_t>(o.threads));

    // 2. the model at the release widths and the chosen depths, random weights
    ModelConfig cfg;
    cfg.vision.num_hidden_layers = o.vision_layers;
    cfg.abstractor.num_hidden_layers = o.abstractor_layers;
    cfg.text.num_hidden_layers = o.llm_layers;
    const DType dtype = o.weights == "bf16" ? DType::BF16 : o.weights == "fp16" ? DType::F16 : DType::F32;
    MplugOwl2LlamaForCausalLM<float> model;
    {
        const auto t0 = Clock::now();
        const auto source = synthetic_checkpoint(cfg, dtype, 1);
        WeightLoader w(*source);
        if (dtype != DType::F32) w.keep_half_precision(source);  // the model keeps the source alive
        model.load(w, cfg);
        model.pack_decoder_weights();  // as the other commands load it (float weights only)
        std::cerr << "model built in " << elapsed_s(t0) << " s\n";
    }

    // 3. one image of random normalised pixels; the prompt: BOS, the image,
    //    then text - 1 random ids
    const auto S = static_cast<std::size_t>(cfg.vision.image_size);
    xt::xtensor<float, 4> pixels = xt::xtensor<float, 4>::from_shape({1, 3, S, S});
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (auto& p : pixels) p = normal(rng);
    std::vector<std::int64_t> ids = {cfg.text.bos_token_id, kImageTokenIndex};
    std::uniform_int_distribution<std::int64_t> token(3, cfg.text.vocab_size - 1);
    for (int i = 1; i < o.text; ++i) ids.push_back(token(rng));

    // 4. the stage boundaries, taken when the vision tower and the
    //    abstractor report their outputs
    Hooks<float> hooks;
    Stamp vision_done, abstractor_done;
    hooks.add([&](const std::string& name, Matrix<float>&, const Shape&) {
        if (name == "model.vision_model") vision_done = Stamp::now();
        if (name == "model.visual_abstractor") abstractor_done = Stamp::now();
    });

    // 5. prefill and decoding, as generation runs them, each run followed by
    //    the bounds (a plain product of the vision MLP's shape, a streaming
    //    read of 1 GiB), so that all share the machine's state of the
    //    moment; best of the runs after a warm-up. OpenBLAS's product goes
    //    last, followed by a pause: its threads spin for a while after a
    //    call and would take a core from whatever runs next.
    const std::size_t VL = cfg.vision.seq_len(), VD = cfg.vision.hidden_size, VI = cfg.vision.intermediate_size;
    SgemmRate sgemm(VL, VI, VD);
    ReadBandwidth read(std::size_t(1) << 30);
    Figures f;
    std::size_t prompt_positions = 0;
    for (int r = 0; r < o.repeat + 1; ++r) {
        const Stamp t0 = Stamp::now();
        const PreparedInputs<float> in = model.prepare_inputs(ids, model.encode_images(pixels, hooks), hooks);
        KVCache<float> cache = model.new_cache();
        cache.reserve(in.inputs_embeds.shape(0) + static_cast<std::size_t>(o.decode));
        const Matrix<float> logits = model.prefill(in, cache, hooks);
        const Stamp t1 = Stamp::now();
        GenerationConfig g;
        g.max_new_tokens = static_cast<std::size_t>(o.decode);
        g.stop_at_eos = false;
        const Generation<float> gen = model.generate(logits, cache, g, hooks);
        const Stamp t2 = Stamp::now();
        if (gen.step_logits.shape(0) != static_cast<std::size_t>(o.decode))
            fail("bench: ", gen.step_logits.shape(0), " decoding steps ran, expected ", o.decode);
        prompt_positions = in.inputs_embeds.shape(0);
        const Rate gemm_rate = sgemm.measure(false), bw = read.measure(), openblas_rate = sgemm.measure(true);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        if (r == 0) continue;
        f.vision.take(t0, vision_done);
        f.abstractor.take(vision_done, abstractor_done);
        f.prefill_decoder.take(abstractor_done, t1);
        f.prefill_total.take(t0, t1);
        f.decode_per_token.take(t1, t2, o.decode);
        f.sgemm_openblas.keep_best(openblas_rate);
        f.sgemm_gemm.keep_best(gemm_rate);
        f.bandwidth.keep_best(bw);
    }
    if (read.sink() == 1) std::cerr << "";  // the reads' sum is used

    // 6. achieved rates, per wall-clock second and per CPU-second, and as
    //    fractions of the bounds measured the same way: the faster sgemm
    //    for the products, the read bandwidth for decoding
    const double P = double(prompt_positions);
    const double v_flops = vision_flops(cfg.vision), a_flops = abstractor_flops(cfg);
    const double d_flops = decoder_flops(cfg.text, P, 0, 1);
    double bytes = 0;
    for (int i = 0; i < o.decode; ++i) bytes += decode_bytes(model, P + i);
    bytes /= o.decode;
    const Rate sgemm_best{std::max(f.sgemm_openblas.wall, f.sgemm_gemm.wall),
                          std::max(f.sgemm_openblas.cpu, f.sgemm_gemm.cpu)};
    struct Row {
        const char* stage;
        const Seconds& s;
        double work;         // GFLOP, or GB for decoding
        const Rate* bound;   // nullptr: no bound shown
        Rate rate() const { return {work / s.wall, work / s.cpu}; }
    };
    const Row rows[] = {
        {"vision encoder", f.vision, v_flops * 1e-9, &sgemm_best},
        {"abstractor", f.abstractor, a_flops * 1e-9, nullptr},
        {"decoder prefill (+lm_head)", f.prefill_decoder, d_flops * 1e-9, &sgemm_best},
        {"whole prefill", f.prefill_total, (v_flops + a_flops + d_flops) * 1e-9, &sgemm_best},
        {"decoding, per token", f.decode_per_token, bytes * 1e-9, &f.bandwidth},
    };

    std::printf("OpenBLAS %s (core %s), %d threads for OpenBLAS and the pool; weights %s\n", openblas_get_config(),
                openblas_get_corename(), o.threads, o.weights.c_str());
    std::printf("layers: vision %d, abstractor %d, decoder %d; prompt %zu positions (%d text); %d decoded, %.1f MB "
                "read per token\n",
                o.vision_layers, o.abstractor_layers, o.llm_layers, prompt_positions, o.text, o.decode, bytes * 1e-6);
    std::printf("bounds per second (per CPU-second): sgemm %zux%zux%zu OpenBLAS %.1f (%.1f) GFLOP, gemm<float> %.1f "
                "(%.1f) GFLOP; read %.1f (%.1f) GB\n\n",
                VL, VI, VD, f.sgemm_openblas.wall, f.sgemm_openblas.cpu, f.sgemm_gemm.wall, f.sgemm_gemm.cpu,
                f.bandwidth.wall, f.bandwidth.cpu);
    std::printf("%-28s %9s %11s %16s %9s %9s\n", "stage", "seconds", "CPU-s/thr", "rate", "of bound", "(CPU)");
    for (const Row& r : rows) {
        const bool gb = r.bound == &f.bandwidth;
        std::printf("%-28s %9.4f %11.4f %9.1f %s", r.stage, r.s.wall, r.s.cpu / o.threads, r.rate().wall,
                    gb ? "GB/s  " : "GF/s  ");
        if (r.bound)
            std::printf(" %8.0f%% %8.0f%%", 100 * r.rate().wall / r.bound->wall, 100 * r.rate().cpu / r.bound->cpu);
        std::printf("\n");
    }
    if (o.json) {
        std::printf("{\"weights\": \"%s\", \"threads\": %d, \"vision_layers\": %d, \"abstractor_layers\": %d, "
                    "\"llm_layers\": %d, \"text_tokens\": %d, \"prompt_positions\": %zu, \"decoded_tokens\": %d, "
                    "\"openblas_core\": \"%s\", \"sgemm_openblas_gflops\": %.2f, \"sgemm_gemm_gflops\": %.2f, "
                    "\"bandwidth_gbs\": %.2f, \"decode_bytes_per_token\": %.0f",
                    o.weights.c_str(), o.threads, o.vision_layers, o.abstractor_layers, o.llm_layers, o.text,
                    prompt_positions, o.decode, openblas_get_corename(), f.sgemm_openblas.wall, f.sgemm_gemm.wall,
                    f.bandwidth.wall, bytes);
        const char* keys[] = {"vision", "abstractor", "prefill_decoder", "prefill_total", "decode_per_token"};
        for (std::size_t i = 0; i < 5; ++i) {
            const Row& r = rows[i];
            std::printf(", \"%s_s\": %.6f, \"%s_cpu_s\": %.6f", keys[i], r.s.wall, keys[i], r.s.cpu / o.threads);
        }
        const Rate v = rows[0].rate(), p = rows[2].rate(), t = rows[3].rate(), d = rows[4].rate();
        std::printf(", \"vision_gflops\": %.2f, \"vision_of_sgemm\": %.3f, \"vision_of_sgemm_cpu\": %.3f, "
                    "\"abstractor_gflops\": %.2f, \"prefill_gflops\": %.2f, \"prefill_of_sgemm\": %.3f, "
                    "\"prefill_of_sgemm_cpu\": %.3f, \"prefill_total_gflops\": %.2f, \"prefill_total_of_sgemm\": %.3f, "
                    "\"decode_gbs\": %.2f, \"decode_of_bandwidth\": %.3f, \"decode_of_bandwidth_cpu\": %.3f}\n",
                    v.wall, v.wall / sgemm_best.wall, v.cpu / sgemm_best.cpu, rows[1].rate().wall, p.wall,
                    p.wall / sgemm_best.wall, p.cpu / sgemm_best.cpu, t.wall, t.wall / sgemm_best.wall, d.wall,
                    d.wall / f.bandwidth.wall, d.cpu / f.bandwidth.cpu);
    }
}

inline void register_bench(CLI::App& app) {
    auto* sub = app.add_subcommand(
        "bench", "Time the whole model at the release widths on random weights (prefill of one image and text, "
                 "decoding) next to the machine's sgemm GFLOP/s and memory bandwidth");
    auto o = std::make_shared<BenchOptions>();
    sub->add_option("--vision-layers", o->vision_layers, "vision encoder layers (release: 24)");
    sub->add_option("--abstractor-layers", o->abstractor_layers, "abstractor layers (release: 6)");
    sub->add_option("--llm-layers", o->llm_layers, "decoder layers (release: 32)");
    sub->add_option("--text", o->text, "text tokens of the prompt, BOS included");
    sub->add_option("--decode", o->decode, "tokens decoded through the key/value cache");
    sub->add_option("--threads", o->threads, "threads of OpenBLAS and of the library's pool");
    sub->add_option("--weights", o->weights, "weights as stored and kept: f32, bf16 or fp16")
        ->check(CLI::IsMember({"f32", "bf16", "fp16"}));
    sub->add_option("--repeat", o->repeat, "timed runs after the warm-up; the best is reported");
    sub->add_flag("--json", o->json, "end with one line of JSON holding every figure");
    sub->callback([o] { run_bench(*o); });
}

}  // namespace cli
