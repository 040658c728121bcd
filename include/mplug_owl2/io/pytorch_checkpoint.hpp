// PyTorch checkpoints (pytorch_model.bin and its shards) read natively. Since
// PyTorch 1.6, torch.save writes a ZIP archive whose folder <archive>/ holds
//   data.pkl    the pickled state dict; each tensor is a call to
//               torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
//               and each storage a persistent id ('storage', torch.HalfStorage,
//               key, location, element count),
//   data/<key>  the raw little-endian bytes of storage <key>,
//   version     and, since PyTorch 2.1, byteorder.
// A tensor that is a contiguous run of its storage points into the memory
// map; any other view (transposed, expanded, strided) is copied once here
// into a contiguous buffer. The legacy pre-1.6 format (a bare pickle stream)
// and TorchScript archives are refused with a message saying so.
#pragma once

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pickle.hpp"
#include "tensor_source.hpp"
#include "zip_archive.hpp"

namespace mplug_owl2 {

class PyTorchCheckpoint : public TensorSource {
public:
    static constexpr std::size_t kMaxPickle = 256u << 20;  // data.pkl of a 7B model is ~100 KB

    explicit PyTorchCheckpoint(const std::string& path) {
        refuse_other_formats(path);
        zip_ = std::make_unique<ZipArchive>(path);
        load();
    }

    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : tensors_) out.push_back(kv.first);
        return out;
    }
    const TensorInfo* find(const std::string& name) const override {
        auto it = tensors_.find(name);
        return it == tensors_.end() ? nullptr : &it->second;
    }
    std::string origin(const std::string&) const override { return zip_->path(); }
    const std::string& path() const { return zip_->path(); }
    // The folder name inside the archive (torch uses the file's stem).
    const std::string& archive_name() const { return prefix_; }

