//! GPU plumbing: device creation, typed buffers, compute kernels. Nothing here knows
//! about the model; ops and the model are built on these three pieces.
mod buffer;
mod context;
mod kernel;

pub use buffer::{
    Pending, Readback, ReadbackPair, storage_buffer, storage_buffer_init, uniform_buffer,
};
pub use context::{AdapterReport, BackendChoice, Gpu, GpuOptions, list_adapters};
pub use kernel::{Call, Calls, Kernel, grid};
