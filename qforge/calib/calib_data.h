// Calibration data: text files tokenized with the model's tokenizer, concatenated in the order given and
// cut into consecutive samples of equal length (hf_ptq.py's --calib_size / --calib_seq in spirit).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "qforge/model/tokenizer.h"

namespace qforge {

struct CalibData {
  int64_t seq_len = 0;
  std::vector<std::vector<int32_t>> samples;  // each exactly seq_len ids
  int64_t total_tokens = 0;                   // tokens read (all the files held, or the first wanted ones)
  std::vector<std::string> warnings;          // e.g. "only 40 samples of 512 tokens in the text"
};

// Most calibration tokens one run may ask for (num_samples * seq_len): 2^31 int32 ids are 8 GiB.
inline constexpr int64_t kMaxCalibTokens = int64_t{1} << 31;

// How much of a calibration file is read (a file may be a FIFO, a device or far larger than needed).
struct CalibReadLimits {
  uint64_t first_chunk = 1 << 20;     // bytes of the first read (at least 6 bytes per wanted token)
  int64_t margin_tokens = 256;        // tokens a prefix must hold beyond the wanted ones before it is trusted
  uint64_t max_bytes_per_token = 64;  // the read stops at wanted * this many bytes ...
  uint64_t min_byte_cap = 16 << 20;   // ... but never below this (bytes) ...
  uint64_t max_byte_cap = 8ull << 30;  // ... nor above this (bytes)
};

// The first `wanted` token ids of `file` (no BOS), or all of them if it holds fewer, reading only a prefix:
// chunks of growing size are read and the prefix read so far is tokenized until two nested prefixes hold
// `wanted` + margin tokens and agree on the first `wanted` (the pre-tokenizer and BPE are local, so these are
// the first `wanted` ids of the whole text); end of file tokenizes the whole text. Reading stops at the byte
// cap (an error naming the file), so /dev/zero, /dev/urandom, a FIFO or a 100 GB file are bounded in memory
// and time. Throws naming the file if it is unreadable or not valid UTF-8.
std::vector<int32_t> TokenizeCalibFile(const Tokenizer& tokenizer, const std::filesystem::path& file, int64_t wanted,
                                       const CalibReadLimits& limits = {});

// Tokenizes `files` (no BOS) in order, each only as far as the samples still need (TokenizeCalibFile),
// concatenates the ids and cuts `num_samples` consecutive samples of `seq_len` tokens: the same samples as
// tokenizing every file whole. If the text holds fewer, takes as many as it holds and records a warning.
// Throws if no file is given, num_samples * seq_len exceeds kMaxCalibTokens, a file is unreadable, or not
// even one sample fits.
CalibData BuildCalibData(const Tokenizer& tokenizer, const std::vector<std::filesystem::path>& files,
                         int64_t num_samples, int64_t seq_len, const CalibReadLimits& limits = {});

// Cuts already tokenized ids the same way.
CalibData CutCalibSamples(const std::vector<int32_t>& ids, int64_t num_samples, int64_t seq_len);

}  // namespace qforge
