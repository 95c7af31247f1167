// XXH3 hashing (xxHash).
#include "qforge/base/hash.h"

#include <fmt/format.h>
#include <xxhash.h>

#include "qforge/base/error.h"
#include "qforge/base/file.h"

namespace qforge {
namespace {
std::string ToHex(XXH128_hash_t h) { return fmt::format("{:016x}{:016x}", h.high64, h.low64); }
}  // namespace

std::string Xxh3Hex(std::span<const std::byte> bytes) { return ToHex(XXH3_128bits(bytes.data(), bytes.size())); }
std::string Xxh3Hex(std::string_view s) { return ToHex(XXH3_128bits(s.data(), s.size())); }

Xxh3Hasher::Xxh3Hasher() : state_(XXH3_createState()) {
  QF_ASSERT(state_ != nullptr);
  XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_));
}
Xxh3Hasher::~Xxh3Hasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }
void Xxh3Hasher::Update(std::span<const std::byte> bytes) {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), bytes.data(), bytes.size());
}
void Xxh3Hasher::Update(std::string_view s) { XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), s.data(), s.size()); }
std::string Xxh3Hasher::Hex() const { return ToHex(XXH3_128bits_digest(static_cast<XXH3_state_t*>(state_))); }

FileDigest DigestFile(const std::filesystem::path& path) {
  auto f = MappedFile::Open(path);
  FileDigest d;
  d.bytes = f->size();
  d.xxh3 = Xxh3Hex(f->bytes());
  return d;
}

std::string HashHex(std::string_view s) { return fmt::format("{:016x}", XXH3_64bits(s.data(), s.size())); }

}  // namespace qforge