private:
    // A file that does not start as a ZIP archive: say what it is if we can tell.
    static void refuse_other_formats(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) fail(path, ": cannot open");
        std::uint8_t head[512] = {};
        in.read(reinterpret_cast<char*>(head), sizeof head);
        const std::size_t got = static_cast<std::size_t>(in.gcount());
        if (got >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return;
        // The legacy format opens with PROTO 2 and LONG1 of torch's magic number 0x1950a86a20f9469cfc6c.
        static const std::uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
        if (got >= sizeof legacy && std::memcmp(head, legacy, sizeof legacy) == 0)
            fail(path, ": legacy PyTorch format (torch.save before PyTorch 1.6, or _use_new_zipfile_serialization=False)"
                       " is not supported; re-save it with a current PyTorch or convert it to safetensors");
        if (got >= 262 && std::memcmp(head + 257, "ustar", 5) == 0)
            fail(path, ": legacy tar-based PyTorch format is not supported; re-save it with a current PyTorch");
        if (got >= 8 && std::memcmp(head, "\x80\x02", 2) == 0)
            fail(path, ": a bare pickle stream, not a PyTorch zip checkpoint");
        if (got >= 9 && head[8] == '{')
            fail(path, ": looks like a safetensors file, not a PyTorch checkpoint");
        fail(path, ": not a PyTorch checkpoint (no ZIP signature at the start)");
    }

    void load() {
        const std::string& p = zip_->path();
        // 1. The archive's folder: the one holding data.pkl.
        for (const auto& m : zip_->members()) {
            const auto slash = m.name.find('/');
            if (slash != std::string::npos && m.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
                if (!prefix_.empty()) fail(p, ": two data.pkl members (", prefix_, "/data.pkl and ", m.name, ")");
                prefix_ = m.name.substr(0, slash);
            }
        }
        if (prefix_.empty()) fail(p, ": ZIP archive without a <name>/data.pkl member; not a torch.save checkpoint");
        if (zip_->find(prefix_ + "/constants.pkl"))
            fail(p, ": a TorchScript archive (torch.jit.save), not a state dict saved with torch.save");
        if (const ZipMember* bo = zip_->find(prefix_ + "/byteorder")) {
            const std::uint8_t* b = zip_->data(*bo);
            if (std::string(reinterpret_cast<const char*>(b), static_cast<std::size_t>(bo->size)) != "little")
                fail(p, ": member ", bo->name, " says the tensors are not little-endian");
        }

        // 2. Run the pickle.
        const ZipMember& pkl = *zip_->find(prefix_ + "/data.pkl");
        if (pkl.size > kMaxPickle) fail(p, ": member ", pkl.name, " is ", pkl.size, " bytes, over the limit of ", kMaxPickle);
        zip_->check_crc(pkl);
        const std::string where = p + ": member " + pkl.name;
        pickle::Machine vm(zip_->data(pkl), static_cast<std::size_t>(pkl.size), where);

        // 3. The state dict: name -> tensor. Later keys replace earlier ones, as in Python.
        const pickle::Object& top = vm.at(vm.result());
        if (top.kind != pickle::Kind::Dict)
            fail(where, ": the pickled object is a ", pickle::kind_name(top.kind), ", expected a dict of tensors (a state dict)");
        for (std::size_t k = 0; k + 1 < top.items.size(); k += 2) {
            const pickle::Object& key = vm.at(top.items[k]);
            if (key.kind != pickle::Kind::String)
                fail(where, ": a state dict key is a ", pickle::kind_name(key.kind), ", expected a str");
            const pickle::Object& value = vm.at(top.items[k + 1]);
            if (value.kind != pickle::Kind::Tensor)
                fail(where, ": entry ", key.s, " is a ", pickle::kind_name(value.kind), ", expected a tensor");
            tensors_[key.s] = view(key.s, value, vm.at(value.storage), where);
        }
    }

    // The bytes of one storage: member data/<key>, exactly its elements' size.
    const std::uint8_t* storage_bytes(const pickle::Object& s, const std::string& where) {
        auto it = storages_.find(s.s);
        if (it != storages_.end()) {
            if (it->second.dtype != s.dtype)
                fail(where, ": storage ", s.s, " is used both as ", dtype_name(it->second.dtype), " and as ", dtype_name(s.dtype));
            return it->second.data;
        }
        const std::string member = prefix_ + "/data/" + s.s;
        const ZipMember* m = zip_->find(member);
        if (!m) fail(zip_->path(), ": member ", member, " (storage ", s.s, ") is missing");
        const std::uint64_t elements = static_cast<std::uint64_t>(s.i);
        if (elements > (std::uint64_t(1) << 56) || m->size != elements * dtype_size(s.dtype))
            fail(zip_->path(), ": member ", member, " holds ", m->size, " bytes, its storage of ", elements, " ",
                 dtype_name(s.dtype), " elements needs ", elements * dtype_size(s.dtype));
        const std::uint8_t* data = zip_->data(*m);
        storages_.emplace(s.s, Storage{s.dtype, data, elements});
        return data;
    }

    TensorInfo view(const std::string& name, const pickle::Object& t, const pickle::Object& s, const std::string& where) {
        const std::uint8_t* base = storage_bytes(s, where);
        const std::uint64_t elements = static_cast<std::uint64_t>(s.i);
        const std::size_t es = dtype_size(s.dtype);
        auto bad = [&](auto&&... why) { fail(where, ": tensor ", name, ": ", why...); };

        TensorInfo info;
        info.dtype = s.dtype;
        // 1. Element count and the last element the view touches, without overflow.
        constexpr std::uint64_t kLimit = std::uint64_t(1) << 56;
        std::uint64_t numel = 1, last = t.offset;
        for (std::size_t d = 0; d < t.size.size(); ++d) {
            const std::uint64_t n = t.size[d], st = t.stride[d];
            if (n > kLimit || st > kLimit || (n && numel > kLimit / n)) bad("size or stride too large");
            numel *= n;
            info.shape.push_back(static_cast<std::size_t>(n));
        }
        if (numel > 0) {
            for (std::size_t d = 0; d < t.size.size(); ++d) {
                if (t.stride[d] && t.size[d] - 1 > kLimit / t.stride[d]) bad("stride reaches too far");
                last += (t.size[d] - 1) * t.stride[d];
                if (last > kLimit) bad("stride reaches too far");
            }
            if (last >= elements)
                bad("its view (offset ", t.offset, ", shape ", shape_str(info.shape), ") reaches element ", last,
                    " of a storage of ", elements, " elements (", s.s, ")");
        }
        info.nbytes = static_cast<std::size_t>(numel) * es;

        // 2. Contiguous row-major views point into the map; dimensions of size 1 may have any stride.
        bool contiguous = true;
        std::uint64_t expect = 1;
        for (std::size_t d = t.size.size(); d-- > 0;) {
            if (t.size[d] != 1 && t.stride[d] != expect) contiguous = false;
            expect *= t.size[d];
        }
        if (numel == 0) {
            info.data = base;
            return info;
        }
        if (contiguous) {
            info.data = base + t.offset * es;
            return info;
        }

        // 3. Other views: gather the elements once, row-major. Only an expanded
        // view (stride 0) can be larger than its storage; a huge one is refused.
        constexpr std::uint64_t kMaxCopy = std::uint64_t(64) << 20;
        if (info.nbytes > std::max<std::uint64_t>(elements * es, kMaxCopy))
            bad("a non-contiguous view of ", info.nbytes, " bytes over a storage of ", elements * es,
                " bytes is too large to copy");
        owned_.emplace_back(info.nbytes);
        std::uint8_t* out = owned_.back().data();
        const std::size_t rank = t.size.size();
        std::vector<std::uint64_t> idx(rank, 0);
        for (std::uint64_t k = 0; k < numel; ++k) {
            std::uint64_t src = t.offset;
            for (std::size_t d = 0; d < rank; ++d) src += idx[d] * t.stride[d];
            std::memcpy(out + k * es, base + src * es, es);
            for (std::size_t d = rank; d-- > 0;) {
                if (++idx[d] < t.size[d]) break;
                idx[d] = 0;
            }
        }
        info.data = out;
        return info;
    }

    struct Storage {
        DType dtype;
        const std::uint8_t* data;
        std::uint64_t elements;
    };
    std::unique_ptr<ZipArchive> zip_;
    std::string prefix_;
    std::map<std::string, Storage> storages_;
    std::deque<std::vector<std::uint8_t>> owned_;  // copies of non-contiguous views
    std::map<std::string, TensorInfo> tensors_;
};

}  // namespace mplug_owl2
