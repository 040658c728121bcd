// A read-only memory map of a whole file (POSIX mmap). Checkpoint readers
// hand out pointers into it, so weights are never copied just to be read.
//
// The map asks for 2 MB pages (madvise MADV_HUGEPAGE). Where the page cache
// holds the file system's data in large folios (ext4 on the test machine's
// Linux 6.18; XFS), the pages read in through such a map are mapped 2 MB at
// a time, and the half-precision 7B checkpoint then prefills in 5.2-5.3 s
// instead of 6.9-7.2 s and decodes 3.1 instead of 2.4-2.6 tokens/s
// (docs/real_model.md). Pages that were already in the cache in 4 KB pieces
// stay so, which is the case right after a file was written:
// release_cached_pages drops a written file's pages for that reason.
// Elsewhere the advice is ignored.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "../core/error.hpp"

namespace mplug_owl2 {

class MappedFile {
public:
    explicit MappedFile(const std::string& path) : path_(path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            fail(path, ": not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                ::close(fd);
                fail(path, ": cannot memory-map (", std::strerror(errno), ")");
            }
            data_ = static_cast<const std::uint8_t*>(p);
            ::madvise(p, size_, MADV_HUGEPAGE);  // advice only: refused where unsupported, harmlessly
        }
        ::close(fd);
    }
    ~MappedFile() {
        if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const std::uint8_t* data() const { return data_; }
    std::size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

// Writes the file's data to disk and drops its pages from the page cache,
// so that the next reader maps it afresh, in 2 MB pages where the kernel can
// (see above). For files just written in full, such as a checkpoint's shards.
inline void release_cached_pages(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
    if (::fdatasync(fd) != 0) {
        const int err = errno;
        ::close(fd);
        fail(path, ": cannot write to disk (", std::strerror(err), ")");
    }
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // advice only
    ::close(fd);
}

}  // namespace mplug_owl2
