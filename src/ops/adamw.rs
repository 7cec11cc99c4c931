//! AdamW over a range of the parameter slab, matching torch.optim.AdamW (decoupled
//! weight decay, bias correction), with optional gradient-norm clipping
//! (`shaders/adamw.wgsl`). Parameters, gradients and both moments share one layout.
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    count: u32,
    offset: u32,
    decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    clip: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    _pad: u32,
}

/// The hyper-parameters of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// 1-based step count, for the bias corrections.
    pub step: u64,
    /// Gradient-norm clipping threshold; 0 disables clipping.
    pub clip: f64,
}

impl AdamWStep {
    /// torch computes the scalars in Python floats (f64) and rounds once to f32.
    fn uniform(&self, range: std::ops::Range<usize>, weight_decay: bool) -> Shape {
        let t = self.step as f64;
        let wd = if weight_decay { self.weight_decay } else { 0.0 };
        Shape {
            count: range.len() as u32,
            offset: range.start as u32,
            decay: (1.0 - self.lr * wd) as f32,
            step_size: (self.lr / (1.0 - self.beta1.powf(t))) as f32,
            bc2_sqrt: (1.0 - self.beta2.powf(t)).sqrt() as f32,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            eps: self.eps as f32,
            clip: self.clip as f32,
            one_minus_beta1: (1.0 - self.beta1) as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            _pad: 0,
        }
    }
}

pub struct AdamW {
    step: Kernel,
    grad_norm: Kernel,
}

/// The optimizer bound to its slabs: the norm over the whole gradient range, then one
/// update per range (with and without weight decay).
pub struct AdamWCalls {
    norm: Call,
    norm_range: std::ops::Range<usize>,
    updates: Vec<(Call, std::ops::Range<usize>, bool)>,
}

/// The slabs the optimizer works on, all with the parameter layout.
pub struct AdamWBuffers<'a> {
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub m: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    /// `[norm, clip factor]`, written by the norm pass.
    pub norm: &'a wgpu::Buffer,
}

impl AdamW {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/adamw.wgsl");
        AdamW {
            step: Kernel::new(gpu, "adamw.step", source, "step"),
            grad_norm: Kernel::new(gpu, "adamw.grad_norm", source, "grad_norm"),
        }
    }

    /// Updates `ranges` of the slabs (`true`: with weight decay); the gradient norm
    /// (and clipping) covers all of them, which must be contiguous from the first.
    pub fn calls(
        &self,
        gpu: &Gpu,
        b: AdamWBuffers,
        ranges: &[(std::ops::Range<usize>, bool)],
    ) -> AdamWCalls {
        let start = ranges.iter().map(|r| r.0.start).min().unwrap_or(0);
        let end = ranges.iter().map(|r| r.0.end).max().unwrap_or(0);
        let norm_range = start..end;
        let blank = Shape {
            count: norm_range.len() as u32,
            offset: start as u32,
            ..Shape::default()
        };
        let norm = self
            .grad_norm
            .call_fixed(gpu, &blank, &[b.grads, b.norm], [1, 1]);
        let updates = ranges
            .iter()
            .map(|(range, decay)| {
                let call = self.step.call_threads(
                    gpu,
                    &blank,
                    &[b.grads, b.norm, b.params, b.m, b.v],
                    range.len() as u64,
                );
                (call, range.clone(), *decay)
            })
            .collect();
        AdamWCalls {
            norm,
            norm_range,
            updates,
        }
    }
}

impl AdamWCalls {
    /// Write this step's hyper-parameters; `record` then runs the norm and the updates.
    pub fn set(&self, gpu: &Gpu, step: &AdamWStep) {
        self.norm
            .set_uniform(gpu, &step.uniform(self.norm_range.clone(), false));
        for (call, range, decay) in &self.updates {
            call.set_uniform(gpu, &step.uniform(range.clone(), *decay));
        }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass, gpu: &Gpu) {
        self.norm.record(pass, gpu, 1);
        for (call, _, _) in &self.updates {
            call.record(pass, gpu, 1);
        }
    }
}
