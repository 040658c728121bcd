// The safetensors reader and writer: round trips, dtype conversion, and every
// malformation the reader must refuse with the file and tensor named.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <vector>
#include <fstream>

#include "mplug_owl2/io/safetensors.hpp"

using namespace mplug_owl2;

namespace {

std::string tmp(const std::string& name) { return std::string(MPLUG_OWL2_TEST_TMP) + "/" + name; }

// Writes a file made of the 8-byte header length, `header` and `data`.
std::string raw_file(const std::string& name, const std::string& header, const std::string& data,
                     std::uint64_t claimed_len = ~std::uint64_t(0)) {
    const std::string path = tmp(name);
    std::ofstream out(path, std::ios::binary);
    const std::uint64_t n = claimed_len == ~std::uint64_t(0) ? header.size() : claimed_len;
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << header << data;
    return path;
}

}  // namespace

TEST_CASE("safetensors round trip keeps dtypes shapes values and metadata", "[safetensors]") {
    SafetensorsWriter w;
    const double d[6] = {1.5, -2.25, 3.0, 1e-300, -0.0, 7.0};
    const float f[3] = {0.1f, 0.2f, -0.3f};
    const std::int64_t ids[4] = {1, -200, 5, 1LL << 40};
    const std::uint8_t px[2] = {0, 255};
    w.add("a.double", {2, 3}, d);
    w.add("b.float", {3}, f);
    w.add("c.ids", {4}, ids);
    w.add("d.u8", {1, 2}, px);
    w.add("e.empty", Shape{0, 4}, f);  // zero elements: nothing is read from f
    w.set_metadata("format", "pt");
    const std::string path = tmp("roundtrip.safetensors");
    w.write(path);

    SafetensorsFile r(path);
    CHECK(r.names().size() == 5);
    CHECK(r.metadata().at("format") == "pt");
    CHECK(r.find("a.double")->dtype == DType::F64);
    CHECK(r.find("a.double")->shape == Shape{2, 3});
    auto a = read_tensor<double>(r, "a.double");
    for (int i = 0; i < 6; ++i) CHECK(a.data()[i] == d[i]);
    auto b = read_tensor<double>(r, "b.float");
    CHECK(b(2) == double(-0.3f));
    auto c = read_tensor<std::int64_t>(r, "c.ids");
    CHECK(c(1) == -200);
    CHECK(c(3) == (1LL << 40));
    CHECK(read_tensor<int>(r, "d.u8")(0, 1) == 255);
    CHECK(r.find("e.empty")->nbytes == 0);
    CHECK(r.find("missing") == nullptr);
    // The data section starts 8-byte aligned.
    std::ifstream in(path, std::ios::binary);
    unsigned char len[8];
    in.read(reinterpret_cast<char*>(len), 8);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
    CHECK((8 + n) % 8 == 0);
}

TEST_CASE("F16 and BF16 tensors convert to float and double exactly", "[safetensors]") {
    const std::uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};   // 1, -2, 2^-24, 65504
    const std::uint16_t b[3] = {0x3f80, 0x4049, 0xbf00};           // 1, 3.140625, -0.5
    SafetensorsWriter w;
    w.add("h", DType::F16, {4}, h);
    w.add("b", DType::BF16, {3}, b);
    const std::string path = tmp("half.safetensors");
    w.write(path);
    SafetensorsFile r(path);
    auto hf = read_tensor<float>(r, "h");
    CHECK(hf(0) == 1.0f);
    CHECK(hf(1) == -2.0f);
    CHECK(hf(2) == std::ldexp(1.0f, -24));
    CHECK(hf(3) == 65504.0f);
    auto bd = read_tensor<double>(r, "b");
    CHECK(bd(1) == 3.140625);
    CHECK(bd(2) == -0.5);
}

