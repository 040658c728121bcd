// The part of Python's pickle format that a PyTorch state dict uses
// (protocol 2, as torch.save writes it, plus the protocol 3-4 opcodes a
// newer writer may emit). The machine never calls Python: the only globals it
// accepts are the handful torch.save names (OrderedDict, the tensor and
// parameter rebuild functions, the typed storage classes), and it builds
// their results itself. Objects live in one arena and refer to each other by
// index, so nesting costs no C++ stack and cycles cost nothing; the mark
// stack, the value stack, the memo and every length are bounded and checked
// against the bytes that are really there.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "tensor_source.hpp"

namespace mplug_owl2 {
namespace pickle {

using Ref = std::uint32_t;

enum class Kind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor };

inline const char* kind_name(Kind k) {
    switch (k) {
        case Kind::None: return "None";
        case Kind::Bool: return "bool";
        case Kind::Int: return "int";
        case Kind::Float: return "float";
        case Kind::String: return "str";
        case Kind::Bytes: return "bytes";
        case Kind::Tuple: return "tuple";
        case Kind::List: return "list";
        case Kind::Dict: return "dict";
        case Kind::Global: return "global";
        case Kind::Storage: return "storage";
        case Kind::Tensor: return "tensor";
    }
    return "?";
}

// One unpickled value. Only the fields of its kind are meaningful.
struct Object {
    Kind kind = Kind::None;
    std::int64_t i = 0;     // Bool, Int; Storage: element count
    double f = 0;           // Float
    std::string s;          // String, Bytes; Global: "module.name"; Storage: key
    std::vector<Ref> items; // Tuple, List; Dict: key, value, key, value, ...
    DType dtype = DType::F32;            // Storage
    Ref storage = 0;                     // Tensor
    std::uint64_t offset = 0;            // Tensor: storage offset, in elements
    std::vector<std::uint64_t> size, stride;  // Tensor
};

// Storage classes named in persistent ids, by the dtype of their elements.
inline bool storage_dtype(const std::string& global, DType& out) {
    static const std::pair<const char*, DType> table[] = {
        {"torch.HalfStorage", DType::F16},  {"torch.FloatStorage", DType::F32}, {"torch.BFloat16Storage", DType::BF16},
        {"torch.DoubleStorage", DType::F64}, {"torch.LongStorage", DType::I64}, {"torch.IntStorage", DType::I32},
        {"torch.ShortStorage", DType::I16}, {"torch.CharStorage", DType::I8},   {"torch.ByteStorage", DType::U8},
        {"torch.BoolStorage", DType::BOOL}};
    for (const auto& e : table)
        if (global == e.first) {
            out = e.second;
            return true;
        }
    return false;
}

inline bool allowed_global(const std::string& g) {
    DType unused;
    return g == "collections.OrderedDict" || g == "torch._utils._rebuild_tensor_v2" ||
           g == "torch._utils._rebuild_parameter" || g == "torch._utils._rebuild_parameter_with_state" ||
           storage_dtype(g, unused);
}

// Runs a pickle program and keeps its objects. `where` names the file and
// member for error messages.
class Machine {
public:
    static constexpr std::size_t kMaxMarks = 1000;       // nested MARKs
    static constexpr std::size_t kMaxStack = 1u << 24;   // values on the stack
    static constexpr std::size_t kMaxMemo = 1u << 24;    // memo entries
    static constexpr std::size_t kMaxObjects = 1u << 21;  // ~60000 tensors' worth
    static constexpr std::size_t kMaxTensorRank = 64;

    Machine(const std::uint8_t* data, std::size_t n, std::string where) : d_(data), n_(n), where_(std::move(where)) {
        run();
    }

    const Object& at(Ref r) const { return objects_[r]; }
    Ref result() const { return result_; }

private:
    // ---- error reporting ------------------------------------------------------
    template <class... A>
    [[noreturn]] void bad(A&&... why) const {
        char op[8];
        std::snprintf(op, sizeof op, "0x%02x", static_cast<unsigned>(op_));
        fail(where_, ": pickle opcode ", op, " at byte ", op_pos_, ": ", std::forward<A>(why)...);
    }

