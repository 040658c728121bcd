// A small fixed pool of worker threads for the loops BLAS does not cover
// (attention heads, half-precision weight conversion). OpenBLAS keeps its own
// threads for GEMMs; this pool only runs between BLAS calls, so the two never
// oversubscribe the cores.
//
// A decoding step hands the pool dozens of jobs of a few hundred
// microseconds each. Waking a thread that sleeps on a condition variable
// takes tens of microseconds (more on a virtual machine, whose idle cores
// halt), so a waiting thread first polls for a short while (kSpin) and
// only then sleeps: back-to-back jobs never wait for a wake-up. The price:
// for up to kSpin after a job the pool's threads keep their cores busy, so
// an OpenBLAS call right after one may find them taken for that long.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mplug_owl2 {

class ThreadPool {
public:
    explicit ThreadPool(std::size_t threads = default_threads()) { resize(threads); }
    ~ThreadPool() { stop(); }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    static std::size_t default_threads() {
        const unsigned n = std::thread::hardware_concurrency();
        return n == 0 ? 1 : n;
    }

    // How long a waiting thread polls before it sleeps.
    static constexpr std::chrono::microseconds kSpin{200};

    // Number of threads that run a parallel_for (the caller included).
    std::size_t size() const { return workers_.size() + 1; }

    void resize(std::size_t threads) {
        stop();
        done_ = false;
        // New workers wait for the next job, not the last one run before.
        for (std::size_t i = 1; i < std::max<std::size_t>(threads, 1); ++i)
            workers_.emplace_back([this, i, seen = generation_.load()] { work(i, seen); });
    }

    // Calls fn(begin, end) on disjoint chunks covering [0, n), one chunk per
    // thread, and returns when all are done. Exceptions are rethrown here.
    // Called from inside a chunk, it runs the whole range on that thread.
    void parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn) {
        if (n == 0) return;
        const std::size_t parts = std::min(size(), n);
        if (parts == 1 || in_chunk()) {
            fn(0, n);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(m_);
            job_ = &fn;
            n_ = n;
            parts_ = parts;
            pending_ = parts - 1;
            error_ = nullptr;
            ++generation_;
        }
        cv_.notify_all();
        run_chunk(0);
        spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; });
        std::unique_lock<std::mutex> lock(m_);
        finished_.wait(lock, [this] { return pending_ == 0; });
        job_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

private:
    static bool& in_chunk() {
        thread_local bool inside = false;
        return inside;
    }

    void run_chunk(std::size_t part) {
        const std::size_t begin = n_ * part / parts_, end = n_ * (part + 1) / parts_;
        try {
            in_chunk() = true;
            if (begin < end) (*job_)(begin, end);
            in_chunk() = false;
        } catch (...) {
            in_chunk() = false;
            std::lock_guard<std::mutex> lock(m_);
            if (!error_) error_ = std::current_exception();
        }
    }

    // Polls `ready` for up to kSpin; the caller then takes the lock and
    // waits on its condition variable as usual (at once if ready by then).
    template <class Ready>
    static void spin_until(const Ready& ready) {
        const auto until = std::chrono::steady_clock::now() + kSpin;
        for (;;) {
            for (int i = 0; i < 64; ++i) {
                if (ready()) return;
#if defined(__x86_64__) || defined(__i386__)
                _mm_pause();
#endif
            }
            if (std::chrono::steady_clock::now() >= until) return;
        }
    }

    void work(std::size_t index, std::size_t seen) {
        for (;;) {
            spin_until([&] { return done_.load(std::memory_order_acquire) ||
                                    generation_.load(std::memory_order_acquire) != seen; });
            {
                std::unique_lock<std::mutex> lock(m_);
                cv_.wait(lock, [&] { return done_ || generation_ != seen; });
                if (done_) return;
                seen = generation_;
                if (index >= parts_) continue;
            }
            run_chunk(index);
            {
                std::lock_guard<std::mutex> lock(m_);
                --pending_;
            }
            finished_.notify_one();
        }
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lock(m_);
            done_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    std::vector<std::thread> workers_;
    std::mutex m_;
    std::condition_variable cv_, finished_;
    const std::function<void(std::size_t, std::size_t)>* job_ = nullptr;
    std::size_t n_ = 0, parts_ = 1;
    // Written under m_; atomic so that waiting threads may poll them.
    std::atomic<std::size_t> pending_{0}, generation_{0};
    std::atomic<bool> done_{false};
    std::exception_ptr error_;
};

// The process-wide pool used by the fast kernels.
inline ThreadPool& thread_pool() {
    static ThreadPool pool;
    return pool;
}

}  // namespace mplug_owl2