TEST_CASE("the reader refuses malformed files and names the problem", "[safetensors][errors]") {
    using Catch::Contains;
    const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    const std::string eight(8, '\0');
    // Opening `p` throws mplug_owl2::Error (any other exception fails the
    // test) whose message starts with the file's path.
    auto refused = [](const std::string& p) {
        try {
            SafetensorsFile f(p);
        } catch (const Error& e) {
            const std::string msg = e.what();
            CHECK(msg.compare(0, p.size(), p) == 0);
            return msg;
        }
        return std::string("(no error)");
    };

    SECTION("shorter than the length field") {
        const std::string p = tmp("short.safetensors");
        std::ofstream(p, std::ios::binary) << "abc";
        CHECK_THAT(refused(p), Contains("3 bytes, shorter than the 8-byte header length"));
    }
    SECTION("header length past the end") {
        auto p = raw_file("hlen.safetensors", "{" + ok_entry + "}", eight, 1000);
        CHECK_THAT(refused(p), Contains("header length 1000 runs past the end of the file"));
    }
    SECTION("header length absurd") {
        auto p = raw_file("hhuge.safetensors", "{}", "", std::uint64_t(1) << 40);
        CHECK_THAT(refused(p), Contains("header length 1099511627776 exceeds the limit of 104857600"));
        auto q = raw_file("hmax.safetensors", "{}", "", ~std::uint64_t(0) - 1);
        CHECK_THAT(refused(q), Contains("exceeds the limit"));
    }
    SECTION("invalid JSON") {
        auto p = raw_file("json.safetensors", "{\"t\": [", eight);
        CHECK_THAT(refused(p), Contains("header is not valid JSON"));
        auto q = raw_file("utf8.safetensors", "{\"\xff\": 1}", "");
        CHECK_THAT(refused(q), Contains("header is not valid JSON"));
    }
    SECTION("header not an object") {
        auto p = raw_file("array.safetensors", "[1,2]", "");
        CHECK_THAT(refused(p), Contains("not a JSON object"));
    }
    SECTION("entry not an object") {
        auto p = raw_file("entry.safetensors", R"({"t":[1,2]})", "");
        CHECK_THAT(refused(p), Contains("tensor t: entry is not an object"));
    }
    SECTION("unknown dtype") {
        auto p = raw_file("dtype.safetensors", R"({"t":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", "ab");
        CHECK_THAT(refused(p), Contains("tensor t: unsupported dtype F8"));
        auto q = raw_file("dtype2.safetensors", R"({"t":{"dtype":7,"shape":[2],"data_offsets":[0,2]}})", "ab");
        CHECK_THAT(refused(q), Contains("tensor t: dtype missing or not a string"));
    }
    SECTION("shape and byte range disagree") {
        auto p = raw_file("size.safetensors", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight);
        CHECK_THAT(refused(p), Contains("tensor t: shape [3] of F32 needs 12 bytes, the data range holds 8"));
        auto q = raw_file("size16.safetensors", R"({"t":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,8]}})", eight);
        CHECK_THAT(refused(q), Contains("tensor t: shape [2, 3] of BF16 needs 12 bytes, the data range holds 8"));
    }
    SECTION("shape impossibly large") {
        auto p = raw_file("vast.safetensors",
                          R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight);
        CHECK_THAT(refused(p), Contains("tensor t: shape is impossibly large"));
    }
    SECTION("range past the end of the data") {
        auto p = raw_file("range.safetensors", R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight);
        CHECK_THAT(refused(p), Contains("tensor t: data range [0, 16) runs past the end of the data (8 bytes)"));
        auto q = raw_file("range2.safetensors",
                          R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})",
                          eight);
        CHECK_THAT(refused(q), Contains("tensor t: data range") && Contains("runs past the end of the data"));
    }
    SECTION("begin after end") {
        auto p = raw_file("order.safetensors", R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", eight);
        CHECK_THAT(refused(p), Contains("tensor t: data_offsets begin after they end"));
    }
    SECTION("overlapping tensors") {
        auto p = raw_file("overlap.safetensors",
                          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          eight);
        CHECK_THAT(refused(p), Contains("tensors' data ranges overlap at byte 4"));
        auto q = raw_file("same.safetensors",
                          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                          eight);
        CHECK_THAT(refused(q), Contains("tensors' data ranges overlap at byte 0"));
    }
    SECTION("negative or non-integer shape") {
        auto p = raw_file("neg.safetensors", R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight);
        CHECK_THAT(refused(p), Contains("tensor t: shape has an entry that is not a non-negative integer"));
        auto q = raw_file("frac.safetensors", R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})", eight);
        CHECK_THAT(refused(q), Contains("tensor t: shape has an entry that is not a non-negative integer"));
        auto r = raw_file("nested.safetensors", R"({"t":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", eight);
        CHECK_THAT(refused(r), Contains("tensor t: shape has an entry that is not a non-negative integer"));
    }
    SECTION("missing or mistyped fields") {
        auto p = raw_file("fields.safetensors", R"({"t":{"shape":[2],"data_offsets":[0,8]}})", eight);
        CHECK_THAT(refused(p), Contains("tensor t: dtype missing"));
        auto q = raw_file("offs.safetensors", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight);
        CHECK_THAT(refused(q), Contains("tensor t: data_offsets missing or not [begin, end]"));
        auto r = raw_file("offs2.safetensors", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}})", eight);
        CHECK_THAT(refused(r), Contains("tensor t: data_offsets are not non-negative integers"));
        auto s = raw_file("shape.safetensors", R"({"t":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", eight);
        CHECK_THAT(refused(s), Contains("tensor t: shape missing or not an array"));
    }
    SECTION("metadata must map strings to strings") {
        auto p = raw_file("meta.safetensors", R"({"__metadata__":{"a":1}})", "");
        CHECK_THAT(refused(p), Contains("__metadata__ field a is not a string"));
        auto q = raw_file("meta2.safetensors", R"({"__metadata__":[1]})", "");
        CHECK_THAT(refused(q), Contains("__metadata__ is not an object"));
    }
    SECTION("missing file") {
        CHECK_THAT(refused(tmp("does-not-exist.safetensors")), Contains("cannot open"));
    }
    SECTION("a well-formed file still opens") {
        auto p = raw_file("fine.safetensors", "{" + ok_entry + "}", eight);
        CHECK(SafetensorsFile(p).find("t")->shape == Shape{2});
    }
}

