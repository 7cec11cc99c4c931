//! The megashtein architecture's tensors: names and shapes exactly as PyTorch's
//! state_dict has them, laid out back to back in one flat parameter slab.
//!
//! Gradients and AdamW moments use the same layout, so the optimizer is one kernel
//! over one range and a checkpoint is a few plain arrays.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::state_dict::StateDict;

/// Strings are cut or `\0`-padded to this many characters.
pub const MAX_LEN: usize = 80;
/// Character codes are `min(c, 127)`.
pub const VOCAB: usize = 128;
/// Number of conv + pool + relu blocks; the length goes 80 -> 40 -> 20 -> 10 -> 5 -> 2.
pub const CONV_BLOCKS: usize = 5;
/// Positions after the last conv block.
pub const LAST_LEN: usize = MAX_LEN >> CONV_BLOCKS;
/// BatchNorm epsilon and momentum (PyTorch defaults).
pub const BN_EPS: f32 = 1e-5;
pub const BN_MOMENTUM: f32 = 0.1;
/// The widest conv block the kernels take: conv1d and the folded conv0's backward reduce
/// over at most 3 x channels values (`ops::conv1d::KMAX`, `ops::tapconv::KMAX`: 64).
pub const MAX_CHANNELS: usize = {
    let (conv, folded) = (crate::ops::conv1d::KMAX, crate::ops::tapconv::KMAX);
    (if conv < folded { conv } else { folded }) as usize / 3
};
/// The widest character embedding and hidden layer taken: their tensors stay within one
/// row of workgroups (65,535 x 64 values) for the optimizer and the packed weights.
pub const MAX_WIDTH: usize = 4096;

/// The widths of the layers, the architecture's one free choice (`train --char-dim
/// --channels --hidden --dim`). Every tensor's shape follows from them, so a state_dict
/// says its widths ([`Widths::of_state_dict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widths {
    /// Width of the character embedding.
    pub char_dim: usize,
    /// Channels of every convolution.
    pub channels: usize,
    /// Width of the hidden fully connected layer.
    pub hidden: usize,
    /// Width of the output embedding.
    pub dim: usize,
}

impl Widths {
    /// The released reference model's widths.
    pub const RELEASED: Widths = Widths {
        char_dim: 140,
        channels: 64,
        hidden: 200,
        dim: 80,
    };

    /// A clear error for widths the kernels cannot run.
    pub fn check(&self) -> Result<()> {
        let all = [self.char_dim, self.channels, self.hidden, self.dim];
        if all.contains(&0) {
            bail!("layer widths must be at least 1 ({self})");
        }
        if self.channels > MAX_CHANNELS {
            bail!(
                "at most {MAX_CHANNELS} conv channels are supported ({} given)",
                self.channels
            );
        }
        if self.char_dim.max(self.hidden) > MAX_WIDTH {
            bail!(
                "the character embedding and the hidden layer take at most {MAX_WIDTH} \
                 values ({} and {} given)",
                self.char_dim,
                self.hidden
            );
        }
        // Even, so that an f16 index holds it.
        if self.dim > crate::ops::knn::MAX_DIM || !self.dim.is_multiple_of(2) {
            bail!(
                "the embedding width must be even and at most {} ({} given)",
                crate::ops::knn::MAX_DIM,
                self.dim
            );
        }
        Ok(())
    }

    /// f32 values of the widest activation one string has in the forward pass (block 0's
    /// output, the hidden layer or the embedding): what sets the batches that fit a
    /// storage binding.
    pub fn widest_activation(&self) -> usize {
        (self.channels * (MAX_LEN / 2))
            .max(self.hidden)
            .max(self.dim)
    }

    /// Features after flattening the last conv block (channels x 2 positions).
    pub fn flat(&self) -> usize {
        self.channels * LAST_LEN
    }

    /// The trainable tensors, in state_dict order. Their concatenation is the
    /// parameter slab.
    pub fn params(&self) -> Vec<TensorSpec> {
        let Widths {
            char_dim,
            channels,
            hidden,
            dim,
        } = *self;
        let mut specs = vec![
            TensorSpec::new("embedding.weight", &[VOCAB, char_dim]),
            TensorSpec::new("conv_layers.0.weight", &[channels, char_dim, 3]),
            TensorSpec::new("conv_layers.0.bias", &[channels]),
        ];
        for (weight, bias) in CONV_NAMES {
            specs.push(TensorSpec::new(weight, &[channels, channels, 3]));
            specs.push(TensorSpec::new(bias, &[channels]));
        }
        specs.extend([
            TensorSpec::new("fc_layers.0.weight", &[hidden, self.flat()]),
            TensorSpec::new("fc_layers.0.bias", &[hidden]),
            TensorSpec::new("fc_layers.2.weight", &[dim, hidden]),
            TensorSpec::new("fc_layers.2.bias", &[dim]),
            TensorSpec::new("fc_layers.3.weight", &[dim]),
            TensorSpec::new("fc_layers.3.bias", &[dim]),
        ]);
        specs
    }

