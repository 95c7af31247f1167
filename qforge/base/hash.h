// Content hashing with xxHash: XXH3-128 of byte ranges and files (32 hex digits), XXH3-64 of short strings.
//
// XXH3 is not cryptographic: it detects corruption and accidental edits (a flipped bit, a truncated or
// hand-edited file), which is what checkpoint checksums and model fingerprints need, at memory speed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace qforge {

// XXH3-128 of `bytes`, 32 lowercase hex digits (high 64 bits first).
std::string Xxh3Hex(std::span<const std::byte> bytes);
std::string Xxh3Hex(std::string_view s);

// Streaming XXH3-128 over several pieces; Hex() may be called once at the end.
class Xxh3Hasher {
 public:
  Xxh3Hasher();
  ~Xxh3Hasher();
  Xxh3Hasher(const Xxh3Hasher&) = delete;
  Xxh3Hasher& operator=(const Xxh3Hasher&) = delete;
  void Update(std::span<const std::byte> bytes);
  void Update(std::string_view s);
  std::string Hex() const;

 private:
  void* state_;  // XXH3_state_t*
};

// XXH3-128 of a whole file (memory-mapped, read once) and its size in bytes. Throws naming the path.
struct FileDigest {
  uint64_t bytes = 0;
  std::string xxh3;
};
FileDigest DigestFile(const std::filesystem::path& path);

// XXH3-64 of `s`, 16 hex digits (short identifiers: config and calibration-data hashes).
std::string HashHex(std::string_view s);

}  // namespace qforge
