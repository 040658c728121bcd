// Errors of the library: one exception type whose message names the file,
// tensor, field or argument at fault and what was expected.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mplug_owl2 {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class A, class... R>
void append(std::ostringstream& s, A&& a, R&&... r) {
    s << std::forward<A>(a);
    append(s, std::forward<R>(r)...);
}
}  // namespace detail

// fail("tensor ", name, ": expected ", a, ", found ", b)
template <class... A>
[[noreturn]] void fail(A&&... parts) {
    std::ostringstream s;
    detail::append(s, std::forward<A>(parts)...);
    throw Error(s.str());
}

}  // namespace mplug_owl2
