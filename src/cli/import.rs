//! `megashtein-gpu import IN.pth OUT.safetensors`: converts the reference PyTorch
//! checkpoint (a `torch.save` of the state_dict) to a model file, without Python and
//! without running the checkpoint's pickle.

use std::path::PathBuf;

use anyhow::Result;

use crate::io::refuse_overwriting_input;
use crate::model::pth::read_state_dict;
use crate::model::weights::{REFERENCE_DISTANCE_SCALE, Weights, fingerprint};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The PyTorch checkpoint (.pth, torch.save of the model's state_dict).
    pub input: PathBuf,
    /// The model file to write (safetensors); replaced atomically if it exists.
    pub output: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    refuse_overwriting_input(&args.output, &args.input, "checkpoint")?;
    let sd = read_state_dict(&args.input)?;
    let mut weights = Weights::from_state_dict(&sd, &args.input.display().to_string())?;
    // The released checkpoint was trained with this scale (REFERENCE.md 1).
    weights.distance_scale = REFERENCE_DISTANCE_SCALE;
    weights.save(&args.output)?;
    let print = fingerprint(&args.output)?;
    println!(
        "imported {} tensors ({} parameters, num_batches_tracked {}) from {} to {}, \
         distance scale {}, fingerprint {print}",
        sd.len(),
        weights.params.len(),
        weights.num_batches_tracked,
        args.input.display(),
        args.output.display(),
        weights.distance_scale
    );
    Ok(())
}
