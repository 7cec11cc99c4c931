//! Storage and uniform buffers, and reading results back to the CPU.
use anyhow::{Result, anyhow};
use wgpu::util::DeviceExt;

use super::Gpu;

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// An uninitialised (zeroed) storage buffer of `bytes` bytes (at least 4, as wgpu
/// rejects empty bindings).
pub fn storage_buffer(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).next_multiple_of(4),
        usage: STORAGE,
        mapped_at_creation: false,
    })
}

/// A storage buffer holding `data` (padded to at least 4 bytes).
pub fn storage_buffer_init<T: bytemuck::Pod>(gpu: &Gpu, label: &str, data: &[T]) -> wgpu::Buffer {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    if bytes.len() < 4 || !bytes.len().is_multiple_of(4) {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().max(4).next_multiple_of(4), 0);
        return gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &padded,
                usage: STORAGE,
            });
    }
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: STORAGE,
        })
}

/// A uniform buffer holding `data`; ops rewrite it with `queue.write_buffer`.
pub fn uniform_buffer<T: bytemuck::Pod>(gpu: &Gpu, label: &str, data: &[T]) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// A reusable staging buffer for copying results back to the CPU.
pub struct Readback {
    staging: wgpu::Buffer,
}

impl Readback {
    pub fn new(gpu: &Gpu, bytes: u64) -> Self {
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Readback { staging }
    }

    /// Record a copy of the first `bytes` bytes of `src` into the staging buffer.
    pub fn copy(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, bytes: u64) {
        self.copy_from(encoder, src, 0, bytes);
    }

    /// Record a copy of `bytes` bytes of `src` from `offset` into the staging buffer.
    pub fn copy_from(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) {
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(src, offset, &self.staging, 0, bytes);
        }
    }

    /// Wait for the copy recorded by [`Readback::copy`] and return it as `T`s.
    pub fn read<T: bytemuck::Pod>(&self, gpu: &Gpu, bytes: u64) -> Result<Vec<T>> {
        self.read_after(gpu, bytes, None)
    }

    /// [`Readback::read`] that waits only for `submission` (the one that recorded the
    /// copy), not for work submitted after it.
    pub fn read_after<T: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        bytes: u64,
        submission: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<T>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let slice = self.staging.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.wait_for(submission)?;
        rx.recv()
            .map_err(|_| anyhow!("GPU readback was never completed"))?
            .map_err(|e| anyhow!("cannot map GPU buffer for reading: {e}"))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| anyhow!("cannot read mapped GPU buffer: {e}"))?;
        let out = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        self.staging.unmap();
        Ok(out)
    }
}

impl Gpu {
    /// Copy a whole buffer (or its first `bytes`) back to the CPU. For tests and one-off
    /// reads; hot loops keep a [`Readback`].
    pub fn read_buffer<T: bytemuck::Pod>(
        &self,
        src: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<T>> {
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        let readback = Readback::new(self, bytes);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        readback.copy(&mut encoder, src, bytes);
        self.queue.submit([encoder.finish()]);
        readback.read(self, bytes)
    }
}

/// Two staging buffers taken in turn, so that one batch's output can be read back while
/// the next batch runs: a model's [`Readback`] for a stream of batches.
pub struct ReadbackPair {
    readbacks: [Readback; 2],
    /// Copies recorded so far; copy `n` goes to `readbacks[n % 2]`.
    recorded: u64,
}

/// A batch whose output copy was submitted and not yet read ([`ReadbackPair::read`]).
pub struct Pending {
    bytes: u64,
    sequence: u64,
    submission: wgpu::SubmissionIndex,
}

impl ReadbackPair {
    /// Staging for up to `bytes` bytes a batch.
    pub fn new(gpu: &Gpu, bytes: u64) -> Self {
        ReadbackPair {
            readbacks: [0, 1].map(|_| Readback::new(gpu, bytes)),
            recorded: 0,
        }
    }

    /// Record the copy of the first `bytes` of `src` into the next staging buffer and
    /// submit `encoder`.
    pub fn submit(
        &mut self,
        gpu: &Gpu,
        mut encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        bytes: u64,
    ) -> Pending {
        let sequence = self.recorded;
        self.readbacks[sequence as usize % 2].copy(&mut encoder, src, bytes);
        self.recorded += 1;
        Pending {
            bytes,
            sequence,
            submission: gpu.queue.submit([encoder.finish()]),
        }
    }

    /// Wait for `pending` and read its bytes as `T`s. Fails if two later batches were
    /// submitted before it was read (its staging buffer has been reused).
    pub fn read<T: bytemuck::Pod>(&self, gpu: &Gpu, pending: Pending) -> Result<Vec<T>> {
        if self.recorded - pending.sequence > 2 {
            anyhow::bail!("a batch was read back after two later ones were submitted");
        }
        self.readbacks[pending.sequence as usize % 2].read_after(
            gpu,
            pending.bytes,
            Some(pending.submission),
        )
    }
}
