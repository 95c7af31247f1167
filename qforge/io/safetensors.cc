// safetensors reader, writer and shard index.
#include "qforge/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "qforge/base/error.h"
#include "qforge/base/read_limited.h"
#include "qforge/io/json_limits.h"

namespace qforge {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
constexpr uint64_t kMaxHeader = 100ull << 20;  // the reference implementation's limit (100 MB)
// Largest dimension or byte count a header may give: what int64 Shape entries and Tensor sizes can hold.
constexpr int64_t kMaxDim = std::numeric_limits<int64_t>::max();
// Largest shard index read (bytes): a million tensor names fit in about 100 MB.
constexpr uint64_t kMaxIndexBytes = uint64_t{256} << 20;

// Whether `p` names something (a symlink loop or an unreadable entry counts: opening it then gives an Error
// naming it, where fs::exists would throw filesystem_error).
bool Present(const fs::path& p) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(p, ec));
}

uint64_t ReadU64Le(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
}  // namespace

std::shared_ptr<SafetensorsFile> SafetensorsFile::Open(const fs::path& path) {
  auto f = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  f->file_ = MappedFile::Open(path);
  const std::string p = path.string();
  const uint64_t size = f->file_->size();
  QF_CHECK(size >= 8, "'{}' is not a safetensors file: {} bytes, shorter than the 8-byte header length", p, size);
  const uint64_t n = ReadU64Le(f->file_->data());
  QF_CHECK(n <= kMaxHeader, "'{}': header length {} exceeds the {}-byte limit (corrupt file?)", p, n, kMaxHeader);
  QF_CHECK(n <= size - 8, "'{}' is truncated: header length {} but only {} bytes follow", p, n, size - 8);
  const char* hdr = reinterpret_cast<const char*>(f->file_->data() + 8);
  const json h = ParseJsonBounded<json>(std::string_view(hdr, n), fmt::format("'{}': header", p));
  QF_CHECK(h.is_object(), "'{}': header must be a JSON object", p);
  f->data_start_ = 8 + n;
  const uint64_t data_size = size - f->data_start_;
  std::vector<TensorInfo> infos;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      QF_CHECK(v.is_object(), "'{}': __metadata__ must be an object of strings", p);
      for (auto m = v.begin(); m != v.end(); ++m) {
        QF_CHECK(m.value().is_string(), "'{}': __metadata__['{}'] must be a string", p, m.key());
        f->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    QF_CHECK(!name.empty(), "'{}': empty tensor name in header", p);
    QF_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
             "'{}': tensor '{}' must have dtype, shape and data_offsets", p, name);
    TensorInfo info;
    info.name = name;
    QF_CHECK(v["dtype"].is_string(), "'{}': tensor '{}': dtype must be a string", p, name);
    const std::string dt = v["dtype"].get<std::string>();
    auto dtype = DTypeFromSafetensorsName(dt);
    QF_CHECK(dtype.has_value(), "'{}': tensor '{}' has unsupported dtype '{}'", p, name, dt);
    info.dtype = *dtype;
    QF_CHECK(v["shape"].is_array(), "'{}': tensor '{}': shape must be a list", p, name);
    for (const auto& d : v["shape"]) {
      // nlohmann stores integers above INT64_MAX as unsigned: they must not become negative int64 dims.
      QF_CHECK((d.is_number_unsigned() && d.get<uint64_t>() <= static_cast<uint64_t>(kMaxDim)) ||
                   (d.is_number_integer() && d.get<int64_t>() >= 0),
               "'{}': tensor '{}': shape entries must be non-negative integers below 2^63, got {}", p, name, d.dump());
      info.shape.push_back(d.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    QF_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
             "'{}': tensor '{}': data_offsets must be two non-negative integers", p, name);
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    QF_CHECK(info.begin <= info.end, "'{}': tensor '{}': data_offsets [{}, {}) are reversed", p, name, info.begin,
             info.end);
    QF_CHECK(info.end <= data_size, "'{}' is truncated: tensor '{}' ends at byte {} of the data section but it has {}",
             p, name, info.end, data_size);
    // Bytes the shape needs, in uint64 with every multiplication checked: an element count or a byte count
    // that wraps could otherwise match a small data_offsets span.
    // A zero dimension makes the product 0 whatever the others are; Tensor's NumElements must agree.
    uint64_t want = DTypeSize(info.dtype);
    bool overflow = false;
    for (int64_t d : info.shape) overflow |= __builtin_mul_overflow(want, static_cast<uint64_t>(d), &want);
    if (std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end()) {
      want = 0;
      try {
        overflow = false;
        (void)NumElements(info.shape);
      } catch (const Error&) {
        overflow = true;
      }
    }
    QF_CHECK(!overflow && want <= static_cast<uint64_t>(kMaxDim),
             "'{}': tensor '{}': shape {} of {} overflows: it needs 2^63 bytes or more (corrupt header?)", p, name,
             ShapeToString(info.shape), dt);
    QF_CHECK(info.end - info.begin == want, "'{}': tensor '{}' ({} {}) needs {} bytes but data_offsets span {}", p,
             name, dt, ShapeToString(info.shape), want, info.end - info.begin);
    infos.push_back(std::move(info));
  }
  std::sort(infos.begin(), infos.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (size_t i = 0; i < infos.size(); ++i) {
    const auto& t = infos[i];
    QF_CHECK(t.begin >= cursor, "'{}': tensor '{}' overlaps tensor '{}'", p, t.name, infos[i - 1].name);
    QF_CHECK(t.begin == cursor, "'{}': {} unused bytes before tensor '{}' (offsets must be contiguous)", p,
             t.begin - cursor, t.name);
    cursor = t.end;
  }
  QF_CHECK(cursor == data_size, "'{}': {} trailing bytes after the last tensor", p, data_size - cursor);
  for (auto& t : infos) {
    f->names_.push_back(t.name);
    f->index_.emplace(t.name, std::move(t));
  }
  return f;
}

const TensorInfo& SafetensorsFile::Info(const std::string& name) const {
  auto it = index_.find(name);
  QF_CHECK(it != index_.end(), "tensor '{}' not found in '{}'", name, path().string());
  return it->second;
}

Tensor SafetensorsFile::Get(const std::string& name) const {
  const TensorInfo& info = Info(name);
  const std::byte* p = file_->data() + data_start_ + info.begin;
  const size_t align = DTypeSize(info.dtype);
  Tensor view = Tensor::Borrow(info.dtype, info.shape, p, file_);
  if (reinterpret_cast<uintptr_t>(p) % align != 0) return view.Clone();
  return view;
}

void SafetensorsFile::Release(const std::string& name) const {
  const TensorInfo& info = Info(name);
  file_->DontNeed(data_start_ + info.begin, info.end - info.begin);
}

void WriteSafetensors(const fs::path& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t sa = DTypeSize(tensors[a].second.dtype()), sb = DTypeSize(tensors[b].second.dtype());
    return sa != sb ? sa > sb : tensors[a].first < tensors[b].first;
  });
  std::set<std::string> seen;
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    QF_CHECK(!name.empty(), "cannot write a tensor with an empty name to '{}'", path.string());
    QF_CHECK(seen.insert(name).second, "duplicate tensor name '{}' writing '{}'", name, path.string());
    QF_CHECK(t.defined(), "tensor '{}' has no data (writing '{}')", name, path.string());
    h[name] = {{"dtype", std::string(DTypeName(t.dtype()))},
               {"shape", t.shape()},
               {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string header = h.dump();
  while ((header.size() + 8) % 8 != 0) header.push_back(' ');  // align the data section to 8 bytes
  AtomicFileWriter w(path);
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  w.Write(len, 8);
  w.Write(header);
  for (size_t i : order) {
    const auto& t = tensors[i].second;
    if (t.nbytes() > 0) w.Write(t.raw(), t.nbytes());
  }
  w.Commit();
}

CheckpointTensors CheckpointTensors::Open(const fs::path& dir) {
  CheckpointTensors c;
  c.dir_ = dir;
  QF_CHECK(Present(dir), "checkpoint '{}' does not exist", dir.string());
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {
    c.dir_ = dir.parent_path();
    auto f = SafetensorsFile::Open(dir);
    const std::string file = dir.filename().string();
    c.shards_[file] = f;
    for (const auto& n : f->names()) {
      c.names_.push_back(n);
      c.where_[n] = file;
    }
    return c;
  }
  const fs::path index = dir / "model.safetensors.index.json";
  if (Present(index)) {
    const json j = ParseJsonBounded<json>(ReadFileLimited(index, kMaxIndexBytes, "a model.safetensors.index.json"),
                                          fmt::format("'{}'", index.string()));
    QF_CHECK(j.is_object() && j.contains("weight_map") && j.at("weight_map").is_object(),
             "'{}' must contain a \"weight_map\" object", index.string());
    std::set<std::string> files;
    const json& weight_map = j.at("weight_map");
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      QF_CHECK(it.value().is_string(), "'{}': weight_map['{}'] must be a file name", index.string(), it.key());
      const std::string file = it.value().get<std::string>();
      QF_CHECK(!file.empty() && file.find('/') == std::string::npos && file.find("..") == std::string::npos &&
                   file.find('\0') == std::string::npos,
               "'{}': weight_map['{}'] = '{}' must be a file name in the same directory", index.string(),
               it.key(), file);
      c.names_.push_back(it.key());
      c.where_[it.key()] = file;
      files.insert(file);
    }
    for (const auto& file : files) {
      QF_CHECK(Present(dir / file), "shard '{}' listed in '{}' is missing", (dir / file).string(),
               index.string());
    }
    // Validate every shard up front and check the index agrees with the shards' headers.
    for (const auto& file : files) {
      auto shard = c.Shard(file);
      for (const auto& n : shard->names()) {
        auto w = c.where_.find(n);
        QF_CHECK(w != c.where_.end(), "tensor '{}' in shard '{}' is not listed in '{}'", n, file, index.string());
        QF_CHECK(w->second == file, "tensor '{}' is in shard '{}' but '{}' says '{}'", n, file, index.string(),
                 w->second);
      }
    }
    for (const auto& n : c.names_) {
      QF_CHECK(c.Shard(c.where_[n])->Contains(n), "tensor '{}' listed in '{}' is missing from shard '{}'", n,
               index.string(), c.where_[n]);
    }
    return c;
  }
  const fs::path single = dir / "model.safetensors";
  QF_CHECK(Present(single), "'{}' has neither model.safetensors nor model.safetensors.index.json",
           dir.string());
  auto f = c.Shard("model.safetensors");
  for (const auto& n : f->names()) {
    c.names_.push_back(n);
    c.where_[n] = "model.safetensors";
  }
  return c;
}

