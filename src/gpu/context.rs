//! Instance, adapter choice, device with the adapter's own limits, and polling with a
//! timeout (software drivers have hung on unbounded waits).
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// How long any single wait on the GPU may take before it is reported as a hang.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(600);

/// Which wgpu backend to use; `Auto` honours `WGPU_BACKEND` and otherwise tries all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum BackendChoice {
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

/// Which device to open. The default takes the best adapter on any backend, honouring
/// the `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// The wgpu backend.
    pub backend: BackendChoice,
    /// The first adapter whose name contains this, case-insensitive.
    pub adapter: Option<String>,
}

/// An open device: everything an op needs to build pipelines, buffers and submit work.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Compiled shader modules by source, and pipelines by (source, entry point): each
    /// is built once per device, however many kernels, ops or searchers ask for it.
    modules: Mutex<HashMap<String, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(String, &'static str), wgpu::ComputePipeline>>,
}

/// One adapter as `megashtein-gpu devices` shows it.
#[derive(Debug, Clone)]
pub struct AdapterReport {
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
}

impl AdapterReport {
    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

const NO_ADAPTER_HELP: &str = "no GPU adapter found. On Linux without a GPU, install Mesa's \
software Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`); \
otherwise install your GPU's Vulkan, Metal or DX12 driver. `megashtein-gpu devices` lists \
what wgpu can see";

/// Every adapter wgpu can see on the chosen backends.
pub fn list_adapters(choice: BackendChoice) -> Vec<AdapterReport> {
    let instance = instance(choice.backends());
    pollster::block_on(instance.enumerate_adapters(choice.backends()))
        .into_iter()
        .map(|a| AdapterReport {
            info: a.get_info(),
            limits: a.limits(),
            features: a.features(),
        })
        .collect()
}

/// Rank for picking a default adapter: real GPUs first, software last; Vulkan, Metal and
/// DX12 before GL.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (device, backend)
}

impl Gpu {
    /// Open the adapter chosen by `opts` (or the environment), with the adapter's own limits
    /// and the f16 and subgroup features where it has them.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        let backends = opts.backend.backends();
        let instance = instance(backends);
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        if adapters.is_empty() {
            if opts.backend != BackendChoice::Auto {
                bail!(
                    "no adapter on the {:?} backend; try backend auto",
                    opts.backend
                );
            }
            bail!("{NO_ADAPTER_HELP}");
        }
        let wanted = opts
            .adapter
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        let adapter = match wanted {
            Some(name) => {
                let needle = name.to_lowercase();
                let names: Vec<String> = adapters
                    .iter()
                    .map(|a| {
                        let i = a.get_info();
                        format!("{} ({:?})", i.name, i.backend)
                    })
                    .collect();
                let pos = adapters
                    .iter()
                    .position(|a| a.get_info().name.to_lowercase().contains(&needle))
                    .ok_or_else(|| {
                        anyhow!(
                            "no adapter matches {name:?}; available: {}",
                            names.join(", ")
                        )
                    })?;
                adapters.swap_remove(pos)
            }
            None => {
                adapters.sort_by_key(|a| preference(&a.get_info()));
                adapters.swap_remove(0)
            }
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let wanted_features = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted_features;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("megashtein-gpu"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("cannot open a device on adapter {:?}", info.name))?;
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
        })
    }

    /// Block until all submitted work is done, or fail after `POLL_TIMEOUT`.
    pub fn wait(&self) -> Result<()> {
        self.wait_for(None)
    }

    /// Block until `submission` (or, for `None`, all submitted work) has finished.
    pub fn wait_for(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: submission,
                timeout: Some(POLL_TIMEOUT),
            })
            .map(|_| ())
            .map_err(|e| anyhow!("GPU did not finish its work: {e}"))
    }

    /// The pipeline of `entry` in the WGSL `source`, built on first use (`label` names it
    /// in errors); the bind group layout is taken from the shader.
    pub fn pipeline(
        &self,
        label: &str,
        source: &str,
        entry: &'static str,
    ) -> wgpu::ComputePipeline {
        let key = (source.to_string(), entry);
        if let Some(pipeline) = lock(&self.pipelines).get(&key) {
            return pipeline.clone();
        }
        let module = self.shader_module(label, source);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                // Every kernel writes the workgroup memory it reads. Zeroing it first
                // cost a barrier and a store per word in every workgroup where the driver
                // cannot do it (GL, Metal, DX12), and on llvmpipe's GL the zeroing code
                // of the large tiles took 25x longer to compile than the kernels.
                compilation_options: wgpu::PipelineCompilationOptions {
                    zero_initialize_workgroup_memory: false,
                    ..Default::default()
                },
                cache: None,
            });
        lock(&self.pipelines).entry(key).or_insert(pipeline).clone()
    }

    /// How many pipelines this device has built.
    pub fn pipelines_built(&self) -> usize {
        lock(&self.pipelines).len()
    }

    fn shader_module(&self, label: &str, source: &str) -> wgpu::ShaderModule {
        lock(&self.modules)
            .entry(source.to_string())
            .or_insert_with(|| {
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(label),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
            })
            .clone()
    }

    /// Largest storage buffer a single binding may cover, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// One line naming the device, for logs and benchmark records.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }
}

/// A cache's lock; a panic while it was held leaves nothing half-written worth refusing.
fn lock<T>(cache: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}
