//! WGSL -> compute pipeline, built on first use (so a command compiles only the kernels
//! it runs) and once per device ([`Gpu::pipeline`]), however many ops own the kernel; a
//! `Call` is one use of a kernel on fixed buffers whose uniform's
//! first word is the batch size, so a call made once serves any batch up to the
//! capacity its buffers were made for.
use std::sync::{Arc, OnceLock};

use super::{Gpu, uniform_buffer};

/// Threads per workgroup of the kernels dispatched per item (each declares
/// `@workgroup_size(64)`); kernels with a fixed grid ([`Kernel::call_fixed`]) may differ.
pub const WORKGROUP: u32 = 64;

/// A compute pipeline, compiled when it is first bound.
#[derive(Clone)]
pub struct Kernel {
    source: Arc<str>,
    entry: &'static str,
    label: &'static str,
    pipeline: Arc<OnceLock<wgpu::ComputePipeline>>,
}

impl Kernel {
    /// `entry` of the WGSL `source`; the bind group layout is taken from the shader.
    pub fn new(_gpu: &Gpu, label: &'static str, source: &str, entry: &'static str) -> Self {
        Kernel {
            source: source.into(),
            entry,
            label,
            pipeline: Arc::default(),
        }
    }

    fn pipeline(&self, gpu: &Gpu) -> &wgpu::ComputePipeline {
        self.pipeline
            .get_or_init(|| gpu.pipeline(self.label, &self.source, self.entry))
    }

    /// Bind `uniform` to binding 0 and `buffers` to bindings 1, 2, ...; `per_item` is the
    /// number of threads one batch item needs.
    pub fn call<U: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        uniform: &U,
        buffers: &[&wgpu::Buffer],
        per_item: u32,
    ) -> Call {
        self.bind(gpu, uniform, buffers, Dispatch::PerItem(per_item))
    }

    /// Like [`Kernel::call`], for a kernel that always runs the same `[x, y]` grid of
    /// workgroups whatever the batch (reductions sized for the buffers' capacity).
    pub fn call_fixed<U: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        uniform: &U,
        buffers: &[&wgpu::Buffer],
        grid: [u32; 2],
    ) -> Call {
        self.bind(gpu, uniform, buffers, Dispatch::Fixed(grid))
    }

    /// Like [`Kernel::call_fixed`], with one thread for each of `threads` items, in
    /// the 2-D grid that [`grid`] makes of them (shaders recover the item as it says).
    pub fn call_threads<U: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        uniform: &U,
        buffers: &[&wgpu::Buffer],
        threads: u64,
    ) -> Call {
        let grid = grid(threads, gpu.limits.max_compute_workgroups_per_dimension);
        self.call_fixed(gpu, uniform, buffers, grid)
    }

    fn bind<U: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        uniform: &U,
        buffers: &[&wgpu::Buffer],
        dispatch: Dispatch,
    ) -> Call {
        let uniform = uniform_buffer(gpu, self.label, std::slice::from_ref(uniform));
        let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(&uniform)
            .chain(buffers.iter().copied())
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let pipeline = self.pipeline(gpu);
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Call {
            label: self.label,
            pipeline: pipeline.clone(),
            bind_group,
            uniform,
            dispatch,
        }
    }
}

/// One kernel bound to its buffers, ready to record for any batch size. A clone shares
/// the buffers and the uniform.
#[derive(Clone)]
pub struct Call {
    label: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    dispatch: Dispatch,
}

#[derive(Clone, Copy)]
enum Dispatch {
    /// `per_item` threads of 64-thread workgroups per batch item.
    PerItem(u32),
    /// A fixed grid of workgroups.
    Fixed([u32; 2]),
}

impl Call {
    /// Set the batch size (the uniform's first word) for the next submit.
    pub fn set_batch(&self, gpu: &Gpu, batch: u32) {
        gpu.queue
            .write_buffer(&self.uniform, 0, bytemuck::bytes_of(&batch));
    }

