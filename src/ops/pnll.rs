//! The pair head d_hat = exp(log_s) * ||e1 - e2||^2 and the Poisson negative
//! log-likelihood loss (torch.nn.PoissonNLLLoss(log_input=False, full=False)), forward
//! and backward in one single-workgroup pass (`shaders/pnll.wgsl`).
use crate::gpu::{Call, Gpu, Kernel};

/// PyTorch's PoissonNLLLoss eps: loss = d_hat - d * log(d_hat + eps).
pub const EPS: f32 = 1e-8;

/// What every loss head (this one, `ranking`) is told besides its batch.
#[derive(Debug, Clone, Copy)]
pub struct LossShape {
    pub dim: u32,
    /// Offset of log_s in the parameter and gradient slabs.
    pub log_scale: u32,
    /// Whether dlog_s is written (else 0 is).
    pub learn: bool,
}

/// The shader, with the loss heads' bindings and fixed-order sum appended.
pub fn source() -> String {
    format!(
        "{}{}",
        include_str!("../../shaders/pnll.wgsl"),
        super::LOSS_HEAD_WGSL
    )
}

/// What every loss head reads and writes: `e` the embeddings and `labels` the
/// distances (their layouts are the head's), the parameter slab (for log_s), and it
/// writes `de` (the shape of `e`), dlog_s into `grads`, and the mean loss into
/// `losses[slot]`.
pub struct LossBuffers<'a> {
    pub e: &'a wgpu::Buffer,
    pub labels: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
    pub de: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub losses: &'a wgpu::Buffer,
}

pub struct Pnll {
    forward_backward: Kernel,
}

/// One bound loss pass of any head, single workgroup. Its uniform is twelve words: the
/// example count, [`LossShape`], [`EPS`], the slot of `losses` the step writes, then the
/// head's own six.
pub struct LossCall {
    call: Call,
    uniform: [u32; 12],
}

impl Pnll {
    pub fn new(gpu: &Gpu) -> Self {
        Pnll {
            forward_backward: Kernel::new(
                gpu,
                "pnll.forward_backward",
                &source(),
                "forward_backward",
            ),
        }
    }

    /// `e [2 * pairs, dim]` (first sides, then second sides), `labels [pairs]` (f32).
    pub fn forward_backward(&self, gpu: &Gpu, shape: LossShape, buffers: &LossBuffers) -> LossCall {
        LossCall::new(gpu, &self.forward_backward, shape, [0; 6], buffers)
    }
}

impl LossCall {
    /// The call of `kernel` over `buffers`, with the head's own uniform words `rest`.
    pub fn new(
        gpu: &Gpu,
        kernel: &Kernel,
        shape: LossShape,
        rest: [u32; 6],
        buffers: &LossBuffers,
    ) -> Self {
        let mut uniform = [0u32; 12];
        uniform[1] = shape.dim;
        uniform[2] = shape.log_scale;
        uniform[3] = u32::from(shape.learn);
        uniform[4] = EPS.to_bits();
        uniform[6..].copy_from_slice(&rest);
        let b = buffers;
        let bindings = [b.e, b.labels, b.params, b.de, b.grads, b.losses];
        let call = kernel.call_fixed(gpu, &uniform, &bindings, [1, 1]);
        LossCall { call, uniform }
    }

    /// Set the example count and the loss slot for the next submit.
    pub fn set(&mut self, gpu: &Gpu, batch: u32, slot: u32) {
        self.uniform[0] = batch;
        self.uniform[5] = slot;
        self.call.set_uniform(gpu, &self.uniform);
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass, gpu: &Gpu) {
        self.call.record(pass, gpu, self.uniform[0]);
    }
}
