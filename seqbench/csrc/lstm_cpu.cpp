// The LSTM's loops over the time steps on the CPU, forward and backward (seqbench.native).
//
// seqbench.cells.lstm runs the LSTM's per-step pointwise work as some 20 torch calls per step; each
// costs 2-4 us of dispatch on this project's CPU, more than the arithmetic (README.md
// "Performance"). Here each step is one ATen matrix product plus one vectorized pass
// (ATen's Vectorized<float>) for the pointwise work, with the same formulas as the torch calls
// (sigmoid(x) = 1 / (1 + exp(-x)); the cell gate and tanh(c) as 2 sigmoid(2x) - 1). Layouts are
// those of seqbench.cells.lstm's LSTMFunction, whose torch-call loops (_lstm_forward_loop,
// _lstm_backward_loop) these mirror; see there for the equations.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

namespace {

using Vec = at::vec::Vectorized<float>;
//: batch rows per parallel task: at B = 64 the two threads of this project's machine take 32 each
constexpr int64_t kRowsPerTask = 16;

inline Vec sigmoid(const Vec& x) {
  const Vec one(1.f);
  return one / (one + x.neg().exp());
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, name, ": float32 CPU tensor");
  TORCH_CHECK(t.stride(-1) == 1, name, ": unit stride in the last dimension");
}

// For row b of a (B, H) view: its first element.
inline float* row(const at::Tensor& t, int64_t b) { return t.data_ptr<float>() + b * t.stride(0); }

// gates: (4, B, H) pre-activations [i, f, g, o], the cell gate's doubled; overwritten.
// c_prev, c_out, h_out: (B, H); h_copy: optional (B, H) view also receiving h (the next step's
// stacked input). K: optional (6, B, H), receives [f, g i(1-i), c_prev f(1-f), i(1-g^2),
// tanh(c) o(1-o), o(1-tanh^2(c))].
void forward_step(const at::Tensor& gates, const at::Tensor& c_prev, const at::Tensor& c_out,
                  const at::Tensor& h_out, const c10::optional<at::Tensor>& h_copy,
                  const c10::optional<at::Tensor>& K) {
  check(gates, "gates"); check(c_prev, "c_prev"); check(c_out, "c_out"); check(h_out, "h_out");
  TORCH_CHECK(gates.is_contiguous() && gates.size(0) == 4, "gates: contiguous (4, B, H)");
  const int64_t B = c_prev.size(0), H = c_prev.size(1), n = B * H;
  const float* G = gates.data_ptr<float>();
  float* Kp = nullptr;
  if (K.has_value()) {
    check(*K, "K");
    TORCH_CHECK(K->is_contiguous() && K->numel() == 6 * n, "K: contiguous (6, B, H)");
    Kp = K->data_ptr<float>();
  }
  const Vec one(1.f), two(2.f);
  at::parallel_for(0, B, kRowsPerTask, [&](int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const float* cp_row = row(c_prev, b);
    float* c_row = row(c_out, b);
    float* h_row = row(h_out, b);
    float* hc_row = h_copy.has_value() ? row(*h_copy, b) : nullptr;
    for (int64_t j = 0; j < H; j += Vec::size()) {
      const int64_t len = std::min<int64_t>(Vec::size(), H - j);
      const int64_t k = b * H + j;
      Vec i = sigmoid(Vec::loadu(G + k, len));
      Vec f = sigmoid(Vec::loadu(G + n + k, len));
      Vec g = two * sigmoid(Vec::loadu(G + 2 * n + k, len)) - one;
      Vec o = sigmoid(Vec::loadu(G + 3 * n + k, len));
      Vec cp = Vec::loadu(cp_row + j, len);
      Vec c = f * cp + i * g;
      Vec tc = two * sigmoid(two * c) - one;
      Vec h = o * tc;
      c.store(c_row + j, len);
      h.store(h_row + j, len);
      if (hc_row) h.store(hc_row + j, len);
      if (Kp) {
        f.store(Kp + k, len);
        (g * i * (one - i)).store(Kp + n + k, len);
        (cp * f * (one - f)).store(Kp + 2 * n + k, len);
        (i * (one - g * g)).store(Kp + 3 * n + k, len);
        (tc * o * (one - o)).store(Kp + 4 * n + k, len);
        (o * (one - tc * tc)).store(Kp + 5 * n + k, len);
      }
    }
  }
  });
}

