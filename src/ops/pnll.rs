//! The pair head d_hat = exp(log_s) * ||e1 - e2||^2 and the Poisson negative
//! log-likelihood loss (torch.nn.PoissonNLLLoss(log_input=False, full=False)), forward
//! and backward in one single-workgroup pass (`shaders/pnll.wgsl`).
use crate::gpu::{Call, Gpu, Kernel};

/// PyTorch's PoissonNLLLoss eps: loss = d_hat - d * log(d_hat + eps).
pub const EPS: f32 = 1e-8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    dim: u32,
    log_scale: u32,
    learn: u32,
    eps: f32,
    slot: u32,
    _pad: [u32; 2],
}

/// `log_scale`: offset of log_s in the parameter and gradient slabs; `learn`: whether
/// dlog_s is written (else 0 is).
#[derive(Debug, Clone, Copy)]
pub struct PnllShape {
    pub dim: u32,
    pub log_scale: u32,
    pub learn: bool,
}

pub struct Pnll {
    forward_backward: Kernel,
}

/// One bound loss pass; its uniform carries the slot of `losses` the next step writes.
pub struct PnllCall {
    call: Call,
    uniform: Shape,
}

impl Pnll {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/pnll.wgsl");
        Pnll {
            forward_backward: Kernel::new(gpu, "pnll.forward_backward", source, "forward_backward"),
        }
    }

    /// `e [2 * pairs, dim]` (first sides, then second sides) and `labels [pairs]` (f32)
    /// -> `de` (same shape as `e`), dlog_s into `grads`, and the mean loss into
    /// `losses[slot]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward(
        &self,
        gpu: &Gpu,
        shape: PnllShape,
        e: &wgpu::Buffer,
        labels: &wgpu::Buffer,
        params: &wgpu::Buffer,
        de: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        losses: &wgpu::Buffer,
    ) -> PnllCall {
        let uniform = Shape {
            batch: 0,
            dim: shape.dim,
            log_scale: shape.log_scale,
            learn: u32::from(shape.learn),
            eps: EPS,
            slot: 0,
            _pad: [0; 2],
        };
        let call = self.forward_backward.call_fixed(
            gpu,
            &uniform,
            &[e, labels, params, de, grads, losses],
            [1, 1],
        );
        PnllCall { call, uniform }
    }
}

impl PnllCall {
    /// Set the pair count and the loss slot for the next submit.
    pub fn set(&mut self, gpu: &Gpu, pairs: u32, slot: u32) {
        self.uniform.batch = pairs;
        self.uniform.slot = slot;
        self.call.set_uniform(gpu, &self.uniform);
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass, gpu: &Gpu) {
        self.call.record(pass, gpu, self.uniform.batch);
    }
}
