// A progress line on stderr for the slow parts of a run (loading a large
// checkpoint, a long generation): one line rewritten in place ("\r") and
// cleared when the work is done, so it leaves nothing behind. It is shown
// only on a terminal; redirected output stays exactly the program's output.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <set>
#include <string>

#include "mplug_owl2/io/tensor_source.hpp"

namespace cli {

class Progress {
public:
    // Shown when `shown` (by default: when stderr is a terminal).
    explicit Progress(std::ostream& out = std::cerr, bool shown = ::isatty(STDERR_FILENO) == 1)
        : out_(out), shown_(shown) {}
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    ~Progress() { finish(); }

    // Replaces the line by `text`; the same text again writes nothing.
    void show(const std::string& text) {
        if (!shown_ || text == last_) return;
        out_ << "\r" << text << "\x1b[K" << std::flush;
        last_ = text;
    }
    // Clears the line, if one is shown.
    void finish() {
        if (last_.empty()) return;
        out_ << "\r\x1b[K" << std::flush;
        last_.clear();
    }
    bool shown() const { return shown_; }

private:
    std::ostream& out_;
    bool shown_;
    std::string last_;
};

// "label: 3.2 of 13.9 GB (23%)" for byte counts.
inline std::string bytes_progress(const std::string& label, std::size_t done, std::size_t total) {
    char text[128];
    std::snprintf(text, sizeof text, "%s: %.1f of %.1f GB (%d%%)", label.c_str(), double(done) / 1e9,
                  double(total) / 1e9, total ? int(100.0 * double(done) / double(total)) : 100);
    return text;
}

// A checkpoint seen through a progress line: each tensor the model looks up
// the first time counts as read. The line is shown only for checkpoints of
// at least kLarge bytes (smaller ones load in about a second).
class LoadProgress : public mplug_owl2::TensorSource {
public:
    static constexpr std::size_t kLarge = std::size_t(1) << 30;

    LoadProgress(std::shared_ptr<const mplug_owl2::TensorSource> inner, bool shown = ::isatty(STDERR_FILENO) == 1)
        : inner_(std::move(inner)) {
        for (const std::string& n : inner_->names()) total_ += inner_->find(n)->nbytes;
        line_ = std::make_unique<Progress>(std::cerr, shown && total_ >= kLarge);
    }
    std::vector<std::string> names() const override { return inner_->names(); }
    const mplug_owl2::TensorInfo* find(const std::string& name) const override {
        const mplug_owl2::TensorInfo* info = inner_->find(name);
        if (info && seen_.insert(name).second) {
            done_ += info->nbytes;
            line_->show(bytes_progress("loading the checkpoint", done_, total_));
        }
        return info;
    }
    std::string origin(const std::string& name) const override { return inner_->origin(name); }
    bool has(const std::string& name) const override { return inner_->has(name); }
    // Clears the line once the model is loaded.
    void finish() const { line_->finish(); }

private:
    std::shared_ptr<const mplug_owl2::TensorSource> inner_;
    std::size_t total_ = 0;
    mutable std::set<std::string> seen_;
    mutable std::size_t done_ = 0;
    std::unique_ptr<Progress> line_;
};

}  // namespace cli
