//! The megashtein architecture's tensors: names and shapes exactly as PyTorch's
//! state_dict has them, laid out back to back in one flat parameter slab.
//!
//! Gradients and AdamW moments use the same layout, so the optimizer is one kernel
//! over one range and a checkpoint is a few plain arrays.

/// Strings are cut or `\0`-padded to this many characters.
pub const MAX_LEN: usize = 80;
/// Character codes are `min(c, 127)`.
pub const VOCAB: usize = 128;
/// Width of the character embedding.
pub const CHAR_DIM: usize = 140;
/// Channels of every convolution.
pub const CONV_CH: usize = 64;
/// Number of conv + pool + relu blocks; the length goes 80 -> 40 -> 20 -> 10 -> 5 -> 2.
pub const CONV_BLOCKS: usize = 5;
/// Width of the hidden fully connected layer.
pub const HIDDEN: usize = 200;
/// Width of the output embedding.
pub const EMBED_DIM: usize = 80;
/// Features after flattening the last conv block (64 channels x 2 positions).
pub const FLAT: usize = CONV_CH * 2;
/// BatchNorm epsilon and momentum (PyTorch defaults).
pub const BN_EPS: f32 = 1e-5;
pub const BN_MOMENTUM: f32 = 0.1;

/// One named tensor of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: &'static [usize],
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The trainable tensors, in state_dict order. Their concatenation is the parameter slab.
pub const PARAMS: [TensorSpec; 17] = [
    TensorSpec {
        name: "embedding.weight",
        shape: &[VOCAB, CHAR_DIM],
    },
    TensorSpec {
        name: "conv_layers.0.weight",
        shape: &[CONV_CH, CHAR_DIM, 3],
    },
    TensorSpec {
        name: "conv_layers.0.bias",
        shape: &[CONV_CH],
    },
    TensorSpec {
        name: "conv_layers.3.weight",
        shape: &[CONV_CH, CONV_CH, 3],
    },
    TensorSpec {
        name: "conv_layers.3.bias",
        shape: &[CONV_CH],
    },
    TensorSpec {
        name: "conv_layers.6.weight",
        shape: &[CONV_CH, CONV_CH, 3],
    },
    TensorSpec {
        name: "conv_layers.6.bias",
        shape: &[CONV_CH],
    },
    TensorSpec {
        name: "conv_layers.9.weight",
        shape: &[CONV_CH, CONV_CH, 3],
    },
    TensorSpec {
        name: "conv_layers.9.bias",
        shape: &[CONV_CH],
    },
    TensorSpec {
        name: "conv_layers.12.weight",
        shape: &[CONV_CH, CONV_CH, 3],
    },
    TensorSpec {
        name: "conv_layers.12.bias",
        shape: &[CONV_CH],
    },
    TensorSpec {
        name: "fc_layers.0.weight",
        shape: &[HIDDEN, FLAT],
    },
    TensorSpec {
        name: "fc_layers.0.bias",
        shape: &[HIDDEN],
    },
    TensorSpec {
        name: "fc_layers.2.weight",
        shape: &[EMBED_DIM, HIDDEN],
    },
    TensorSpec {
        name: "fc_layers.2.bias",
        shape: &[EMBED_DIM],
    },
    TensorSpec {
        name: "fc_layers.3.weight",
        shape: &[EMBED_DIM],
    },
    TensorSpec {
        name: "fc_layers.3.bias",
        shape: &[EMBED_DIM],
    },
];

/// Non-trainable state of the final BatchNorm (state_dict buffers).
pub const RUNNING_MEAN: TensorSpec = TensorSpec {
    name: "fc_layers.3.running_mean",
    shape: &[EMBED_DIM],
};
pub const RUNNING_VAR: TensorSpec = TensorSpec {
    name: "fc_layers.3.running_var",
    shape: &[EMBED_DIM],
};
/// A 0-d int64 tensor in PyTorch.
pub const NUM_BATCHES_TRACKED: &str = "fc_layers.3.num_batches_tracked";

/// Total number of trainable parameters (136,312).
pub const NUM_PARAMS: usize = {
    let mut total = 0;
    let mut i = 0;
    while i < PARAMS.len() {
        let shape = PARAMS[i].shape;
        let mut n = 1;
        let mut j = 0;
        while j < shape.len() {
            n *= shape[j];
            j += 1;
        }
        total += n;
        i += 1;
    }
    total
};

/// Offset (in f32 elements) of a named trainable tensor in the slab.
pub fn offset(name: &str) -> Option<usize> {
    let mut at = 0;
    for spec in PARAMS {
        if spec.name == name {
            return Some(at);
        }
        at += spec.len();
    }
    None
}

/// Offset of a tensor that is known to exist (the model's own names).
pub fn offset_of(name: &str) -> usize {
    offset(name).unwrap_or_else(|| panic!("no parameter named {name}"))
}

/// Element range of a tensor that is known to exist, for slicing the slab.
pub fn range_of(name: &str) -> std::ops::Range<usize> {
    let at = offset_of(name);
    let len = PARAMS
        .iter()
        .find(|s| s.name == name)
        .map_or(0, TensorSpec::len);
    at..at + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_matches_reference_parameter_count() {
        assert_eq!(NUM_PARAMS, 136_312);
        assert_eq!(PARAMS.iter().map(|s| s.len()).sum::<usize>(), NUM_PARAMS);
        assert_eq!(offset("embedding.weight"), Some(0));
        assert_eq!(offset("fc_layers.3.bias"), Some(NUM_PARAMS - EMBED_DIM));
        assert_eq!(offset("nope"), None);
    }
}
