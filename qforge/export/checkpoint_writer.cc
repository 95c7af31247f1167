// Sharded, atomic HF checkpoint writing.
#include "qforge/export/checkpoint_writer.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "qforge/base/error.h"
#include "qforge/base/strings.h"
#include "qforge/io/safetensors.h"

namespace qforge {
namespace fs = std::filesystem;

CheckpointWriter::CheckpointWriter(fs::path out_dir, uint64_t max_shard_bytes)
    : dir_(std::move(out_dir)), max_shard_bytes_(std::max<uint64_t>(max_shard_bytes, 1)) {}

CheckpointWriter::~CheckpointWriter() = default;

void CheckpointWriter::Add(std::string name, Tensor tensor) {
  QF_ASSERT(std::find(all_names_.begin(), all_names_.end(), name) == all_names_.end(), "duplicate tensor '{}'",
            name);
  all_names_.push_back(name);
  pending_bytes_ += tensor.nbytes();
  pending_.emplace_back(std::move(name), std::move(tensor));
  if (pending_bytes_ >= max_shard_bytes_) FlushShard();
}

void CheckpointWriter::FlushShard() {
  if (pending_.empty()) return;
  const std::string tmp_name = fmt::format("shard-{:05d}.part", shard_names_.size() + 1);
  WriteSafetensors(dir_.path() / tmp_name, pending_, {{"format", "pt"}});
  std::vector<std::string> names;
  for (const auto& [n, t] : pending_) names.push_back(n);
  shard_names_.push_back(tmp_name);
  shard_tensors_.push_back(std::move(names));
  total_bytes_ += pending_bytes_;
  pending_.clear();
  pending_bytes_ = 0;
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
