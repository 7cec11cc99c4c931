//! Portability: every compute entry point of every shader, translated with naga (the
//! shader compiler inside wgpu) to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12), so a
//! shader that only Metal or DX12 would reject fails here, on any machine, without a GPU.
//!
//! Each `shaders/*.wgsl` file is a module of its own, except the kNN snippets, which the
//! kNN op prepends with constants and joins, and the register tile and token reader with
//! the shaders they are prepended to; those are covered through
//! `ops::knn::shader_variants` and `ops::composed_shader_sources`, the sources the ops
//! themselves build. Entry points come from the parsed modules, so new ones are covered
//! without touching this file.

use std::collections::BTreeSet;
use std::path::Path;

use megashtein_gpu::ops::{self, knn};
use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// Files in `shaders/` that are not modules on their own: the kNN op prepends constants
/// and joins them (see `ops::knn`).
const KNN_SNIPPETS: [&str; 6] = [
    "knn_common.wgsl",
    "knn_append.wgsl",
    "knn_scan.wgsl",
    "knn_scan_hamming.wgsl",
    "knn_select.wgsl",
    "topk.wgsl",
];

/// Vector widths the kNN shaders are built for: the model's 80, the 128 of the
/// benchmarks and a small width that is not a multiple of 4.
const KNN_DIMS: [usize; 3] = [6, 80, 128];

/// Code widths (bytes) of the Hamming kNN shaders: one word, a CGK code of 240 bytes and
/// the widest.
const KNN_CODE_WIDTHS: [usize; 3] = [4, 240, knn::MAX_CODE_WIDTH];

/// Every kNN shader variant the op may build for the widths above.
fn knn_variants() -> Vec<(String, &'static str, String)> {
    let vectors = KNN_DIMS.iter().flat_map(|&dim| {
        [false, true]
            .into_iter()
            .flat_map(move |f16| knn::shader_variants(knn::Metric::SquaredL2 { f16 }, dim))
    });
    let codes = KNN_CODE_WIDTHS
        .iter()
        .flat_map(|&width| knn::shader_variants(knn::Metric::Hamming, width));
    vectors.chain(codes).collect()
}

/// One back end at one language version.
#[derive(Clone, Copy, Debug)]
enum Target {
    Spv,
    /// Metal Shading Language (major, minor).
    Msl(u8, u8),
    Hlsl(hlsl::ShaderModel),
}

/// What every shader must translate to: SPIR-V as Vulkan gets it; the oldest MSL wgpu
/// may pick (macOS 10.13) and the newest; shader model 5.1 (FXC, DX12's floor) and 6.0
/// (DXC).
const TARGETS: [Target; 5] = [
    Target::Spv,
    Target::Msl(2, 0),
    Target::Msl(4, 0),
    Target::Hlsl(hlsl::ShaderModel::V5_1),
    Target::Hlsl(hlsl::ShaderModel::V6_0),
];

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Spv => write!(f, "SPIR-V"),
            Target::Msl(major, minor) => write!(f, "MSL {major}.{minor}"),
            Target::Hlsl(model) => write!(f, "HLSL SM {}", model.to_str()),
        }
    }
}

/// The validator wgpu builds for a device with every feature the project asks for
/// (`SHADER_F16`, `SUBGROUP`: see `gpu::context`) and WebGPU-compliant downlevel flags.
fn validator() -> Validator {
    let caps = Capabilities::SHADER_FLOAT16
        | Capabilities::SHADER_FLOAT16_IN_FLOAT32
        | Capabilities::SUBGROUP
        | Capabilities::CUBE_ARRAY_TEXTURES;
    Validator::new(ValidationFlags::all(), caps)
}

