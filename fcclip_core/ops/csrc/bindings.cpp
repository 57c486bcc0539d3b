// Python bindings of the deformable-attention op: argument checks, then the CPU or CUDA kernels.
#include <torch/extension.h>

#include "ms_deform_attn.h"

namespace fcclip {
namespace msda {
namespace {

void check_tensor(const at::Tensor& t, const char* name, int64_t dims, const at::Tensor& value) {
  TORCH_CHECK(t.dim() == dims, "ms_deform_attn: ", name, " must have ", dims, " dimensions, got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "ms_deform_attn: ", name, " must be contiguous");
  TORCH_CHECK(t.device() == value.device(), "ms_deform_attn: ", name, " is on ", t.device(), " but value is on ",
              value.device());
}

void check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                  const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  check_tensor(value, "value", 4, value);
  check_tensor(spatial_shapes, "spatial_shapes", 2, value);
  check_tensor(level_start_index, "level_start_index", 1, value);
  check_tensor(sampling_locations, "sampling_locations", 6, value);
  check_tensor(attention_weights, "attention_weights", 5, value);
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64");
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "ms_deform_attn: value, sampling_locations and attention_weights must share a dtype");
  const int64_t n = value.size(0), heads = value.size(2);
  const int64_t queries = sampling_locations.size(1), levels = sampling_locations.size(3),
                points = sampling_locations.size(4);
  TORCH_CHECK(sampling_locations.size(0) == n && sampling_locations.size(2) == heads &&
                  sampling_locations.size(5) == 2,
              "ms_deform_attn: sampling_locations must be [N, Lq, M, L, P, 2] matching value [N, S, M, D], got ",
              sampling_locations.sizes(), " and ", value.sizes());
  TORCH_CHECK(attention_weights.sizes() == at::IntArrayRef({n, queries, heads, levels, points}),
              "ms_deform_attn: attention_weights must be [N, Lq, M, L, P], got ", attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.size(0) == levels && spatial_shapes.size(1) == 2 && level_start_index.size(0) == levels,
              "ms_deform_attn: spatial_shapes must be [L, 2] and level_start_index [L] with L = ", levels);
}

at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                   const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  if (value.is_cuda()) {
#ifdef WITH_CUDA
    return forward_cuda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
#else
    TORCH_CHECK(false, "ms_deform_attn: this build of fcclip_core.ops has no CUDA kernels");
#endif
  }
  TORCH_CHECK(value.is_cpu(), "ms_deform_attn: unsupported device ", value.device());
  return forward_cpu(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                        const at::Tensor& level_start_index,
                                                        const at::Tensor& sampling_locations,
                                                        const at::Tensor& attention_weights,
                                                        const at::Tensor& grad_output) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_tensor(grad_output, "grad_output", 3, value);
  TORCH_CHECK(grad_output.size(0) == value.size(0) && grad_output.size(1) == sampling_locations.size(1) &&
                  grad_output.size(2) == value.size(2) * value.size(3),
              "ms_deform_attn: grad_output must be [N, Lq, M*D], got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(), "ms_deform_attn: grad_output must be ",
              value.scalar_type(), ", got ", grad_output.scalar_type());
  if (value.is_cuda()) {
#ifdef WITH_CUDA
    return backward_cuda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output);
#else
    TORCH_CHECK(false, "ms_deform_attn: this build of fcclip_core.ops has no CUDA kernels");
#endif
  }
  TORCH_CHECK(value.is_cpu(), "ms_deform_attn: unsupported device ", value.device());
  return backward_cpu(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output);
}

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace msda
}  // namespace fcclip

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fcclip_core multi-scale deformable attention kernels";
  // The kernels touch no Python objects: let other Python threads (e.g. a ROS executor) run meanwhile.
  const auto release_gil = pybind11::call_guard<pybind11::gil_scoped_release>();
  m.def("ms_deform_attn_forward", &fcclip::msda::forward, release_gil,
        "forward: value, spatial_shapes, level_start_index, sampling_locations, attention_weights -> [N, Lq, M*D]");
  m.def("ms_deform_attn_backward", &fcclip::msda::backward, release_gil,
        "backward: forward's inputs and grad_output -> (grad_value, grad_locations, grad_attention)");
  m.def("has_cuda", &fcclip::msda::has_cuda, "whether this build holds the CUDA kernels");
}
