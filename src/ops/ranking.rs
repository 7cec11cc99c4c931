//! The ranking head: CNN-ED's triplet loss (a hinge on d(a, p) - d(a, n) with the margin
//! from the true edit distances) with its approximation term, and PNLL on each
//! triplet's three pairs, forward and backward in one single-workgroup pass
//! (`shaders/ranking.wgsl`). The distance is `s * ||e_x - e_y||^2` (this model) or
//! `s * ||e_x - e_y||` (CNN-ED's Euclidean one).
use super::pnll::{LossBuffers, LossCall, LossShape};
use crate::gpu::{Gpu, Kernel};

/// How the head weighs its terms, and which distance it uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankingWeights {
    /// The ranking hinge relu(d_ap - d_an + t_an - t_ap).
    pub hinge: f32,
    /// The approximation term sqrt(sum over the three pairs of (d - t)^2) (CNN-ED's
    /// code).
    pub approx: f32,
    /// The approximation term as the CNN-ED paper writes it: sum over the three pairs
    /// of |d - t|.
    pub absolute: f32,
    /// PNLL, averaged over the three pairs.
    pub pnll: f32,
    /// Squared Euclidean distance (else Euclidean).
    pub squared: bool,
}

/// The shader, with the loss heads' bindings and fixed-order sum appended.
pub fn source() -> String {
    format!(
        "{}{}",
        include_str!("../../shaders/ranking.wgsl"),
        super::LOSS_HEAD_WGSL
    )
}

pub struct Ranking {
    forward_backward: Kernel,
}

impl Ranking {
    pub fn new(gpu: &Gpu) -> Self {
        Ranking {
            forward_backward: Kernel::new(
                gpu,
                "ranking.forward_backward",
                &source(),
                "forward_backward",
            ),
        }
    }

    /// `e [3 * triplets, dim]` (anchors, then positives, then negatives) and
    /// `labels [triplets, 3]` (f32 distances ap, an, pn).
    pub fn forward_backward(
        &self,
        gpu: &Gpu,
        shape: LossShape,
        weights: RankingWeights,
        buffers: &LossBuffers,
    ) -> LossCall {
        let rest = [
            u32::from(weights.squared),
            weights.hinge.to_bits(),
            weights.approx.to_bits(),
            weights.pnll.to_bits(),
            weights.absolute.to_bits(),
            0,
        ];
        LossCall::new(gpu, &self.forward_backward, shape, rest, buffers)
    }
}
