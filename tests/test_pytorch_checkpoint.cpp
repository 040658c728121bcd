// The PyTorch checkpoint reader against files written by torch.save
// (tests/fixtures/torch, made by make_fixtures.py with torch 1.13; the
// expected bytes of every tensor come from torch itself), its refusals, its
// behaviour on damaged archives and pickles, and the writer's round trip.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mplug_owl2/io/checkpoint.hpp"
#include "mplug_owl2/io/pytorch_checkpoint.hpp"
#include "mplug_owl2/io/pytorch_writer.hpp"

using namespace mplug_owl2;

namespace {

const std::string kTorch = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/torch/";
const std::string kTmp = std::string(MPLUG_OWL2_TEST_TMP) + "/";

nlohmann::json expected() {
    std::ifstream in(kTorch + "expected.json");
    return nlohmann::json::parse(in);
}

std::vector<std::uint8_t> from_hex(const std::string& h) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<std::uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
    return out;
}

std::vector<std::uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::uint8_t> bytes_of(const TensorInfo& t) { return std::vector<std::uint8_t>(t.data, t.data + t.nbytes); }

// The message of the Error that opening `path` throws ("" if none).
std::string open_error(const std::string& path) {
    try {
        PyTorchCheckpoint c(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// An archive laid out as torch.save does, around a hand-written pickle.
std::string archive(const std::string& name, const std::string& pickle,
                    const std::vector<std::pair<std::string, std::vector<std::uint8_t>>>& storages = {}) {
    const std::string path = kTmp + name + ".bin";
    ZipWriter z(path);
    z.add(name + "/data.pkl", pickle);
    for (const auto& s : storages) z.add(name + "/data/" + s.first, s.second.data(), s.second.size());
    z.add(name + "/version", std::string("3\n"));
    z.finish();
    return path;
}

// Pickle pieces, written by hand from the format's definition.
std::string bin1(int v) { return std::string("K") + static_cast<char>(v); }
std::string str(const std::string& s) {
    std::string o = "X";
    for (int i = 0; i < 4; ++i) o += static_cast<char>((s.size() >> (8 * i)) & 0xff);
    return o + s;
}
// {"w": _rebuild_tensor_v2(('storage', <type>, '0', 'cpu', numel), offset, size, stride, False, OrderedDict())}
std::string tensor_pickle(const std::string& storage_type, int numel, int offset, const std::vector<int>& size,
                          const std::vector<int>& stride, int nargs = 6) {
    std::string o = "\x80\x02}(";
    o += str("w") + "ctorch._utils\n_rebuild_tensor_v2\n(";
    o += "(" + str("storage") + "ctorch\n" + storage_type + "\n" + str("0") + str("cpu") + bin1(numel) + "tQ";
    o += bin1(offset) + "(";
    for (int s : size) o += bin1(s);
    o += "t(";
    for (int s : stride) o += bin1(s);
    o += "t\x89";                                   // requires_grad
    if (nargs >= 6) o += "ccollections\nOrderedDict\n)R";  // backward hooks
    if (nargs == 7) o += "N";                        // metadata
    o += "tRu.";
    return o;
}

}  // namespace

TEST_CASE("every tensor of the torch fixtures has torch's dtype shape and bytes", "[pytorch]") {
    const auto exp = expected();
    for (auto file = exp.begin(); file != exp.end(); ++file) {
        INFO("file " << file.key());
        PyTorchCheckpoint ckpt(kTorch + file.key());
        std::vector<std::string> want;
        for (auto t = file.value().begin(); t != file.value().end(); ++t) want.push_back(t.key());
        CHECK(ckpt.names() == want);
        for (auto t = file.value().begin(); t != file.value().end(); ++t) {
            INFO("tensor " << t.key());
            const TensorInfo* info = ckpt.find(t.key());
            REQUIRE(info != nullptr);
            CHECK(std::string(dtype_name(info->dtype)) == t.value()["dtype"].get<std::string>());
            CHECK(info->shape == t.value()["shape"].get<Shape>());
            CHECK(bytes_of(*info) == from_hex(t.value()["hex"].get<std::string>()));
            CHECK(info->nbytes == shape_numel(info->shape) * dtype_size(info->dtype));
        }
        CHECK(ckpt.find("absent") == nullptr);
        CHECK(ckpt.origin("anything") == kTorch + file.key());
    }
}

TEST_CASE("contiguous views point into the shared storage and other views are copies", "[pytorch]") {
    PyTorchCheckpoint ckpt(kTorch + "shared.bin");
    const TensorInfo& a = *ckpt.find("a");
    // a[1] is a contiguous run of a's storage, 4 floats in.
    CHECK(ckpt.find("a_row")->data == a.data + 4 * sizeof(float));
    // The same tensor under two names is one storage.
    CHECK(ckpt.find("b")->data == ckpt.find("b_again")->data);
    // a.t() is gathered into its own buffer.
    const std::uint8_t* t = ckpt.find("a_t")->data;
    CHECK((t < a.data || t >= a.data + a.nbytes));
    CHECK(ckpt.archive_name() == "shared");
}

TEST_CASE("fp32 and fp64 rounding to fp16 and bf16 matches torch bit for bit", "[pytorch][half]") {
    PyTorchCheckpoint ckpt(kTorch + "rounding.bin");
    for (const char* src : {"x32", "x64"})
        for (DType to : {DType::F16, DType::BF16}) {
            const std::string want = std::string(src) + (to == DType::F16 ? "_f16" : "_bf16");
            INFO(src << " -> " << want);
            DType stored;
            const auto got = tensor_bytes_as(*ckpt.find(src), to, stored);
            CHECK(stored == to);
            CHECK(got == bytes_of(*ckpt.find(want)));
        }
    // The conversion functions themselves, element by element.
    const TensorInfo& x = *ckpt.find("x32");
    const TensorInfo& h = *ckpt.find("x32_f16");
    const TensorInfo& b = *ckpt.find("x32_bf16");
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < shape_numel(x.shape); ++i) {
        float f;
        std::uint16_t hv, bv;
        std::memcpy(&f, x.data + 4 * i, 4);
        std::memcpy(&hv, h.data + 2 * i, 2);
        std::memcpy(&bv, b.data + 2 * i, 2);
        mismatches += float_to_fp16(f) != hv;
        mismatches += float_to_bf16(f) != bv;
    }
    CHECK(mismatches == 0);
}

TEST_CASE("refused formats and objects say what they are", "[pytorch][errors]") {
    CHECK_THAT(open_error(kTorch + "legacy.bin"), Catch::Contains("legacy PyTorch format"));
    CHECK_THAT(open_error(kTorch + "torchscript.pt"), Catch::Contains("TorchScript"));
    CHECK_THAT(open_error(kTorch + "deflated.bin"), Catch::Contains("member basic/data.pkl is compressed"));
    CHECK_THAT(open_error(kTorch + "list.bin"), Catch::Contains("is a list, expected a dict of tensors"));
    CHECK_THAT(open_error(kTorch + "nested.bin"), Catch::Contains("entry state_dict is a dict, expected a tensor"));
    CHECK_THAT(open_error(kTorch + "with_int.bin"), Catch::Contains("entry step is a int, expected a tensor"));
    CHECK_THAT(open_error(std::string(MPLUG_OWL2_REFERENCE_DIR) + "/tiny/model.safetensors"),
               Catch::Contains("safetensors"));
    CHECK_THAT(open_error(kTorch + "expected.json"), Catch::Contains("not a PyTorch checkpoint"));
    CHECK_THAT(open_error(kTorch + "no_such_file.bin"), Catch::Contains("cannot open"));
}

TEST_CASE("damaged archives throw errors naming what is wrong", "[pytorch][errors]") {
    const auto good = read_file(kTorch + "basic.bin");
    const std::string path = kTmp + "damaged.bin";
    auto with = [&](auto edit) {
        auto b = good;
        edit(b);
        write_file(path, b);
        return open_error(path);
    };
    auto find_sig = [&](const std::vector<std::uint8_t>& b, std::uint32_t sig) {
        for (std::size_t p = b.size() - 4; p-- > 0;)
            if (zip_detail::le(b.data() + p, 4) == sig) return p;
        return std::size_t(0);
    };
    const std::size_t eocd = find_sig(good, zip_detail::kEndSig);
    const std::size_t cd = static_cast<std::size_t>(zip_detail::le(good.data() + eocd + 16, 4));

    CHECK_THAT(with([&](auto& b) { b[eocd] = 'X'; }), Catch::Contains("no end-of-central-directory record"));
    // torch.save always writes the ZIP64 end record and its locator; their fields are the ones used.
    const std::size_t end64 = find_sig(good, zip_detail::kEnd64Sig);
    const std::size_t locator = find_sig(good, zip_detail::kEnd64LocatorSig);
    REQUIRE(end64 > 0);
    REQUIRE(locator == eocd - 20);
    CHECK_THAT(with([&](auto& b) { b[end64 + 49] = 0xff; }), Catch::Contains("runs past its end record"));
    CHECK_THAT(with([&](auto& b) { b[end64 + 32] = 0xff; }), Catch::Contains("entries cannot fit"));
    CHECK_THAT(with([&](auto& b) { b[locator + 8] -= 1; }), Catch::Contains("no ZIP64 end record at offset"));
    CHECK_THAT(with([&](auto& b) { b[locator + 14] = 0xff; }), Catch::Contains("ZIP64 end record offset"));
    CHECK_THAT(with([&](auto& b) { b[cd] = 'X'; }), Catch::Contains("central directory entry 0 is malformed"));
    CHECK_THAT(with([&](auto& b) { b[cd + 42] += 1; }), Catch::Contains("no local header at offset"));
    CHECK_THAT(with([&](auto& b) { b[cd + 24] += 1; }), Catch::Contains("stored member with different sizes"));
    // A flipped byte inside data.pkl.
    const std::size_t pkl = static_cast<std::size_t>(ZipArchive(kTorch + "basic.bin").find("basic/data.pkl")->data_offset);
    CHECK_THAT(with([&](auto& b) { b[pkl + 40] ^= 0x01; }), Catch::Contains("member basic/data.pkl fails its CRC-32 check"));
    // Cut inside the end record.
    CHECK_THAT(with([&](auto& b) { b.resize(eocd + 10); }), Catch::Contains("not a valid ZIP archive"));
}

TEST_CASE("truncated and corrupted archives never crash", "[pytorch][errors]") {
    const auto good = read_file(kTorch + "basic.bin");
    const std::string path = kTmp + "fuzzed.bin";
    std::size_t errors = 0, loaded = 0;
    auto attempt = [&](const std::vector<std::uint8_t>& b) {
        write_file(path, b);
        try {
            PyTorchCheckpoint c(path);
            for (const auto& n : c.names()) {
                const TensorInfo* t = c.find(n);
                volatile std::uint8_t sink = t->nbytes ? t->data[t->nbytes - 1] : 0;  // the bytes are readable
                (void)sink;
            }
            ++loaded;
        } catch (const Error&) {
            ++errors;
        }
    };
    // Every prefix: only the whole file is a valid archive.
    for (std::size_t n = 0; n < good.size(); n += 3) attempt(std::vector<std::uint8_t>(good.begin(), good.begin() + n));
    CHECK(loaded == 0);
    // Random bytes overwritten anywhere: either a clean load or an Error.
    std::mt19937 rng(7);
    for (int trial = 0; trial < 600; ++trial) {
        auto b = good;
        for (int k = 0; k < 1 + trial % 4; ++k) b[rng() % b.size()] = static_cast<std::uint8_t>(rng());
        attempt(b);
    }
    CHECK(errors > 600);
}

TEST_CASE("malformed pickles are rejected naming the opcode and byte", "[pytorch][errors]") {
    const std::vector<std::uint8_t> four_floats(16, 0);
    auto err = [&](const std::string& pkl, std::vector<std::pair<std::string, std::vector<std::uint8_t>>> st = {}) {
        return open_error(archive("p", pkl, st));
    };
    CHECK_THAT(err(std::string("\x80\x02\xff", 3)), Catch::Contains("pickle opcode 0xff at byte 2: opcode not supported"));
    CHECK_THAT(err("\x80\x06}."), Catch::Contains("unsupported pickle protocol 6"));
    CHECK_THAT(err("\x80\x02}"), Catch::Contains("the data ends without STOP"));
    CHECK_THAT(err("\x80\x02s."), Catch::Contains("stack underflow"));
    CHECK_THAT(err("\x80\x02h\x05."), Catch::Contains("memo entry 5 was never stored"));
    CHECK_THAT(err("\x80\x02X\xff\xff\xff\x7f"), Catch::Contains("runs past the end of the data"));
    CHECK_THAT(err("\x80\x02\x8a\x09" "123456789."), Catch::Contains("LONG1 of 9 bytes"));
    CHECK_THAT(err("\x80\x02" "cos\nsystem\n."), Catch::Contains("global os.system is not one that a state dict uses"));
    CHECK_THAT(err("\x80\x02" "cbuiltins\neval\n."), Catch::Contains("global builtins.eval"));
    CHECK_THAT(err("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R."), Catch::Contains("OrderedDict called with arguments"));
    CHECK_THAT(err("\x80\x02" "ctorch\nFloatStorage\n)R."), Catch::Contains("cannot be called"));
    CHECK_THAT(err("\x80\x02" "ctorch\nComplexFloatStorage\n."), Catch::Contains("global torch.ComplexFloatStorage"));
    CHECK_THAT(err("\x80\x02" "K\x01Q."), Catch::Contains("a persistent id must be a tuple"));
    CHECK_THAT(err("\x80\x02" "(K\x01K\x02tQ."), Catch::Contains("persistent id is not ('storage'"));
    CHECK_THAT(err("\x80\x02}K\x01K\x02u."), Catch::Contains("no MARK to pop to"));
    CHECK_THAT(err("\x80\x02K\x01K\x02" "b."), Catch::Contains("the target of BUILD must be a dict"));
    // Nesting: MARKs are bounded; lists nested 200000 deep cost no C++ stack.
    CHECK_THAT(err("\x80\x02" + std::string(5000, '(')), Catch::Contains("more than 1000 nested MARKs"));
    const std::size_t deep = 200000;
    CHECK_THAT(err("\x80\x02" + std::string(deep, ']') + std::string(deep - 1, 'a') + "."),
               Catch::Contains("is a list, expected a dict"));

    // Tensors whose storage does not hold them.
    CHECK_THAT(err(tensor_pickle("FloatStorage", 4, 0, {10}, {1}), {{"0", four_floats}}),
               Catch::Contains("tensor w: its view (offset 0, shape [10]) reaches element 9 of a storage of 4 elements"));
    CHECK_THAT(err(tensor_pickle("FloatStorage", 4, 3, {2}, {1}), {{"0", four_floats}}),
               Catch::Contains("reaches element 4 of a storage of 4"));
    CHECK_THAT(err(tensor_pickle("FloatStorage", 4, 0, {2, 2}, {3, 1}), {{"0", four_floats}}),
               Catch::Contains("reaches element 4"));
    CHECK_THAT(err(tensor_pickle("FloatStorage", 4, 0, {4}, {1})), Catch::Contains("member p/data/0 (storage 0) is missing"));
    CHECK_THAT(err(tensor_pickle("DoubleStorage", 4, 0, {4}, {1}), {{"0", four_floats}}),
               Catch::Contains("member p/data/0 holds 16 bytes, its storage of 4 F64 elements needs 32"));
    CHECK_THAT(err(tensor_pickle("FloatStorage", 4, 0, {4}, {1}, 5), {{"0", four_floats}}),
               Catch::Contains("pickle opcode 0x52"));
    // An expanded view far larger than its storage is not copied.
    std::string huge = tensor_pickle("FloatStorage", 4, 0, {1}, {0});
    huge.replace(huge.find("(K\x01t"), 4, std::string("(\x8a\x05\x00\x00\x00\x00\x01t", 9));
    CHECK_THAT(err(huge, {{"0", four_floats}}), Catch::Contains("too large to copy"));
    // The 7-argument form of newer torch is accepted, and the tensor reads back.
    PyTorchCheckpoint ok(archive("p7", tensor_pickle("HalfStorage", 8, 2, {2, 3}, {1, 2}, 7), {{"0", std::vector<std::uint8_t>(16, 1)}}));
    REQUIRE(ok.find("w") != nullptr);
    CHECK(ok.find("w")->shape == Shape{2, 3});
    CHECK(ok.find("w")->dtype == DType::F16);
}

TEST_CASE("the pickle machine's size and depth limits are errors naming the limit", "[pytorch][errors]") {
    auto err = [&](const std::string& pkl) { return open_error(archive("lim", pkl)); };
    const std::string where = kTmp + "lim.bin: member lim/data.pkl: pickle opcode ";
    // Objects: one past the arena's limit (each None is a new object).
    CHECK_THAT(err("\x80\x02" + std::string(pickle::Machine::kMaxObjects + 1, 'N') + "."),
               Catch::StartsWith(where + "0x4e at byte 2097154") && Catch::Contains("more than 2097152 objects"));
    // Values on the stack: DUP pushes without making objects.
    CHECK_THAT(err("\x80\x02N" + std::string(pickle::Machine::kMaxStack, '2') + "."),
               Catch::StartsWith(where + "0x32") && Catch::Contains("more than 16777216 values on the stack"));
    // Memo indices: LONG_BINPUT past the limit.
    CHECK_THAT(err(std::string("\x80\x02Nr\x00\x00\x00\x01.", 9)),
               Catch::Contains("memo index 16777216 exceeds the limit of 16777216"));
    CHECK_THAT(err(std::string("\x80\x02j\xff\xff\xff\xff.", 8)), Catch::Contains("memo entry 4294967295 was never stored"));
    // Nesting depth: one MARK past the limit, then exactly at it (which parses).
    CHECK_THAT(err("\x80\x02" + std::string(pickle::Machine::kMaxMarks + 1, '(')),
               Catch::StartsWith(where + "0x28 at byte 1002") && Catch::Contains("more than 1000 nested MARKs"));
    std::string nested = "\x80\x02";
    for (std::size_t k = 0; k < pickle::Machine::kMaxMarks; ++k) nested += "(";
    for (std::size_t k = 0; k < pickle::Machine::kMaxMarks; ++k) nested += "l";
    CHECK_THAT(err(nested + "."), Catch::Contains("is a list, expected a dict of tensors"));

    // Tensor geometry: rank, sizes and strides that do not fit, negative sizes.
    const std::vector<std::uint8_t> four_floats(16, 0);
    auto tensor_err = [&](std::string pkl) { return open_error(archive("geo", pkl, {{"0", four_floats}})); };
    CHECK_THAT(tensor_err(tensor_pickle("FloatStorage", 4, 0, std::vector<int>(65, 1), std::vector<int>(65, 1))),
               Catch::Contains("a tensor of rank 65"));
    std::string vast = tensor_pickle("FloatStorage", 4, 0, {1}, {1});
    vast.replace(vast.find("(K\x01t"), 4, std::string("(\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x02t", 12));  // size 2^57
    CHECK_THAT(tensor_err(vast), Catch::Contains("tensor w: size or stride too large"));
    std::string far = tensor_pickle("FloatStorage", 4, 0, {3}, {1});
    far.replace(far.rfind("(K\x01t"), 4, std::string("(\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x01t", 12));  // stride 2^56
    CHECK_THAT(tensor_err(far), Catch::Contains("tensor w: stride reaches too far"));
    std::string negative = tensor_pickle("FloatStorage", 4, 0, {1}, {1});
    negative.replace(negative.find("(K\x01t"), 4, std::string("(J\xff\xff\xff\xfft", 7));
    CHECK_THAT(tensor_err(negative), Catch::Contains("a tensor size must be a non-negative int"));
    CHECK_THAT(tensor_err(tensor_pickle("FloatStorage", 4, 0, {2, 3}, {1})), Catch::Contains("2 sizes but 1 strides"));
}

TEST_CASE("a data.pkl over the size limit is refused before it is read", "[pytorch][errors]") {
    // A stored member of kMaxPickle + 1 bytes, written as a hole: the file
    // is sparse, and the reader must refuse it from the central directory.
    const std::string path = kTmp + "big_pickle.bin";
    const std::string name = "big/data.pkl";
    const std::uint64_t n = PyTorchCheckpoint::kMaxPickle + 1;
    auto put = [](std::string& v, std::uint64_t x, int bytes) {
        for (int i = 0; i < bytes; ++i) v.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
    };
    std::string local, central, end;
    put(local, zip_detail::kLocalSig, 4);
    for (std::uint64_t x : {20, 0, 0, 0, 0x21}) put(local, x, 2);  // version, flags, stored, time, date
    put(local, 0, 4);                                              // CRC-32 (never reached)
    put(local, n, 4);
    put(local, n, 4);
    put(local, name.size(), 2);
    put(local, 0, 2);
    local += name;
    put(central, zip_detail::kCentralSig, 4);
    for (std::uint64_t x : {20, 20, 0, 0, 0, 0x21}) put(central, x, 2);
    put(central, 0, 4);
    put(central, n, 4);
    put(central, n, 4);
    put(central, name.size(), 2);
    for (int k = 0; k < 4; ++k) put(central, 0, 2);  // extra, comment, disk, internal attributes
    put(central, 0, 4);                              // external attributes
    put(central, 0, 4);                              // local header offset
    central += name;
    const std::uint64_t cd_offset = local.size() + n;
    put(end, zip_detail::kEndSig, 4);
    for (std::uint64_t x : {0, 0, 1, 1}) put(end, x, 2);
    put(end, central.size(), 4);
    put(end, cd_offset, 4);
    put(end, 0, 2);
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << local;
        out.seekp(static_cast<std::streamoff>(cd_offset));
        out << central << end;
        REQUIRE(out.good());
    }
    CHECK(open_error(path) == path + ": member big/data.pkl is 268435457 bytes, over the limit of 268435456");
    std::remove(path.c_str());
}