std::shared_ptr<SafetensorsFile> CheckpointTensors::Shard(const std::string& file) const {
  auto it = shards_.find(file);
  if (it != shards_.end()) return it->second;
  auto f = SafetensorsFile::Open(dir_ / file);
  shards_[file] = f;
  return f;
}

const TensorInfo& CheckpointTensors::Info(const std::string& name) const {
  auto it = where_.find(name);
  QF_CHECK(it != where_.end(), "tensor '{}' not found in checkpoint '{}'", name, dir_.string());
  return Shard(it->second)->Info(name);
}

Tensor CheckpointTensors::Get(const std::string& name) const {
  auto it = where_.find(name);
  QF_CHECK(it != where_.end(), "tensor '{}' not found in checkpoint '{}'", name, dir_.string());
  return Shard(it->second)->Get(name);
}

void CheckpointTensors::Release(const std::string& name) const {
  auto it = where_.find(name);
  if (it != where_.end()) Shard(it->second)->Release(name);
}

const std::string& CheckpointTensors::FileOf(const std::string& name) const {
  auto it = where_.find(name);
  QF_CHECK(it != where_.end(), "tensor '{}' not found in checkpoint '{}'", name, dir_.string());
  return it->second;
}

std::vector<std::string> CheckpointTensors::shard_files() const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& n : names_) {
    const auto& f = where_.at(n);
    if (seen.insert(f).second) out.push_back(f);
  }
  return out;
}

uint64_t CheckpointTensors::total_bytes() const {
  uint64_t total = 0;
  for (const auto& n : names_) {
    const auto& i = Info(n);
    total += i.end - i.begin;
  }
  return total;
}

}  // namespace qforge