    // ---- reading the program ----------------------------------------------------
    const std::uint8_t* need(std::size_t k) {
        if (n_ - pos_ < k) bad("needs ", k, " more bytes, the data ends ", n_ - pos_, " bytes later");
        const std::uint8_t* p = d_ + pos_;
        pos_ += k;
        return p;
    }
    std::uint64_t uint_le(std::size_t k) {
        const std::uint8_t* p = need(k);
        std::uint64_t v = 0;
        for (std::size_t i = k; i-- > 0;) v = (v << 8) | p[i];
        return v;
    }
    std::string text(std::uint64_t len) {
        if (len > n_ - pos_) bad("a string of ", len, " bytes runs past the end of the data (", n_ - pos_, " left)");
        const std::uint8_t* p = need(static_cast<std::size_t>(len));
        return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(len));
    }
    std::string line() {  // GLOBAL's newline-terminated module and name
        const void* nl = std::memchr(d_ + pos_, '\n', n_ - pos_);
        if (!nl) bad("unterminated GLOBAL name");
        const std::size_t len = static_cast<const std::uint8_t*>(nl) - (d_ + pos_);
        std::string s = text(len);
        ++pos_;
        return s;
    }

    // ---- objects and the stack -------------------------------------------------
    Ref make(Object o) {
        if (objects_.size() >= kMaxObjects) bad("more than ", kMaxObjects, " objects");
        objects_.push_back(std::move(o));
        return static_cast<Ref>(objects_.size() - 1);
    }
    Ref make(Kind k) {
        Object o;
        o.kind = k;
        return make(std::move(o));
    }
    void push(Ref r) {
        if (stack_.size() >= kMaxStack) bad("more than ", kMaxStack, " values on the stack");
        stack_.push_back(r);
    }
    Ref pop() {
        if (stack_.size() <= floor()) bad("stack underflow");
        const Ref r = stack_.back();
        stack_.pop_back();
        return r;
    }
    Ref& top() {
        if (stack_.size() <= floor()) bad("stack underflow");
        return stack_.back();
    }
    std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
    // The values above the last MARK, which is removed.
    std::vector<Ref> pop_mark() {
        if (marks_.empty()) bad("no MARK to pop to");
        const std::size_t m = marks_.back();
        marks_.pop_back();
        std::vector<Ref> v(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
        stack_.resize(m);
        return v;
    }
    Object& expect(Ref r, Kind k, const char* what) {
        if (objects_[r].kind != k) bad(what, " must be a ", kind_name(k), ", found a ", kind_name(objects_[r].kind));
        return objects_[r];
    }
    std::uint64_t expect_count(Ref r, const char* what) {
        const Object& o = objects_[r];
        if (o.kind != Kind::Int || o.i < 0) bad(what, " must be a non-negative int");
        return static_cast<std::uint64_t>(o.i);
    }
    void memo_put(std::uint64_t idx) {
        if (idx >= kMaxMemo) bad("memo index ", idx, " exceeds the limit of ", kMaxMemo);
        memo_[static_cast<std::uint32_t>(idx)] = top();
    }
    Ref memo_get(std::uint64_t idx) {
        auto it = memo_.find(static_cast<std::uint32_t>(idx));
        if (idx >= kMaxMemo || it == memo_.end()) bad("memo entry ", idx, " was never stored");
        return it->second;
    }
    void set_items(Ref dict, const std::vector<Ref>& kv) {
        if (kv.size() % 2) bad("SETITEMS with an odd number of values");
        Object& o = expect(dict, Kind::Dict, "the target of SETITEM");
        o.items.insert(o.items.end(), kv.begin(), kv.end());
    }
    void append_items(Ref list, const std::vector<Ref>& v) {
        Object& o = expect(list, Kind::List, "the target of APPEND");
        o.items.insert(o.items.end(), v.begin(), v.end());
    }

    // ---- the globals torch.save uses -------------------------------------------
    // REDUCE: calls `fn` (a whitelisted global) with the tuple `args`.
    Ref call(Ref fn, Ref args_ref) {
        const std::string name = expect(fn, Kind::Global, "the callable of REDUCE").s;
        const std::vector<Ref> args = expect(args_ref, Kind::Tuple, "the arguments of REDUCE").items;
        if (name == "collections.OrderedDict") {
            if (!args.empty()) bad("OrderedDict called with arguments");
            return make(Kind::Dict);
        }
        if (name == "torch._utils._rebuild_tensor_v2") {
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            if (args.size() != 6 && args.size() != 7) bad("_rebuild_tensor_v2 takes 6 or 7 arguments, got ", args.size());
            expect(args[0], Kind::Storage, "the storage of a tensor");
            Object t;
            t.kind = Kind::Tensor;
            t.storage = args[0];
            t.offset = expect_count(args[1], "a storage offset");
            const auto& size = expect(args[2], Kind::Tuple, "a tensor size").items;
            const auto& stride = expect(args[3], Kind::Tuple, "a tensor stride").items;
            if (size.size() != stride.size())
                bad("a tensor has ", size.size(), " sizes but ", stride.size(), " strides");
            if (size.size() > kMaxTensorRank) bad("a tensor of rank ", size.size());
            for (Ref r : size) t.size.push_back(expect_count(r, "a tensor size"));
            for (Ref r : stride) t.stride.push_back(expect_count(r, "a tensor stride"));
            return make(std::move(t));
        }
        if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
            // (data, requires_grad, backward_hooks[, state]): the parameter is its data.
            if (args.empty()) bad(name, " called without arguments");
            expect(args[0], Kind::Tensor, "the data of a parameter");
            return args[0];
        }
        bad("global ", name, " cannot be called");
    }

