// CPU kernels: the shared sampling math (msda_sampling.h) over whole D-vectors, parallel with ATen.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>

#include "ms_deform_attn.h"
#include "msda_sampling.h"

namespace fcclip {
namespace msda {
namespace {

// The kernels trust spatial_shapes and level_start_index for addressing, so every level must lie
// inside value. On the CPU this costs nothing to check.
void check_levels(const at::Tensor& spatial_shapes, const at::Tensor& level_start_index, int64_t pixels) {
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  for (int64_t l = 0; l < spatial_shapes.size(0); ++l) {
    const int64_t height = shapes[2 * l];
    const int64_t width = shapes[2 * l + 1];
    TORCH_CHECK(height >= 0 && width >= 0, "ms_deform_attn: level ", l, " has a negative size ", height, "x", width);
    TORCH_CHECK(starts[l] >= 0 && starts[l] + height * width <= pixels, "ms_deform_attn: level ", l, " (", height,
                "x", width, " from pixel ", starts[l], ") does not fit in value's ", pixels, " pixels");
  }
}

// Rows (batch, query, head) per task: enough work to amortise scheduling, small enough to balance.
int64_t row_grain(const Sizes& s) {
  const int64_t work_per_row = std::max<int64_t>(1, s.levels * s.points * (s.channels + 8));
  return std::max<int64_t>(1, 4096 / work_per_row);
}

// Channels is int64_t (any width: accumulate straight into the output row) or FixedChannels<N>
// (a register-resident accumulator, unrolled channel loops).
template <typename scalar_t, typename Channels>
void forward_rows(const Sizes& s, const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                  const scalar_t* locations, const scalar_t* attention, scalar_t* output, Channels channels) {
  const int64_t rows = s.batch * s.queries * s.heads;
  const int64_t pixel_stride = s.heads * s.channels;
  const int64_t samples_per_row = s.levels * s.points;
  at::parallel_for(0, rows, row_grain(s), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t head = row % s.heads;
      const int64_t n = row / (s.queries * s.heads);
      const scalar_t* value_head = value + (n * s.pixels * s.heads + head) * s.channels;
      scalar_t* out = output + row * s.channels;
      if constexpr (std::is_same_v<Channels, int64_t>) {
        std::fill(out, out + s.channels, scalar_t(0));
        sample_query_head<scalar_t, scalar_t>(value_head, pixel_stride, shapes, starts, s.levels, s.points,
                                              locations + row * samples_per_row * 2, attention + row * samples_per_row,
                                              out, channels);
      } else {
        scalar_t acc[static_cast<int64_t>(Channels{})] = {};
        sample_query_head<scalar_t, scalar_t>(value_head, pixel_stride, shapes, starts, s.levels, s.points,
                                              locations + row * samples_per_row * 2, attention + row * samples_per_row,
                                              acc, channels);
        std::copy(acc, acc + static_cast<int64_t>(Channels{}), out);
      }
    }
  });
}

// Head widths the decoders use get a specialised kernel; others take the generic one.
template <typename scalar_t>
void forward_any_width(const Sizes& s, const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                       const scalar_t* locations, const scalar_t* attention, scalar_t* output) {
  switch (s.channels) {
    case 32:
      return forward_rows(s, value, shapes, starts, locations, attention, output, FixedChannels<32>{});
    case 64:
      return forward_rows(s, value, shapes, starts, locations, attention, output, FixedChannels<64>{});
    case 16:
      return forward_rows(s, value, shapes, starts, locations, attention, output, FixedChannels<16>{});
    default:
      return forward_rows(s, value, shapes, starts, locations, attention, output, s.channels);
  }
}

// Adds value gradients in place: each task owns one (batch, head), so no two threads share a target.
template <typename scalar_t>
struct AddToHead {
  scalar_t* head;
  int64_t pixel_stride;
  void operator()(int64_t pixel, int64_t channel, scalar_t grad) const { head[pixel * pixel_stride + channel] += grad; }
};

template <typename scalar_t>
void backward_heads(const Sizes& s, const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                    const scalar_t* locations, const scalar_t* attention, const scalar_t* grad_output,
                    scalar_t* grad_value, scalar_t* grad_locations, scalar_t* grad_attention) {
  const int64_t pixel_stride = s.heads * s.channels;
  // Parallel over (batch, head): value gradients of different heads never overlap.
  at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / s.heads;
      const int64_t head = task % s.heads;
      const int64_t head_offset = (n * s.pixels * s.heads + head) * s.channels;
      AddToHead<scalar_t> sink{grad_value + head_offset, pixel_stride};
      for (int64_t q = 0; q < s.queries; ++q) {
        const int64_t row = (n * s.queries + q) * s.heads + head;
        const scalar_t* grad_out = grad_output + row * s.channels;
        for (int64_t l = 0; l < s.levels; ++l) {
          for (int64_t p = 0; p < s.points; ++p) {
            const int64_t sample = (row * s.levels + l) * s.points + p;
            scalar_t grad_weight = 0, grad_x = 0, grad_y = 0;
            backward_sample<scalar_t, scalar_t>(value + head_offset, pixel_stride, shapes, starts, l,
                                                locations + 2 * sample, attention[sample], grad_out, s.channels, sink,
                                                grad_weight, grad_x, grad_y);
            grad_locations[2 * sample] = grad_x;
            grad_locations[2 * sample + 1] = grad_y;
            grad_attention[sample] = grad_weight;
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  const Sizes s = sizes_of(value, sampling_locations);
  check_levels(spatial_shapes, level_start_index, s.pixels);
  at::Tensor output = at::empty({s.batch, s.queries, s.heads * s.channels}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    forward_any_width<scalar_t>(s, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                                level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<scalar_t>(),
                                attention_weights.data_ptr<scalar_t>(), output.data_ptr<scalar_t>());
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                            const at::Tensor& level_start_index,
                                                            const at::Tensor& sampling_locations,
                                                            const at::Tensor& attention_weights,
                                                            const at::Tensor& grad_output) {
  const Sizes s = sizes_of(value, sampling_locations);
  check_levels(spatial_shapes, level_start_index, s.pixels);
  at::Tensor grad_value = at::zeros_like(value);
  at::Tensor grad_locations = at::empty_like(sampling_locations);
  at::Tensor grad_attention = at::empty_like(attention_weights);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    backward_heads<scalar_t>(s, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                             level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<scalar_t>(),
                             attention_weights.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
                             grad_value.data_ptr<scalar_t>(), grad_locations.data_ptr<scalar_t>(),
                             grad_attention.data_ptr<scalar_t>());
  });
  return {grad_value, grad_locations, grad_attention};
}

}  // namespace msda
}  // namespace fcclip