// dh: (B, H) gradient arriving at h_t; K: (6, B, H) of step t; dcf_next: (B, H) dc_{t+1} f_{t+1}
// (or the gradient of c_T); dc_out: (B, H) receives dc_t; D: (B, 5H) receives
// [dc f, di, df, dg, do] (pre-activation gradients, dc f for the step before).
void backward_step(const at::Tensor& dh, const at::Tensor& K, const at::Tensor& dcf_next,
                   const at::Tensor& dc_out, const at::Tensor& D) {
  check(dh, "dh"); check(K, "K"); check(dcf_next, "dcf_next"); check(dc_out, "dc_out");
  check(D, "D");
  const int64_t B = dh.size(0), H = dh.size(1), n = B * H;
  TORCH_CHECK(K.is_contiguous() && K.numel() == 6 * n, "K: contiguous (6, B, H)");
  TORCH_CHECK(D.size(1) == 5 * H, "D: (B, 5H)");
  const float* Kp = K.data_ptr<float>();
  at::parallel_for(0, B, kRowsPerTask, [&](int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const float* dh_row = row(dh, b);
    const float* dcf_row = row(dcf_next, b);
    float* dc_row = row(dc_out, b);
    float* d_row = row(D, b);
    for (int64_t j = 0; j < H; j += Vec::size()) {
      const int64_t len = std::min<int64_t>(Vec::size(), H - j);
      const int64_t k = b * H + j;
      Vec d_h = Vec::loadu(dh_row + j, len);
      Vec dc = Vec::loadu(dcf_row + j, len) + d_h * Vec::loadu(Kp + 5 * n + k, len);
      dc.store(dc_row + j, len);
      for (int64_t s = 0; s < 4; ++s)  // [dc f, di, df, dg] = dc [f, Ki, Kf, Kg]
        (dc * Vec::loadu(Kp + s * n + k, len)).store(d_row + s * H + j, len);
      (d_h * Vec::loadu(Kp + 4 * n + k, len)).store(d_row + 4 * H + j, len);
    }
  }
  });
}

// The forward loop of LSTMFunction: hx (T, B, N) stacked inputs [h_{t-1}, x_t (, 1)] whose rows
// 1.. of the h block it fills in; w4 (4, N, H) the gates' stacked weights, transposed (cell gate
// doubled); c0 (B, H); out (T, B, H) receives h_t; K optional (T, 6, B, H). Returns c_T.
at::Tensor forward_loop(const at::Tensor& hx, const at::Tensor& w4, const at::Tensor& c0,
                        const at::Tensor& out, const c10::optional<at::Tensor>& K) {
  const int64_t T = hx.size(0), B = hx.size(1), N = hx.size(2), H = out.size(2);
  at::Tensor gates = at::empty({4, B, H}, out.options());
  at::Tensor c = c0.clone(), c_next = at::empty_like(c);
  for (int64_t t = 0; t < T; ++t) {
    at::bmm_out(gates, hx[t].expand({4, B, N}), w4);
    c10::optional<at::Tensor> h_copy;
    if (t + 1 < T) h_copy = hx[t + 1].narrow(1, 0, H);
    c10::optional<at::Tensor> K_t;
    if (K.has_value()) K_t = (*K)[t];
    forward_step(gates, c, c_next, out[t], h_copy, K_t);
    std::swap(c, c_next);
  }
  return c;
}

// The backward loop of LSTMFunction: g_out (T, B, H), g_hn, g_cn (B, H) the gradients arriving at
// the outputs; w_hh (4H, H); K (T, 6, B, H) from the forward; D (T, B, 5H) receives
// [dc f, di, df, dg, do] for every step; dh_all, dc_all: (T, B, H) to keep every dh_t, dc_t, or
// (1, B, H) scratch.
void backward_loop(const at::Tensor& g_out, const at::Tensor& g_hn, const at::Tensor& g_cn,
                   const at::Tensor& w_hh, const at::Tensor& K, const at::Tensor& D,
                   const at::Tensor& dh_all, const at::Tensor& dc_all) {
  const int64_t T = g_out.size(0), H = g_out.size(2);
  const at::Tensor g_c = g_cn.contiguous();
  for (int64_t t = T - 1; t >= 0; --t) {
    at::Tensor dh = dh_all.size(0) == T ? dh_all[t] : dh_all[0];
    at::Tensor dc = dc_all.size(0) == T ? dc_all[t] : dc_all[0];
    if (t == T - 1) {
      at::add_out(dh, g_out[t], g_hn);
      backward_step(dh, K[t], g_c, dc, D[t]);
    } else {
      const at::Tensor next = D[t + 1];
      at::addmm_out(dh, g_out[t], next.narrow(1, H, 4 * H), w_hh);
      backward_step(dh, K[t], next.narrow(1, 0, H), dc, D[t]);
    }
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward_loop", &forward_loop, "LSTM layer, forward loop over the steps");
  m.def("backward_loop", &backward_loop, "LSTM layer, backward loop over the steps");
}