    /// Non-trainable state of the final BatchNorm (state_dict buffers).
    pub fn running_mean(&self) -> TensorSpec {
        TensorSpec::new(RUNNING_MEAN, &[self.dim])
    }

    pub fn running_var(&self) -> TensorSpec {
        TensorSpec::new(RUNNING_VAR, &[self.dim])
    }

    /// Total number of trainable parameters (136,312 for the released widths).
    pub fn num_params(&self) -> usize {
        self.params().iter().map(TensorSpec::len).sum()
    }

    /// Element range of a named trainable tensor in the slab.
    pub fn range(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let mut at = 0;
        for spec in self.params() {
            if spec.name == name {
                return Some(at..at + spec.len());
            }
            at += spec.len();
        }
        None
    }

    /// Offset of a tensor that is known to exist (the model's own names).
    pub fn offset_of(&self, name: &str) -> usize {
        self.range_of(name).start
    }

    /// Element range of a tensor that is known to exist, for slicing the slab.
    pub fn range_of(&self, name: &str) -> std::ops::Range<usize> {
        self.range(name)
            .unwrap_or_else(|| panic!("no parameter named {name}"))
    }

    /// The widths a state_dict's shapes give: the embedding's columns and the lengths
    /// of conv0's, fc0's and fc2's biases. Where a tensor is missing or not of the
    /// architecture's rank, the released width stands in, so that the strict shape
    /// check that follows names the tensor.
    pub fn of_state_dict(sd: &StateDict) -> Widths {
        let last = |name: &str, rank: usize| {
            sd.get(name)
                .map(|t| t.shape.clone())
                .filter(|s| s.len() == rank && s[rank - 1] > 0)
                .map(|s| s[rank - 1])
        };
        let released = Self::RELEASED;
        Widths {
            char_dim: last("embedding.weight", 2).unwrap_or(released.char_dim),
            channels: last("conv_layers.0.bias", 1).unwrap_or(released.channels),
            hidden: last("fc_layers.0.bias", 1).unwrap_or(released.hidden),
            dim: last("fc_layers.2.bias", 1).unwrap_or(released.dim),
        }
    }
}

impl std::fmt::Display for Widths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "character embedding {}, conv channels {}, hidden {}, embedding {}",
            self.char_dim, self.channels, self.hidden, self.dim
        )
    }
}

/// Weight and bias names of conv blocks 1-4 (PyTorch layers 3, 6, 9, 12).
const CONV_NAMES: [(&str, &str); CONV_BLOCKS - 1] = [
    ("conv_layers.3.weight", "conv_layers.3.bias"),
    ("conv_layers.6.weight", "conv_layers.6.bias"),
    ("conv_layers.9.weight", "conv_layers.9.bias"),
    ("conv_layers.12.weight", "conv_layers.12.bias"),
];

/// One named tensor of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    fn new(name: &'static str, shape: &[usize]) -> Self {
        TensorSpec {
            name,
            shape: shape.to_vec(),
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Names of the final BatchNorm's state_dict buffers.
pub const RUNNING_MEAN: &str = "fc_layers.3.running_mean";
pub const RUNNING_VAR: &str = "fc_layers.3.running_var";
/// A 0-d int64 tensor in PyTorch.
pub const NUM_BATCHES_TRACKED: &str = "fc_layers.3.num_batches_tracked";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_matches_reference_parameter_count() {
        let w = Widths::RELEASED;
        assert_eq!(w.num_params(), 136_312);
        assert_eq!(w.offset_of("embedding.weight"), 0);
        assert_eq!(w.offset_of("fc_layers.3.bias"), w.num_params() - 80);
        assert_eq!(w.range_of("fc_layers.0.weight").len(), 200 * 128);
        assert_eq!(w.range("nope"), None);
    }

    #[test]
    fn other_widths_change_every_shape_they_reach() {
        let w = Widths {
            char_dim: 16,
            channels: 8,
            hidden: 24,
            dim: 128,
        };
        let expected =
            128 * 16 + 8 * 16 * 3 + 8 + 4 * (8 * 8 * 3 + 8) + 24 * 16 + 24 + 128 * 24 + 3 * 128;
        assert_eq!(w.num_params(), expected);
        assert_eq!(w.running_var().shape, vec![128]);
        assert!(w.check().is_ok());
        let wide = Widths {
            channels: 65,
            ..Widths::RELEASED
        };
        assert!(
            wide.check()
                .unwrap_err()
                .to_string()
                .contains("at most 64 conv channels")
        );
        let empty = Widths {
            hidden: 0,
            ..Widths::RELEASED
        };
        assert!(empty.check().is_err());
        let huge = Widths {
            hidden: 5000,
            ..Widths::RELEASED
        };
        assert!(
            huge.check()
                .unwrap_err()
                .to_string()
                .contains("at most 4096")
        );
        assert_eq!(huge.widest_activation(), 5000);
        assert_eq!(Widths::RELEASED.widest_activation(), 64 * 40);
    }
}
