// Field lists of QuantizerAttributeConfig and RotateConfig (the single declaration of their fields).
#pragma once

namespace qforge::config {

void CheckEffectiveBits(const std::optional<double>& v, const std::string& path);
void CheckLearnAmax(const bool& v, const std::string& path);
void CheckQuantType(const std::string& v, const std::string& path);
void CheckTrtDtype(const std::string& v, const std::string& path);
void CheckCalibrator(const Json& v, const std::string& path);
void CheckConstantAmax(const std::optional<double>& v, const std::string& path);
void CheckRotateMode(const std::string& v, const std::string& path);
void CheckRotateBlockSize(const std::optional<int64_t>& v, const std::string& path);

template <class Self, class V>
void RotateConfig::VisitFields(Self& s, V& v) {
  v.Field("enable", s.enable, false, "apply the Hadamard rotation");
  v.Field("mode", s.mode, "rotate", "'rotate' or 'rotate_back' (re-apply the transform after fake quant)",
          CheckRotateMode);
  v.Field("rotate_fp32", s.rotate_fp32, false, "compute the rotation in fp32");
  v.Field("block_size", s.block_size, std::nullopt, "block-diagonal rotation block size (positive) or null",
          CheckRotateBlockSize);
}

template <class Self, class V>
void QuantizerAttributeConfig::VisitFields(Self& s, V& v) {
  v.Field("enable", s.enable, true, "false => the quantizer is a pass-through");
  v.Field("num_bits", s.num_bits, NumBitsValue::Int(8),
          "int => integer with that many bits; [E, M] => float format; str => custom backend format");
  v.Field("effective_bits", s.effective_bits, std::nullopt, "AutoQuantize cost only, in (0, 16]",
          CheckEffectiveBits);
  v.Field("axis", s.axis, std::nullopt, "dims that keep their own amax; null => per tensor");
  v.Field("fake_quant", s.fake_quant, true, "false => real quantization (compress path)");
  v.Field("unsigned", s.unsigned_, false, "unsigned integer range (integer formats only)");
  v.Field("narrow_range", s.narrow_range, false, "symmetric range +-(2^(b-1)-1) (integer formats only)");
  v.Field("learn_amax", s.learn_amax, false, "deprecated; true is rejected", CheckLearnAmax);
  v.Field("type", s.type, "static", "'static' or 'dynamic' (amax recomputed from every input)",
          CheckQuantType);
  v.Field("block_sizes", s.block_sizes, std::nullopt, "block quantization (spec §2.2)");
  v.Field("bias", s.bias, std::nullopt, "affine offset (spec §2.3)");
  v.Field("trt_high_precision_dtype", s.trt_high_precision_dtype, "Float",
          "ONNX QDQ dtype: 'Float', 'Half' or 'BFloat16'", CheckTrtDtype);
  v.Field("calibrator", s.calibrator, Json("max"), "'max', 'histogram' or a constructor spec",
          CheckCalibrator);
  v.Field("rotate", s.rotate, RotateValue{}, "Hadamard rotation: bool or {enable, mode, rotate_fp32, block_size}");
  v.Field("pass_through_bwd", s.pass_through_bwd, true, "straight-through backward without clipping mask");
  v.Field("backend", s.backend, std::nullopt, "name of a registered custom fake-quant backend");
  v.Field("backend_extra_args", s.backend_extra_args, std::nullopt, "dict stored for the backend");
  v.Field("use_constant_amax", s.use_constant_amax, false, "fake quant uses amax = 448; never calibrated");
  v.Field("constant_amax", s.constant_amax, std::nullopt, "pin amax to this value (> 0); never calibrated",
          CheckConstantAmax);
}

}  // namespace qforge::config
