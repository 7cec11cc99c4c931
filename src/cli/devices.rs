//! `megashtein-gpu devices`: every adapter wgpu can see, and the one that would be used.
use anyhow::Result;

use crate::gpu::list_adapters;
use crate::ops::TileReads;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

pub fn run(args: &Args) -> Result<()> {
    let adapters = list_adapters(args.gpu.backend);
    if adapters.is_empty() {
        // Gpu::new gives the error that says how to get an adapter.
        args.gpu.open()?;
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = &a.info;
        let l = &a.limits;
        println!("[{i}] {}", info.name);
        println!(
            "    backend: {:?}, type: {:?}",
            info.backend, info.device_type
        );
        println!("    driver: {} {}", info.driver, info.driver_info);
        println!(
            "    max storage binding: {}, max buffer: {}, workgroup storage: {} KiB",
            mib(l.max_storage_buffer_binding_size),
            mib(l.max_buffer_size),
            l.max_compute_workgroup_storage_size / 1024
        );
        println!(
            "    max workgroups per dimension: {}, invocations per workgroup: {}",
            l.max_compute_workgroups_per_dimension, l.max_compute_invocations_per_workgroup
        );
        let subgroups = if a.has_subgroups() {
            format!(
                "yes (size {}-{})",
                info.subgroup_min_size, info.subgroup_max_size
            )
        } else {
            "no".to_string()
        };
        println!(
            "    f16: {}, subgroups: {subgroups}",
            if a.has_f16() { "yes" } else { "no" }
        );
    }
    let chosen = args.gpu.open()?;
    println!("selected: {}", chosen.describe());
    let reads = match TileReads::for_device(&chosen) {
        TileReads::Shared => "from workgroup memory",
        TileReads::Subgroup => "by subgroup broadcast (a CPU adapter with subgroups of 8)",
    };
    println!("register tiles read their staged columns {reads}");
    Ok(())
}