/// Parse and validate `source`, then translate each of its entry points for every
/// target. Returns the entry point names, or one message per failure, each naming
/// `shader`, the entry point and the back end.
fn translate(shader: &str, source: &str, targets: &[Target]) -> Result<Vec<String>, Vec<String>> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| {
        vec![format!(
            "{shader}: WGSL parse: {}",
            e.emit_to_string(source)
        )]
    })?;
    let info = validator().validate(&module).map_err(|e| {
        vec![format!(
            "{shader}: validation: {}",
            e.emit_to_string(source)
        )]
    })?;
    if module.entry_points.is_empty() {
        return Err(vec![format!("{shader}: no entry points")]);
    }
    let mut errors = Vec::new();
    for ep in &module.entry_points {
        // As wgpu does for each pipeline: resolve overrides and keep only this entry point.
        let (ep_module, ep_info) = match naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((ep.stage, &ep.name)),
            &Default::default(),
        ) {
            Ok(processed) => processed,
            Err(e) => {
                errors.push(format!(
                    "{shader}: entry point {:?}: overrides: {e}",
                    ep.name
                ));
                continue;
            }
        };
        for &target in targets {
            if let Err(e) = write(&ep_module, &ep_info, ep.stage, &ep.name, target) {
                errors.push(format!(
                    "{shader}: entry point {:?}: {target}: {e}",
                    ep.name
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(module
            .entry_points
            .iter()
            .map(|ep| ep.name.clone())
            .collect())
    } else {
        Err(errors)
    }
}

/// Translate one entry point for one target; the output is only checked for errors.
fn write(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    stage: naga::ShaderStage,
    entry: &str,
    target: Target,
) -> Result<(), String> {
    match target {
        Target::Spv => {
            let pipeline = spv::PipelineOptions {
                shader_stage: stage,
                entry_point: entry.to_string(),
            };
            let words = spv::write_vec(module, info, &spv::Options::default(), Some(&pipeline))
                .map_err(|e| e.to_string())?;
            if words.is_empty() {
                return Err("empty SPIR-V".to_string());
            }
        }
        Target::Msl(major, minor) => {
            let options = msl::Options {
                lang_version: (major, minor),
                per_entry_point_map: msl_resources(module, entry)?,
                // Like wgpu: every resource must have a slot in the map.
                fake_missing_bindings: false,
                ..Default::default()
            };
            let pipeline = msl::PipelineOptions {
                entry_point: Some((stage, entry.to_string())),
                ..Default::default()
            };
            let (_, translated) =
                msl::write_string(module, info, &options, &pipeline).map_err(|e| e.to_string())?;
            for name in translated.entry_point_names {
                name.map_err(|e| e.to_string())?;
            }
        }
        Target::Hlsl(shader_model) => {
            let options = hlsl::Options {
                shader_model,
                // Register `binding` in space `group` for every resource.
                fake_missing_bindings: true,
                ..Default::default()
            };
            let pipeline = hlsl::PipelineOptions {
                entry_point: Some((stage, entry.to_string())),
            };
            let mut out = String::new();
            let reflection = hlsl::Writer::new(&mut out, &options, &pipeline)
                .write(module, info, None)
                .map_err(|e| e.to_string())?;
            for name in reflection.entry_point_names {
                name.map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Metal slots for the resources of `entry`, assigned in declaration order as wgpu's
/// Metal back end assigns them from the pipeline layout, plus the buffer-sizes buffer
/// that runtime-sized arrays need.
fn msl_resources(module: &naga::Module, entry: &str) -> Result<msl::EntryPointResourceMap, String> {
    let mut resources = msl::EntryPointResources::default();
    let (mut buffers, mut textures, mut samplers) = (0u8, 0u8, 0u8);
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = var.binding else { continue };
        let mut target = msl::BindTarget::default();
        match var.space {
            naga::AddressSpace::Uniform => {
                target.buffer = Some(buffers);
                buffers += 1;
            }
            naga::AddressSpace::Storage { access } => {
                target.buffer = Some(buffers);
                target.mutable = access.contains(naga::StorageAccess::STORE);
                buffers += 1;
            }
            naga::AddressSpace::Handle => match module.types[var.ty].inner {
                naga::TypeInner::Sampler { .. } => {
                    target.sampler = Some(msl::BindSamplerTarget::Resource(samplers));
                    samplers += 1;
                }
                naga::TypeInner::Image { .. } => {
                    target.texture = Some(textures);
                    textures += 1;
                }
                ref other => return Err(format!("no Metal slot for a {other:?} resource")),
            },
            other => return Err(format!("no Metal slot for a {other:?} resource")),
        }
        resources.resources.insert(binding, target);
    }
    resources.sizes_buffer = Some(buffers);
    Ok([(entry.to_string(), resources)].into())
}

#[test]
fn every_entry_point_translates_to_spirv_msl_and_hlsl() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wgsl"))
        .collect();
    files.sort();

    let mut errors = Vec::new();
    let mut translated = Vec::new();
    // Every file is a module of its own, one of the kNN snippets, or composed by an op
    // (the register tile, the token reader and the shaders they are prepended to).
    let composed = |f: &String| {
        KNN_SNIPPETS.contains(&f.as_str()) || ops::COMPOSED_SHADERS.contains(&f.as_str())
    };
    for file in files.iter().filter(|f| !composed(f)) {
        let source = std::fs::read_to_string(dir.join(file)).unwrap();
        match translate(file, &source, &TARGETS) {
            Ok(entries) => translated.push(format!("{file}: {}", entries.join(", "))),
            Err(e) => errors.extend(e),
        }
    }

    // The kNN shaders as the op builds them, for each metric, storage type, width and k
    // bucket.
    let all_variants = knn_variants();
    for (label, entry, source) in &all_variants {
        match translate(label, source, &TARGETS) {
            Ok(entries) if entries.iter().any(|e| e == entry) => {
                translated.push(format!("{label}: {}", entries.join(", ")));
            }
            Ok(entries) => errors.push(format!(
                "{label}: the op's entry point {entry:?} is not among {entries:?}"
            )),
            Err(e) => errors.extend(e),
        }
    }

    // The composed shaders, as the ops build them; each file must be in some composed
    // source.
    let composed_sources = ops::composed_shader_sources();
    for (label, source) in &composed_sources {
        match translate(label, source, &TARGETS) {
            Ok(entries) => translated.push(format!("{label}: {}", entries.join(", "))),
            Err(e) => errors.extend(e),
        }
    }
    for file in ops::COMPOSED_SHADERS {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: listed as a composed shader but unreadable: {e}"));
        if !composed_sources
            .iter()
            .any(|(_, source)| source.contains(&text))
        {
            errors.push(format!(
                "{file}: skipped as a composed shader, but no op composes it"
            ));
        }
    }

    // The snippets must exist and be what the kNN variants are made of, so none is
    // skipped above without being translated below.
    let present: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    for snippet in KNN_SNIPPETS {
        if !present.contains(snippet) {
            errors.push(format!(
                "{snippet}: listed as a kNN snippet but not in shaders/"
            ));
            continue;
        }
        let text = std::fs::read_to_string(dir.join(snippet)).unwrap();
        if !all_variants
            .iter()
            .any(|(_, _, source)| source.contains(&text))
        {
            errors.push(format!(
                "{snippet}: skipped as a kNN snippet, but no kNN variant contains it"
            ));
        }
    }

    assert!(
        errors.is_empty(),
        "{} shader translation failure(s):\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert!(
        !all_variants.is_empty(),
        "ops::knn::shader_variants returned nothing"
    );
    eprintln!(
        "translated {} modules for {}:\n{}",
        translated.len(),
        TARGETS.map(|t| t.to_string()).join(", "),
        translated.join("\n")
    );
}

/// The check can fail: a back-end error (MSL before 1.2 has no `reverse_bits`) and a
/// validation error are reported with the shader, entry point and back end.
#[test]
fn translation_failures_are_reported() {
    let source = "@group(0) @binding(0) var<storage, read_write> x: array<u32>;\n\
                  @compute @workgroup_size(64)\n\
                  fn flip(@builtin(global_invocation_id) id: vec3<u32>) {\n\
                      x[id.x] = reverseBits(x[id.x]);\n\
                  }\n";
    assert_eq!(
        translate("ok.wgsl", source, &TARGETS),
        Ok(vec!["flip".to_string()])
    );
    let errors = translate("old.wgsl", source, &[Target::Msl(1, 1)]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("old.wgsl: entry point \"flip\": MSL 1.1: "),
        "{errors:?}"
    );

    let invalid = source.replace("reverseBits(x[id.x])", "x[id.x] + 1.0");
    let errors = translate("bad.wgsl", &invalid, &TARGETS).unwrap_err();
    assert!(errors[0].starts_with("bad.wgsl: "), "{errors:?}");
}