TEST_CASE("archives with two state dicts or big-endian data are refused", "[pytorch][errors]") {
    {
        ZipWriter z(kTmp + "two.bin");
        z.add("a/data.pkl", std::string("\x80\x02}."));
        z.add("b/data.pkl", std::string("\x80\x02}."));
        z.finish();
    }
    CHECK_THAT(open_error(kTmp + "two.bin"), Catch::Contains("two data.pkl members"));
    {
        ZipWriter z(kTmp + "big.bin");
        z.add("big/data.pkl", std::string("\x80\x02}."));
        z.add("big/byteorder", std::string("big"));
        z.finish();
    }
    CHECK_THAT(open_error(kTmp + "big.bin"), Catch::Contains("not little-endian"));
    {
        ZipWriter z(kTmp + "none.bin");
        z.add("x/other", std::string("1"));
        z.finish();
    }
    CHECK_THAT(open_error(kTmp + "none.bin"), Catch::Contains("without a <name>/data.pkl member"));
}

TEST_CASE("the PyTorch writer round-trips every dtype with and without ZIP64", "[pytorch][writer]") {
    PyTorchCheckpoint src(kTorch + "basic.bin");
    PyTorchCheckpoint half(kTorch + "half.bin");
    for (bool zip64 : {false, true}) {
        INFO("force_zip64 " << zip64);
        const std::string path = kTmp + (zip64 ? "roundtrip64.bin" : "roundtrip.bin");
        {
            PyTorchWriter w(path, zip64);
            for (const TensorSource* s : {static_cast<const TensorSource*>(&src), static_cast<const TensorSource*>(&half)})
                for (const auto& n : s->names()) {
                    const TensorInfo& t = *s->find(n);
                    w.add_bytes(n, t.dtype, t.shape, t.data, t.nbytes);
                }
            w.finish();
        }
        PyTorchCheckpoint back(path);
        CHECK(back.archive_name() == (zip64 ? "roundtrip64" : "roundtrip"));
        CHECK(back.names().size() == src.names().size() + half.names().size());
        for (const TensorSource* s : {static_cast<const TensorSource*>(&src), static_cast<const TensorSource*>(&half)})
            for (const auto& n : s->names()) {
                INFO(n);
                const TensorInfo& a = *s->find(n);
                const TensorInfo& b = *back.find(n);
                CHECK(a.dtype == b.dtype);
                CHECK(a.shape == b.shape);
                CHECK(bytes_of(a) == bytes_of(b));
                CHECK(reinterpret_cast<std::uintptr_t>(b.data) % 64 == 0);  // members aligned as torch aligns them
            }
        // ZIP64 records are there exactly when forced.
        const auto bytes = read_file(path);
        bool has_end64 = false;
        for (std::size_t p = 0; p + 4 <= bytes.size(); ++p) has_end64 |= zip_detail::le(bytes.data() + p, 4) == zip_detail::kEnd64Sig;
        CHECK(has_end64 == zip64);
        ZipArchive z(path);
        CHECK(z.find("roundtrip" + std::string(zip64 ? "64" : "") + "/version") != nullptr);
    }
    PyTorchWriter w(kTmp + "dup.bin");
    const float one = 1;
    w.add_bytes("x", DType::F32, {1}, reinterpret_cast<const std::uint8_t*>(&one), 4);
    CHECK_THROWS_WITH(w.add_bytes("x", DType::F32, {1}, reinterpret_cast<const std::uint8_t*>(&one), 4),
                      Catch::Contains("tensor x added twice"));
    CHECK_THROWS_WITH(w.add_bytes("y", DType::F32, {2}, reinterpret_cast<const std::uint8_t*>(&one), 4),
                      Catch::Contains("4 bytes for shape [2]"));
}

TEST_CASE("ZIP64 fields are read from the central directory", "[pytorch][zip]") {
    // A member whose sizes and offset sit only in the ZIP64 extra field.
    const std::string path = kTmp + "zip64.zip";
    const std::string payload = "hello, zip64";
    {
        ZipWriter z(path, /*force_zip64=*/true);
        z.add("a/x", std::string(100, 'x'));
        z.add("a/payload", payload);
        z.finish();
    }
    ZipArchive z(path);
    REQUIRE(z.members().size() == 2);
    const ZipMember* m = z.find("a/payload");
    REQUIRE(m != nullptr);
    CHECK(m->size == payload.size());
    CHECK(m->header_offset > 100);
    CHECK(std::string(reinterpret_cast<const char*>(z.data(*m)), m->size) == payload);
    CHECK_NOTHROW(z.check_crc(*m));
}
