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
  int64_t total_tokens = 0;                   // tokens the files held
  std::vector<std::string> warnings;          // e.g. "only 40 samples of 512 tokens in the text"
};

// Tokenizes `files` (no BOS), concatenates the ids and cuts `num_samples` consecutive samples of
// `seq_len` tokens. If the text holds fewer, takes as many as it holds and records a warning.
// Throws if no file is given, a file is unreadable, or not even one sample fits.
CalibData BuildCalibData(const Tokenizer& tokenizer, const std::vector<std::filesystem::path>& files,
                         int64_t num_samples, int64_t seq_len);

// Cuts already tokenized ids the same way.
CalibData CutCalibSamples(const std::vector<int32_t>& ids, int64_t num_samples, int64_t seq_len);

}  // namespace qforge
