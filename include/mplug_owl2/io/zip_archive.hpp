// ZIP archives as torch.save writes them (PyTorch >= 1.6): every member is
// stored uncompressed, so a tensor's bytes can be used in place from a memory
// map. The reader trusts only the central directory, checks every offset and
// size against the file, understands ZIP64 (a single 7B checkpoint is ~14 GB)
// and refuses compressed or encrypted members by name when they are read.
// The writer produces the same kind of archive, with each member's data
// aligned to 64 bytes as torch does.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "mapped_file.hpp"

namespace mplug_owl2 {

// CRC-32 (IEEE, as in ZIP), continued from `crc` for streaming use.
inline std::uint32_t crc32(const std::uint8_t* p, std::size_t n, std::uint32_t crc = 0) {
    static const std::array<std::uint32_t, 256> table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

namespace zip_detail {
constexpr std::uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr std::uint32_t kEnd64Sig = 0x06064b50, kEnd64LocatorSig = 0x07064b50;
constexpr std::uint16_t kZip64ExtraId = 0x0001, kPaddingExtraId = 0x4246;  // "FB", torch's padding

inline std::uint64_t le(const std::uint8_t* p, int bytes) {
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
}  // namespace zip_detail

struct ZipMember {
    std::string name;
    std::uint16_t method = 0;  // 0 stored, 8 deflate, ...
    std::uint16_t flags = 0;   // bit 0: encrypted
    std::uint32_t crc = 0;
    std::uint64_t compressed_size = 0;
    std::uint64_t size = 0;
    std::uint64_t header_offset = 0;  // of the local header
    std::uint64_t data_offset = 0;    // of the first data byte
};

class ZipArchive {
public:
    explicit ZipArchive(const std::string& path) : file_(path) { parse(); }

    const std::string& path() const { return file_.path(); }
    const std::vector<ZipMember>& members() const { return members_; }

    const ZipMember* find(const std::string& name) const {
        auto it = index_.find(name);
        return it == index_.end() ? nullptr : &members_[it->second];
    }

    // The bytes of a stored member, in place in the memory map.
    const std::uint8_t* data(const ZipMember& m) const {
        if (m.flags & 1u) fail(path(), ": member ", m.name, " is encrypted");
        if (m.method != 0)
            fail(path(), ": member ", m.name, " is compressed (ZIP method ", m.method,
                 "); only stored members are read, as torch.save writes them");
        return file_.data() + m.data_offset;
    }

    // Fails unless the member's bytes match the CRC-32 of the central directory.
    void check_crc(const ZipMember& m) const {
        const std::uint32_t c = crc32(data(m), static_cast<std::size_t>(m.size));
        if (c != m.crc) fail(path(), ": member ", m.name, " fails its CRC-32 check (data corrupted)");
    }

private:
    void parse() {
        using namespace zip_detail;
        const std::uint8_t* d = file_.data();
        const std::uint64_t size = file_.size();
        auto bad = [&](auto&&... why) { fail(path(), ": not a valid ZIP archive: ", why...); };
        if (size < 22) bad("shorter than an end-of-central-directory record (", size, " bytes)");

        // 1. The end-of-central-directory record: within the last 64 KiB + 22 bytes.
        std::uint64_t eocd = size;
        const std::uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
        for (std::uint64_t p = size - 22 + 1; p-- > lowest;)
            if (le(d + p, 4) == kEndSig && p + 22 + le(d + p + 20, 2) <= size) {
                eocd = p;
                break;
            }
        if (eocd == size) bad("no end-of-central-directory record");
        if (le(d + eocd + 4, 2) != 0 || le(d + eocd + 6, 2) != 0) bad("multi-disk archives are not supported");
        std::uint64_t entries = le(d + eocd + 10, 2);
        std::uint64_t cd_size = le(d + eocd + 12, 4);
        std::uint64_t cd_offset = le(d + eocd + 16, 4);
        std::uint64_t cd_limit = eocd;  // the central directory ends before this

        // 2. ZIP64: a locator just before the record points at the 64-bit record.
        if (eocd >= 20 && le(d + eocd - 20, 4) == kEnd64LocatorSig) {
            const std::uint64_t rec = le(d + eocd - 20 + 8, 8);
            if (rec > eocd - 20 || eocd - 20 - rec < 56) bad("ZIP64 end record offset ", rec, " is out of range");
            if (le(d + rec, 4) != kEnd64Sig) bad("no ZIP64 end record at offset ", rec);
            if (le(d + rec + 16, 4) != 0 || le(d + rec + 20, 4) != 0) bad("multi-disk archives are not supported");
            entries = le(d + rec + 32, 8);
            cd_size = le(d + rec + 40, 8);
            cd_offset = le(d + rec + 48, 8);
            cd_limit = rec;
        }
        if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
            bad("central directory [", cd_offset, ", +", cd_size, ") runs past its end record");
        if (entries > cd_size / 46) bad(entries, " entries cannot fit in a central directory of ", cd_size, " bytes");

        // 3. The central directory: one record per member.
        std::uint64_t p = cd_offset;
        const std::uint64_t cd_end = cd_offset + cd_size;
        members_.reserve(static_cast<std::size_t>(entries));
        for (std::uint64_t e = 0; e < entries; ++e) {
            if (cd_end - p < 46 || le(d + p, 4) != kCentralSig) bad("central directory entry ", e, " is malformed");
            ZipMember m;
            m.flags = static_cast<std::uint16_t>(le(d + p + 8, 2));
            m.method = static_cast<std::uint16_t>(le(d + p + 10, 2));
            m.crc = static_cast<std::uint32_t>(le(d + p + 16, 4));
            m.compressed_size = le(d + p + 20, 4);
            m.size = le(d + p + 24, 4);
            const std::uint64_t name_len = le(d + p + 28, 2), extra_len = le(d + p + 30, 2),
                                comment_len = le(d + p + 32, 2);
            std::uint64_t disk = le(d + p + 34, 2);
            m.header_offset = le(d + p + 42, 4);
            if (cd_end - p - 46 < name_len + extra_len + comment_len)
                bad("central directory entry ", e, " runs past the directory");
            m.name.assign(reinterpret_cast<const char*>(d + p + 46), static_cast<std::size_t>(name_len));
            // ZIP64 extra field: the 64-bit values of whichever fields hold their maximum.
            const std::uint8_t* x = d + p + 46 + name_len;
            const std::uint8_t* x_end = x + extra_len;
            while (x_end - x >= 4) {
                const std::uint64_t id = le(x, 2), len = le(x + 2, 2);
                if (static_cast<std::uint64_t>(x_end - x - 4) < len) bad("member ", m.name, ": extra field runs past its entry");
                if (id == kZip64ExtraId) {
                    const std::uint8_t* f = x + 4;
                    const std::uint8_t* f_end = f + len;
                    auto take = [&](std::uint64_t& v, int bytes) {
                        if (f_end - f < bytes) bad("member ", m.name, ": ZIP64 extra field is too short");
                        v = le(f, bytes);
                        f += bytes;
                    };
                    if (m.size == 0xffffffffu) take(m.size, 8);
                    if (m.compressed_size == 0xffffffffu) take(m.compressed_size, 8);
                    if (m.header_offset == 0xffffffffu) take(m.header_offset, 8);
                    if (disk == 0xffffu) take(disk, 4);
                }
                x += 4 + len;
            }
            if (disk != 0) bad("member ", m.name, " lies on another disk");
            p += 46 + name_len + extra_len + comment_len;

            // 4. Its local header: only its name and extra lengths are used.
            const std::uint64_t h = m.header_offset;
            if (h > cd_offset || cd_offset - h < 30 || le(d + h, 4) != kLocalSig)
                bad("member ", m.name, ": no local header at offset ", h);
            const std::uint64_t local_name = le(d + h + 26, 2), local_extra = le(d + h + 28, 2);
            if (cd_offset - h - 30 < local_name + local_extra) bad("member ", m.name, ": local header runs past the data");
            if (local_name != name_len || std::memcmp(d + h + 30, m.name.data(), name_len) != 0)
                bad("member ", m.name, ": local header names a different member");
            m.data_offset = h + 30 + local_name + local_extra;
            if (m.compressed_size > cd_offset - m.data_offset)
                bad("member ", m.name, ": its ", m.compressed_size, " bytes at offset ", m.data_offset,
                    " run past the data area");
            if (m.method == 0 && m.size != m.compressed_size)
                bad("member ", m.name, ": stored member with different sizes (", m.size, " and ", m.compressed_size, ")");
            if (!index_.emplace(m.name, members_.size()).second) bad("member ", m.name, " appears twice");
            members_.push_back(std::move(m));
        }
    }

    MappedFile file_;
    std::vector<ZipMember> members_;
    std::map<std::string, std::size_t> index_;
};

// Writes a ZIP archive of stored members, streaming each member to disk as it
// is added; `finish()` writes the central directory and moves the file into
// place (until then it lives under a temporary name). ZIP64 records are used
// where sizes or offsets need them, or everywhere with `force_zip64`.
class ZipWriter {
public:
    explicit ZipWriter(const std::string& path, bool force_zip64 = false)
        : path_(path), tmp_(path + ".tmp"), force_zip64_(force_zip64), out_(tmp_, std::ios::binary | std::ios::trunc) {
        if (!out_) fail(path, ": cannot open for writing");
    }
    ~ZipWriter() {
        if (!finished_) {
            out_.close();
            std::remove(tmp_.c_str());
        }
    }
    ZipWriter(const ZipWriter&) = delete;
    ZipWriter& operator=(const ZipWriter&) = delete;

    // Adds a stored member whose data starts at a multiple of `align` bytes.
    void add(const std::string& name, const std::uint8_t* data, std::size_t n, std::size_t align = 64) {
        using namespace zip_detail;
        if (finished_) fail(path_, ": archive already finished");
        if (name.empty() || name.size() > 0xffff) fail(path_, ": member name of ", name.size(), " bytes");
        Entry e{name, crc32(data, n), n, offset_};
        const bool zip64 = force_zip64_ || n >= 0xffffffffu;
        std::vector<std::uint8_t> extra;
        if (zip64) {
            put(extra, kZip64ExtraId, 2);
            put(extra, 16, 2);
            put(extra, n, 8);
            put(extra, n, 8);
        }
        if (align > 1) {
            const std::uint64_t start = offset_ + 30 + name.size() + extra.size() + 4;
            const std::uint64_t pad = (align - start % align) % align;
            put(extra, kPaddingExtraId, 2);
            put(extra, pad, 2);
            extra.insert(extra.end(), static_cast<std::size_t>(pad), 0);
        }
        std::vector<std::uint8_t> h;
        put(h, kLocalSig, 4);
        put(h, zip64 ? 45 : 20, 2);  // version needed
        put(h, 0, 2);                // flags
        put(h, 0, 2);                // method: stored
        put(h, 0, 2);                // time 00:00
        put(h, 0x21, 2);             // date 1980-01-01
        put(h, e.crc, 4);
        put(h, zip64 ? 0xffffffffu : n, 4);
        put(h, zip64 ? 0xffffffffu : n, 4);
        put(h, name.size(), 2);
        put(h, extra.size(), 2);
        h.insert(h.end(), name.begin(), name.end());
        h.insert(h.end(), extra.begin(), extra.end());
        write(h.data(), h.size());
        write(data, n);
        entries_.push_back(std::move(e));
    }
    void add(const std::string& name, const std::string& text) {
        add(name, reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
    }

    void finish() {
        using namespace zip_detail;
        if (finished_) return;
        const std::uint64_t cd_offset = offset_;
        for (const Entry& e : entries_) {
            const bool big_size = force_zip64_ || e.size >= 0xffffffffu;
            const bool big_offset = force_zip64_ || e.offset >= 0xffffffffu;
            std::vector<std::uint8_t> extra;
            if (big_size || big_offset) {
                put(extra, kZip64ExtraId, 2);
                put(extra, (big_size ? 16 : 0) + (big_offset ? 8 : 0), 2);
                if (big_size) {
                    put(extra, e.size, 8);
                    put(extra, e.size, 8);
                }
                if (big_offset) put(extra, e.offset, 8);
            }
            std::vector<std::uint8_t> c;
            put(c, kCentralSig, 4);
            put(c, extra.empty() ? 20 : 45, 2);  // version made by
            put(c, extra.empty() ? 20 : 45, 2);  // version needed
            put(c, 0, 2);
            put(c, 0, 2);
            put(c, 0, 2);
            put(c, 0x21, 2);
            put(c, e.crc, 4);
            put(c, big_size ? 0xffffffffu : e.size, 4);
            put(c, big_size ? 0xffffffffu : e.size, 4);
            put(c, e.name.size(), 2);
            put(c, extra.size(), 2);
            put(c, 0, 2);  // comment
            put(c, 0, 2);  // disk
            put(c, 0, 2);  // internal attributes
            put(c, 0, 4);  // external attributes
            put(c, big_offset ? 0xffffffffu : e.offset, 4);
            c.insert(c.end(), e.name.begin(), e.name.end());
            c.insert(c.end(), extra.begin(), extra.end());
            write(c.data(), c.size());
        }
        const std::uint64_t cd_size = offset_ - cd_offset;
        const std::uint64_t n = entries_.size();
        const bool zip64 = force_zip64_ || n >= 0xffff || cd_offset >= 0xffffffffu || cd_size >= 0xffffffffu;
        std::vector<std::uint8_t> t;
        if (zip64) {
            const std::uint64_t rec = offset_;
            put(t, kEnd64Sig, 4);
            put(t, 44, 8);  // size of the rest of this record
            put(t, 45, 2);
            put(t, 45, 2);
            put(t, 0, 4);
            put(t, 0, 4);
            put(t, n, 8);
            put(t, n, 8);
            put(t, cd_size, 8);
            put(t, cd_offset, 8);
            put(t, kEnd64LocatorSig, 4);
            put(t, 0, 4);
            put(t, rec, 8);
            put(t, 1, 4);
        }
        put(t, kEndSig, 4);
        put(t, 0, 2);
        put(t, 0, 2);
        put(t, zip64 ? 0xffff : n, 2);
        put(t, zip64 ? 0xffff : n, 2);
        put(t, zip64 ? 0xffffffffu : cd_size, 4);
        put(t, zip64 ? 0xffffffffu : cd_offset, 4);
        put(t, 0, 2);
        write(t.data(), t.size());
        out_.flush();
        if (!out_) fail(path_, ": write failed");
        out_.close();
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
            std::remove(tmp_.c_str());
            fail(path_, ": cannot rename the temporary file into place");
        }
        finished_ = true;
    }

private:
    struct Entry {
        std::string name;
        std::uint32_t crc;
        std::uint64_t size;
        std::uint64_t offset;
    };
    static void put(std::vector<std::uint8_t>& v, std::uint64_t x, int bytes) {
        for (int i = 0; i < bytes; ++i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
    }
    void write(const std::uint8_t* p, std::size_t n) {
        out_.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n));
        if (!out_) fail(path_, ": write failed");
        offset_ += n;
    }

    std::string path_, tmp_;
    bool force_zip64_;
    std::ofstream out_;
    std::vector<Entry> entries_;
    std::uint64_t offset_ = 0;
    bool finished_ = false;
};

}  // namespace mplug_owl2
