// Sharded, atomic HF checkpoint writing.
#include "qforge/export/checkpoint_writer.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "qforge/base/error.h"
#include "qforge/base/strings.h"
#include "qforge/io/safetensors.h"

namespace qforge {
namespace fs = std::filesystem;

namespace {

int SizeClass(DType d) {
  switch (DTypeSize(d)) {
    case 8: return 0;
    case 4: return 1;
    case 2: return 2;
    default: return 3;
  }
}

std::string SpoolName(int cls) { return fmt::format("spool-{}.bin", cls); }

}  // namespace

CheckpointWriter::CheckpointWriter(fs::path out_dir, uint64_t max_shard_bytes, ReplaceMode replace)
    : dir_(std::move(out_dir), replace), max_shard_bytes_(std::max<uint64_t>(max_shard_bytes, 1)) {
  OpenSpools();
}

CheckpointWriter::~CheckpointWriter() = default;

void CheckpointWriter::OpenSpools() {
  for (int c = 0; c < kSizeClasses; ++c) spool_[c] = std::make_unique<AtomicFileWriter>(dir_.path() / SpoolName(c));
}

void CheckpointWriter::Add(const std::string& name, const Tensor& tensor) {
  QF_ASSERT(all_names_.insert(name).second, "duplicate tensor '{}'", name);
  QF_CHECK(tensor.defined(), "tensor '{}' has no data", name);
  const int c = SizeClass(tensor.dtype());
  if (tensor.nbytes() > 0) spool_[c]->Write(tensor.raw(), tensor.nbytes());
  pending_[c].push_back({name, tensor.dtype(), tensor.shape(), tensor.nbytes()});
  pending_bytes_ += tensor.nbytes();
  if (pending_bytes_ >= max_shard_bytes_) FlushShard();
}

// Assembles one shard: the safetensors header (offsets in size-class order), then each spool's bytes.
void CheckpointWriter::FlushShard() {
  if (pending_bytes_ == 0 && std::all_of(std::begin(pending_), std::end(pending_),
                                         [](const auto& v) { return v.empty(); })) {
    return;
  }
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  std::vector<std::string> names;
  for (int c = 0; c < kSizeClasses; ++c) {
    for (const auto& t : pending_[c]) {
      h[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                   {"shape", t.shape},
                   {"data_offsets", {offset, offset + t.nbytes}}};
      offset += t.nbytes;
      names.push_back(t.name);
    }
  }
  std::string header = h.dump();
  while ((header.size() + 8) % 8 != 0) header.push_back(' ');
  const std::string tmp_name = fmt::format("shard-{:05d}.part", shard_names_.size() + 1);
  AtomicFileWriter out(dir_.path() / tmp_name);
  uint8_t len[8];
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.Write(len, 8);
  out.Write(header);
  std::vector<char> buf(1 << 20);
  for (int c = 0; c < kSizeClasses; ++c) {
    spool_[c]->Commit();  // makes the spool readable under its name
    const fs::path spool = dir_.path() / SpoolName(c);
    {
      std::ifstream in(spool, std::ios::binary);
      QF_CHECK(in.good(), "cannot read back '{}'", spool.string());
      while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (in.gcount() > 0) out.Write(buf.data(), static_cast<size_t>(in.gcount()));
      }
    }
    fs::remove(spool);
    pending_[c].clear();
  }
  out.Commit();
  shard_names_.push_back(tmp_name);
  shard_tensors_.push_back(std::move(names));
  total_bytes_ += pending_bytes_;
  pending_bytes_ = 0;
  OpenSpools();
}

std::vector<fs::path> AuxiliaryModelFiles(const fs::path& source_dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(source_dir)) return out;
  for (const auto& e : fs::directory_iterator(source_dir)) {
    if (!e.is_regular_file()) continue;
    const std::string n = e.path().filename().string();
    const bool aux = StartsWith(n, "tokenizer") || n == "special_tokens_map.json" || n == "generation_config.json" ||
                     n == "added_tokens.json" || StartsWith(n, "vocab") || n == "merges.txt" ||
                     EndsWith(n, ".jinja") || n == "chat_template.json" || n == "preprocessor_config.json";
    if (aux) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void CheckpointWriter::Commit(const nlohmann::ordered_json& config_json,
                              const std::optional<nlohmann::ordered_json>& hf_quant_config,
                              const fs::path& source_dir) {
  FlushShard();
  for (auto& sp : spool_) sp.reset();  // the empty spools of a next shard: removed, never committed
  const size_t n = shard_names_.size();
  if (n == 0) {  // an empty model still gets a (header-only) file
    WriteSafetensors(dir_.path() / "model.safetensors", {}, {{"format", "pt"}});
  } else if (n == 1) {
    fs::rename(dir_.path() / shard_names_[0], dir_.path() / "model.safetensors");
  } else {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    std::vector<std::pair<std::string, std::string>> entries;
    for (size_t i = 0; i < n; ++i) {
      const std::string final_name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n);
      fs::rename(dir_.path() / shard_names_[i], dir_.path() / final_name);
      for (const auto& t : shard_tensors_[i]) entries.emplace_back(t, final_name);
    }
    std::sort(entries.begin(), entries.end());
    for (const auto& [t, f] : entries) weight_map[t] = f;
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total_bytes_}}}, {"weight_map", weight_map}};
    WriteFileAtomic(dir_.path() / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  WriteFileAtomic(dir_.path() / "config.json", config_json.dump(2) + "\n");
  if (hf_quant_config) WriteFileAtomic(dir_.path() / "hf_quant_config.json", hf_quant_config->dump(4) + "\n");
  for (const auto& f : AuxiliaryModelFiles(source_dir)) {
    std::error_code ec;
    fs::copy_file(f, dir_.path() / f.filename(), fs::copy_options::overwrite_existing, ec);
    QF_CHECK(!ec, "cannot copy '{}' into the export: {}", f.string(), ec.message());
    fs::permissions(dir_.path() / f.filename(), fs::perms::owner_write, fs::perm_options::add, ec);
  }
  dir_.Commit();
}

}  // namespace qforge