TEST_CASE("the writer leaves no partial file behind", "[safetensors]") {
    SafetensorsWriter w;
    const float f[1] = {1.f};
    w.add("x", {1}, f);
    CHECK_THROWS_WITH(w.write(tmp("no-such-dir/out.safetensors")), Catch::Contains("cannot open for writing"));
    std::ifstream probe(tmp("no-such-dir/out.safetensors.tmp"));
    CHECK_FALSE(probe.good());
    CHECK_THROWS_WITH(w.add_bytes("y", DType::F32, {2}, std::vector<std::uint8_t>(4)), Catch::Contains("tensor y"));
}

TEST_CASE("a written file's pages released from the cache read back the same", "[safetensors][mapped]") {
    SafetensorsWriter w;
    std::vector<float> v(1 << 16);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.5f - 7.f;
    w.add("w", {256, 256}, v.data());
    const std::string path = tmp("released.safetensors");
    w.write(path);
    release_cached_pages(path);
    const SafetensorsFile file(path);
    const auto back = read_tensor<float>(file, "w");
    REQUIRE(back.size() == v.size());
    CHECK(std::equal(v.begin(), v.end(), back.data()));
    CHECK_THROWS_WITH(release_cached_pages(tmp("no-such-file.safetensors")),
                      Catch::Contains("no-such-file.safetensors") && Catch::Contains("cannot open"));
}