    /// Replace the whole uniform (ops whose per-step values live there: AdamW, the loss).
    pub fn set_uniform<U: bytemuck::Pod>(&self, gpu: &Gpu, uniform: &U) {
        gpu.queue
            .write_buffer(&self.uniform, 0, bytemuck::bytes_of(uniform));
    }

    /// Record the dispatch for `batch` items into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass, gpu: &Gpu, batch: u32) {
        let [x, y] = match self.dispatch {
            Dispatch::PerItem(per_item) => {
                let threads = u64::from(batch) * u64::from(per_item);
                if threads == 0 {
                    return;
                }
                grid(threads, gpu.limits.max_compute_workgroups_per_dimension)
            }
            Dispatch::Fixed(grid) => grid,
        };
        self.record_workgroups(pass, x, y);
    }
}

impl Call {
    /// Record the dispatch as an explicit grid of workgroups, for kernels that map
    /// workgroups (not threads) to work items.
    pub fn record_workgroups(&self, pass: &mut wgpu::ComputePass, x: u32, y: u32) {
        if x == 0 || y == 0 {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }
}

/// Calls recorded one after another, with the scratch buffers only they use: a layer's
/// backward pass, or a whole training step.
#[derive(Default)]
pub struct Calls {
    calls: Vec<Call>,
    scratch: Vec<wgpu::Buffer>,
}

impl Calls {
    pub fn push(&mut self, call: Call) {
        self.calls.push(call);
    }

    /// Keep `buffer` alive as long as these calls.
    pub fn keep(&mut self, buffer: wgpu::Buffer) {
        self.scratch.push(buffer);
    }

    pub fn extend(&mut self, other: Calls) {
        self.calls.extend(other.calls);
        self.scratch.extend(other.scratch);
    }

    pub fn set_batch(&self, gpu: &Gpu, batch: u32) {
        for call in &self.calls {
            call.set_batch(gpu, batch);
        }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass, gpu: &Gpu, batch: u32) {
        for call in &self.calls {
            call.record(pass, gpu, batch);
        }
    }

    /// Each call's label and its fastest of `runs` runs alone for `batch` items (a
    /// submit and a wait each): where a pass spends its time, for benchmarks.
    pub fn time_each(
        &self,
        gpu: &Gpu,
        batch: u32,
        runs: usize,
    ) -> anyhow::Result<Vec<(&'static str, f64)>> {
        let mut times = Vec::with_capacity(self.calls.len());
        for call in &self.calls {
            let mut fastest = f64::INFINITY;
            for _ in 0..runs {
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    call.record(&mut pass, gpu, batch);
                }
                let start = std::time::Instant::now();
                gpu.queue.submit([encoder.finish()]);
                gpu.wait()?;
                fastest = fastest.min(start.elapsed().as_secs_f64());
            }
            times.push((call.label, fastest));
        }
        Ok(times)
    }
}

impl From<Call> for Calls {
    fn from(call: Call) -> Self {
        Calls {
            calls: vec![call],
            scratch: Vec::new(),
        }
    }
}

/// Split `threads` into a 2-D grid of workgroups within the per-dimension limit. Shaders
/// recover the linear thread id as `gid.x + gid.y * num_workgroups.x * 64`.
pub fn grid(threads: u64, max_per_dim: u32) -> [u32; 2] {
    let groups = threads.div_ceil(u64::from(WORKGROUP));
    if groups == 0 {
        return [0, 1];
    }
    let max = u64::from(max_per_dim.max(1));
    let y = groups.div_ceil(max);
    let x = groups.div_ceil(y);
    [x as u32, y as u32]
}

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn grid_covers_all_threads_within_limits() {
        assert_eq!(grid(0, 65_535), [0, 1]);
        for threads in [
            1u64,
            63,
            64,
            65,
            64 * 65_535,
            64 * 65_535 + 1,
            5_000_000_000,
        ] {
            let [x, y] = grid(threads, 65_535);
            assert!(x <= 65_535 && y <= 65_535);
            assert!(u64::from(x) * u64::from(y) * 64 >= threads);
        }
    }
}
