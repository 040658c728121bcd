// The activation recorder: installs a hook that copies every reported
// activation, under its official module name and official shape, and writes
// them to a safetensors file in the compute dtype. Off unless constructed;
// while paused it records nothing.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "../io/safetensors.hpp"
#include "hooks.hpp"

namespace mplug_owl2 {

template <class T>
class Recorder {
public:
    struct Record {
        Shape shape;
        std::vector<T> values;
    };

    explicit Recorder(Hooks<T>& hooks) : hooks_(hooks) {
        handle_ = hooks_.add([this](const std::string& name, Matrix<T>& value, const Shape& shape) {
            if (paused_ || records_.count(name)) return;  // the first report of a name is kept
            records_[name] = Record{shape, std::vector<T>(value.begin(), value.end())};
        });
    }
    ~Recorder() { hooks_.remove(handle_); }
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    void pause() { paused_ = true; }
    void resume() { paused_ = false; }

    const std::map<std::string, Record>& records() const { return records_; }
    bool contains(const std::string& name) const { return records_.count(name) != 0; }
    const Record& at(const std::string& name) const {
        auto it = records_.find(name);
        if (it == records_.end()) fail("recorder: no activation named ", name);
        return it->second;
    }

    // Adds every record to `out` in the compute dtype.
    void add_to(SafetensorsWriter& out) const {
        for (const auto& kv : records_) out.add(kv.first, kv.second.shape, kv.second.values.data());
    }
    void save(const std::string& path) const {
        SafetensorsWriter w;
        add_to(w);
        w.write(path);
    }

private:
    Hooks<T>& hooks_;
    int handle_ = -1;
    bool paused_ = false;
    std::map<std::string, Record> records_;
};

}  // namespace mplug_owl2