    // BINPERSID: ('storage', storage class, key, location, element count).
    Ref persistent(Ref pid) {
        const auto& t = expect(pid, Kind::Tuple, "a persistent id").items;
        if (t.size() != 5 || objects_[t[0]].kind != Kind::String || objects_[t[0]].s != "storage")
            bad("persistent id is not ('storage', type, key, location, size)");
        const std::string& type = expect(t[1], Kind::Global, "a storage type").s;
        Object s;
        s.kind = Kind::Storage;
        if (!storage_dtype(type, s.dtype)) bad("unsupported storage type ", type);
        s.s = expect(t[2], Kind::String, "a storage key").s;
        expect(t[3], Kind::String, "a storage location");
        s.i = static_cast<std::int64_t>(expect_count(t[4], "a storage size"));
        return make(std::move(s));
    }

    // ---- the machine -----------------------------------------------------------
    void run() {
        objects_.reserve(64);
        for (;;) {
            op_pos_ = pos_;
            if (pos_ >= n_) bad("the data ends without STOP");
            op_ = d_[pos_++];
            switch (op_) {
                case 0x80: {  // PROTO
                    const std::uint64_t v = uint_le(1);
                    if (v < 2 || v > 5) bad("unsupported pickle protocol ", v);
                    break;
                }
                case 0x95: uint_le(8); break;  // FRAME: the frame length is not needed
                case '.': {                     // STOP
                    result_ = pop();
                    return;
                }
                case '(':  // MARK
                    if (marks_.size() >= kMaxMarks) bad("more than ", kMaxMarks, " nested MARKs");
                    marks_.push_back(stack_.size());
                    break;
                case '0': pop(); break;           // POP
                case '1': pop_mark(); break;      // POP_MARK
                case '2': push(top()); break;     // DUP
                case 'N': push(make(Kind::None)); break;
                case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
                    Object o;
                    o.kind = Kind::Bool;
                    o.i = op_ == 0x88;
                    push(make(std::move(o)));
                    break;
                }
                case 'J': case 'K': case 'M': case 0x8a: {  // BININT, BININT1, BININT2, LONG1
                    Object o;
                    o.kind = Kind::Int;
                    if (op_ == 'J') o.i = static_cast<std::int32_t>(uint_le(4));
                    else if (op_ == 'K') o.i = static_cast<std::int64_t>(uint_le(1));
                    else if (op_ == 'M') o.i = static_cast<std::int64_t>(uint_le(2));
                    else {
                        const std::uint64_t len = uint_le(1);
                        if (len > 8) bad("LONG1 of ", len, " bytes does not fit 64 bits");
                        std::uint64_t v = uint_le(static_cast<std::size_t>(len));
                        if (len > 0 && len < 8 && (v >> (8 * len - 1)) & 1u) v |= ~std::uint64_t(0) << (8 * len);
                        o.i = static_cast<std::int64_t>(v);
                    }
                    push(make(std::move(o)));
                    break;
                }
                case 'G': {  // BINFLOAT: big-endian double
                    const std::uint8_t* p = need(8);
                    std::uint64_t bits = 0;
                    for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
                    Object o;
                    o.kind = Kind::Float;
                    std::memcpy(&o.f, &bits, 8);
                    push(make(std::move(o)));
                    break;
                }
                case 'X': case 0x8c: case 0x8d:   // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                case 'T': case 'U':               // BINSTRING, SHORT_BINSTRING
                case 'B': case 'C': case 0x8e: {  // BINBYTES, SHORT_BINBYTES, BINBYTES8
                    const bool short_len = op_ == 0x8c || op_ == 'U' || op_ == 'C';
                    const bool long_len = op_ == 0x8d || op_ == 0x8e;
                    Object o;
                    o.kind = (op_ == 'B' || op_ == 'C' || op_ == 0x8e) ? Kind::Bytes : Kind::String;
                    o.s = text(uint_le(short_len ? 1 : long_len ? 8 : 4));
                    push(make(std::move(o)));
                    break;
                }
                case ')': push(make(Kind::Tuple)); break;  // EMPTY_TUPLE
                case ']': push(make(Kind::List)); break;   // EMPTY_LIST
                case '}': push(make(Kind::Dict)); break;   // EMPTY_DICT
                case 't': case 0x85: case 0x86: case 0x87: {  // TUPLE, TUPLE1, TUPLE2, TUPLE3
                    Object o;
                    o.kind = Kind::Tuple;
                    if (op_ == 't') o.items = pop_mark();
                    else {
                        o.items.resize(op_ - 0x84u);
                        for (std::size_t k = o.items.size(); k-- > 0;) o.items[k] = pop();
                    }
                    push(make(std::move(o)));
                    break;
                }
                case 'l': {  // LIST
                    Object o;
                    o.kind = Kind::List;
                    o.items = pop_mark();
                    push(make(std::move(o)));
                    break;
                }
                case 'd': {  // DICT
                    Object o;
                    o.kind = Kind::Dict;
                    o.items = pop_mark();
                    if (o.items.size() % 2) bad("DICT with an odd number of values");
                    push(make(std::move(o)));
                    break;
                }
                case 'a': {  // APPEND
                    const Ref v = pop();
                    append_items(top(), {v});
                    break;
                }
                case 'e': {  // APPENDS
                    const std::vector<Ref> v = pop_mark();
                    append_items(top(), v);
                    break;
                }
                case 's': {  // SETITEM
                    const Ref v = pop();
                    const Ref k = pop();
                    set_items(top(), {k, v});
                    break;
                }
                case 'u': {  // SETITEMS
                    const std::vector<Ref> kv = pop_mark();
                    set_items(top(), kv);
                    break;
                }
                case 'q': memo_put(uint_le(1)); break;  // BINPUT
                case 'r': memo_put(uint_le(4)); break;  // LONG_BINPUT
                case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
                case 'h': push(memo_get(uint_le(1))); break;  // BINGET
                case 'j': push(memo_get(uint_le(4))); break;  // LONG_BINGET
                case 'c': {  // GLOBAL
                    std::string module = line();
                    std::string name = line();
                    Object o;
                    o.kind = Kind::Global;
                    o.s = module + "." + name;
                    if (!allowed_global(o.s)) bad("global ", o.s, " is not one that a state dict uses");
                    push(make(std::move(o)));
                    break;
                }
                case 0x93: {  // STACK_GLOBAL
                    const Ref name = pop();
                    const Ref module = pop();
                    Object o;
                    o.kind = Kind::Global;
                    o.s = expect(module, Kind::String, "a module name").s + "." +
                          expect(name, Kind::String, "a global name").s;
                    if (!allowed_global(o.s)) bad("global ", o.s, " is not one that a state dict uses");
                    push(make(std::move(o)));
                    break;
                }
                case 'R': {  // REDUCE
                    const Ref args = pop();
                    const Ref fn = pop();
                    push(call(fn, args));
                    break;
                }
                case 'Q': {  // BINPERSID
                    const Ref pid = pop();
                    push(persistent(pid));
                    break;
                }
                case 'b': {  // BUILD: only an OrderedDict's attributes (_metadata), which are not needed
                    const Ref state = pop();
                    (void)state;
                    expect(top(), Kind::Dict, "the target of BUILD");
                    break;
                }
                default: bad("opcode not supported in a state dict");
            }
        }
    }

    const std::uint8_t* d_;
    std::size_t n_;
    std::string where_;
    std::size_t pos_ = 0, op_pos_ = 0;
    std::uint8_t op_ = 0;
    std::vector<Object> objects_;
    std::vector<Ref> stack_;
    std::vector<std::size_t> marks_;
    std::unordered_map<std::uint32_t, Ref> memo_;
    Ref result_ = 0;
};

}  // namespace pickle
}  // namespace mplug_owl2
